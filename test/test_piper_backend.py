"""Piper backend through piper-sdk on python-can's virtual bus, against a fake Piper arm.

Expected bytes are written out by hand from the protocol (piper_sdk protocol_v2 EncodeMessage:
big-endian int32 pairs of 0.001 degree; gripper int32 0.001 mm, uint16 0.001 N*m, code, zero).
"""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from motus_ros.hardware import piper_can as pc
from motus_ros.hardware.piper import PiperArmBackend
from motus_ros.hardware.piper_fake import FakePiperArm
from motus_ros.layout import DOF

_ids = itertools.count()


def channel(tag: str) -> str:
    """A fresh virtual-bus channel name: the SDK caches one interface per name."""
    return f"t{os.getpid()}_{tag}_{next(_ids)}"


@pytest.fixture
def rig():
    """Two fake follower arms and a connected (not yet enabled) backend."""
    left = FakePiperArm(channel("l"), joints_rad=[0.1, 0.5, -0.3, 0.0, 0.2, -0.1], gripper_m=0.03)
    right = FakePiperArm(channel("r"), joints_rad=[-0.2, 1.0, -1.0, 0.5, -0.5, 1.5], gripper_m=0.065)
    backend = PiperArmBackend(channels=(left.channel, right.channel), bustype="virtual",
                              enable_timeout=3.0)
    backend.connect()
    yield backend, left, right
    backend.close()
    left.close()
    right.close()


def enable_and_settle(backend, *arms):
    """Enable, wait until each fake arm received the sequence's last frame (0x159), forget it all."""
    backend.enable()
    for arm in arms:
        arm.wait_for(pc.GRIPPER_CTRL)
        arm.clear()


def test_unit_conversions_round_to_the_wire_units():
    assert pc.rad_to_mdeg(math.pi) == 180_000
    assert pc.rad_to_mdeg(-0.1) == -5730                  # -5729.58 -> -5730
    assert pc.mdeg_to_rad(90_000) == pytest.approx(math.pi / 2)
    assert pc.m_to_um(0.0325) == 32_500 and pc.um_to_m(70_000) == pytest.approx(0.07)


def test_feedback_frames_parse_into_radians_and_metres(rig):
    backend, left, right = rig
    state = backend.read()
    expected = [0.1, 0.5, -0.3, 0.0, 0.2, -0.1, 0.03, -0.2, 1.0, -1.0, 0.5, -0.5, 1.5, 0.065]
    # 0.001 degree resolution = 1.745e-5 rad
    np.testing.assert_allclose(state.positions, expected, atol=2e-5)
    assert state.positions.shape == (DOF,)
    assert not state.enabled and state.faults == []


def test_enable_sequence_sends_enable_mode_and_gripper_frames(rig):
    backend, left, _ = rig
    backend.enable()
    assert backend.read().enabled
    enable = left.wait_for(pc.MOTOR_ENABLE_DISABLE)[0]
    assert enable.data == bytes([0x07, 0x02, 0, 0, 0, 0, 0, 0])           # all motors, enable
    assert left.wait_for(pc.MOTION_CTRL_2)[0].data == bytes([0x01, 0x01, 100, 0x00, 0, 0, 0, 0])
    # gripper enabled at its current opening (0.03 m = 30000 um = 0x7530), effort 1.0 N*m
    assert left.wait_for(pc.GRIPPER_CTRL)[0].data == bytes.fromhex("00007530" "03e8" "01" "00")


def test_command_sends_exact_frames_per_arm(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    cmd = np.array([0.1, 0.5, -0.3, 0.0, 0.2, -0.1, 0.03,
                    -0.2, 1.0, -1.0, 0.5, -0.5, 1.5, 0.065])
    backend.write(cmd)
    frames = left.wait_for(pc.GRIPPER_CTRL)
    sent = [(f.arbitration_id, f.data.hex()) for f in left.received()]
    # 0.1 rad = 5729.58 mdeg -> 5730 = 0x1662; 0.5 rad -> 28648 = 0x6FE8; -0.3 -> -17189 = 0xFFFFBCDB;
    # 0.2 -> 11459 = 0x2CC3; -0.1 -> -5730 = 0xFFFFE99E; gripper 0.03 m -> 30000 um = 0x7530.
    assert sent == [
        (0x151, "0101640000000000"),
        (0x155, "00001662" "00006fe8"),
        (0x156, "ffffbcdb" "00000000"),
        (0x157, "00002cc3" "ffffe99e"),
        (0x159, "00007530" "03e8" "01" "00"),
    ]
    assert frames
    right.wait_for(pc.GRIPPER_CTRL)
    got = {f.arbitration_id: f.data for f in right.received()}
    assert got[0x155] == pc.joint_ctrl_frames(cmd[7:13])[0][1]
    assert pc.decode_i32_pair(got[0x157]) == (-28648, 85944)            # -0.5 rad, 1.5 rad
    assert int.from_bytes(got[0x159][:4], "big") == 65_000               # 0.065 m


def test_emergency_stop_sends_0x150_and_ignores_later_writes(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    backend.emergency_stop()
    assert left.wait_for(pc.MOTION_CTRL_1)[0].data == bytes([0x01, 0, 0, 0, 0, 0, 0, 0])
    assert right.wait_for(pc.MOTION_CTRL_1)[0].data == bytes([0x01, 0, 0, 0, 0, 0, 0, 0])
    left.clear()
    backend.write(np.zeros(DOF))
    assert not backend.read().enabled
    # The bus keeps order: once a later frame (0x471 from disable) arrived, any joint frame
    # written before it would have arrived too.
    backend.disable()
    left.wait_for(pc.MOTOR_ENABLE_DISABLE)
    assert left.received(0x155) == [] and left.received(0x159)[0].data == bytes(8)


def test_disable_sends_motor_disable_and_gripper_disable(rig):
    backend, left, _ = rig
    enable_and_settle(backend, left)
    backend.disable()
    assert left.wait_for(pc.MOTOR_ENABLE_DISABLE)[0].data == bytes([0x07, 0x01, 0, 0, 0, 0, 0, 0])
    assert left.wait_for(pc.GRIPPER_CTRL)[0].data == bytes(8)


def test_status_and_error_codes_become_faults_and_diagnostics(rig):
    backend, left, _ = rig
    left.arm_status = 0x07                      # collision
    left.err_code = (1 << 2) | (1 << 9)         # joint 3 communication, joint 2 angle limit
    left.gripper_status = pc.FOC_ENABLED_BIT | 0x02   # motor over-temperature
    expected = {"left: collision", "left: joint3_communication_error", "left: joint2_angle_limit",
                "left: gripper_motor_overheating"}
    import time
    deadline = time.monotonic() + 5
    while set(backend.read().faults) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(backend.read().faults) == expected
    diag = {d.name: d for d in backend.diagnostics()}
    assert diag["piper/left"].level == 2 and "collision" in diag["piper/left"].message
    assert diag["piper/left"].values["arm_status"] == "collision"
    assert diag["piper/right"].level == 0


def test_status_faults_decoding_is_pure():
    assert pc.status_faults(0x00, 0) == []
    assert pc.status_faults(0x0B, 0) == []                                  # teach record: info
    assert pc.status_faults(0x01, 1 << 13) == ["emergency_stop", "joint6_angle_limit"]


def test_leader_arms_are_read_from_their_control_frames():
    lf, rf = FakePiperArm(channel("lf")), FakePiperArm(channel("rf"))
    ll = FakePiperArm(channel("ll"), joints_rad=[0.3, 0.2, -0.1, 0.0, 0.0, 0.4], gripper_m=0.05,
                      as_leader=True)
    rl = FakePiperArm(channel("rl"), joints_rad=[-0.3, 0.1, -0.2, 0.0, 0.1, 0.0], gripper_m=0.01,
                      as_leader=True)
    backend = PiperArmBackend(channels=(lf.channel, rf.channel), bustype="virtual",
                              leader_channels=(ll.channel, rl.channel))
    try:
        backend.connect()
        import time
        deadline = time.monotonic() + 5
        leader = backend.read_leader()
        while leader[13] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            leader = backend.read_leader()
        np.testing.assert_allclose(
            leader, [0.3, 0.2, -0.1, 0.0, 0.0, 0.4, 0.05, -0.3, 0.1, -0.2, 0.0, 0.1, 0.0, 0.01], atol=2e-5)
    finally:
        backend.close()
        for arm in (lf, rf, ll, rl):
            arm.close()


def test_connect_without_an_arm_fails_clearly():
    backend = PiperArmBackend(channels=(channel("none_l"), channel("none_r")), bustype="virtual",
                              feedback_timeout=0.2)
    with pytest.raises(RuntimeError, match="no joint feedback"):
        backend.connect()
    backend.close()


def test_bad_options_are_refused_naming_the_option():
    with pytest.raises(ValueError, match="channels"):
        PiperArmBackend(channels=("can0",))
    with pytest.raises(ValueError, match="gripper_effort"):
        PiperArmBackend(gripper_effort=9.0)
    with pytest.raises(ValueError, match="feedback_stale"):
        PiperArmBackend(feedback_stale=0.0)
    with pytest.raises(ValueError, match="leader_listen"):
        PiperArmBackend(leader_listen=0.0)
