"""Piper backend under faults (issue 14, items 6-9 and 11): fake arms on python-can's virtual bus.

Each test reproduces one fault with the real SDK and checks what the backend reports or sends,
down to the CAN frames the fake arm receives. Every test uses fresh channel names: the SDK keeps
one interface per channel name for the whole process.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import time

import numpy as np
import pytest

from motus_ros.hardware import piper
from motus_ros.hardware import piper_can as pc
from motus_ros.hardware.piper import ESTOP_REFUSAL, PiperArmBackend
from motus_ros.hardware.piper_fake import FakePiperArm
from ros_harness import wait_until
from test_piper_backend import enable_and_settle

_ids = itertools.count()
HOME = [0.1, 0.5, -0.3, 0.0, 0.2, -0.1]
RESUME = bytes([pc.ESTOP_RESUME, 0, 0, 0, 0, 0, 0, 0])


def channel(tag: str) -> str:
    """A fresh channel name of at most 15 characters (a Linux interface name's limit)."""
    return f"f{os.getpid() % 100000}{tag}{next(_ids)}"[:15]


def diag(backend) -> dict:
    return {d.name: d for d in backend.diagnostics()}


@pytest.fixture
def rig():
    left = FakePiperArm(channel("l"), joints_rad=HOME, gripper_m=0.03, follow=True)
    right = FakePiperArm(channel("r"), joints_rad=HOME, gripper_m=0.03, follow=True)
    backend = PiperArmBackend(channels=(left.channel, right.channel), bustype="virtual",
                              enable_timeout=3.0)
    backend.connect()
    yield backend, left, right
    backend.close()
    left.close()
    right.close()


def sent_until_disable(backend, *arms) -> list[list]:
    """Per arm, the frames it received before a 0x471 disable that we send now as an end marker.

    The virtual bus keeps order per sender: once the marker arrived, every frame the backend
    sent before it has arrived too.
    """
    backend.disable()
    out = []
    for arm in arms:
        arm.wait_for(pc.MOTOR_ENABLE_DISABLE)
        frames = arm.received()
        end = max(i for i, f in enumerate(frames) if f.arbitration_id == pc.MOTOR_ENABLE_DISABLE
                  and f.data[1] == pc.MOTOR_DISABLE)
        out.append(frames[:end])
    return out


# -- item 6: feedback loss ----------------------------------------------------------------------
def test_feedback_loss_grows_feedback_age_and_is_an_error_within_a_second(rig):
    backend, left, right = rig
    assert backend.read().feedback_age < 0.1
    # The SDK's rate counts frames per 0.1 s window: 0 until its first window after connect.
    wait_until(lambda: diag(backend)["piper/left"].values["joint_feedback_hz"] > 0, 2.0,
               "the SDK's first joint feedback rate")
    assert diag(backend)["piper/left"].level == 0

    left.mute = True                                    # the left arm stops sending anything
    t0 = time.monotonic()
    wait_until(lambda: diag(backend)["piper/left"].level == 2, 1.0, "ERROR for the silent left arm")
    assert time.monotonic() - t0 < 1.0
    ages = []
    for _ in range(3):
        time.sleep(0.1)
        ages.append(backend.read().feedback_age)
    assert ages[0] > backend.feedback_stale and ages[0] < ages[1] < ages[2]
    d = diag(backend)
    assert re.search(rf"no joint feedback for \d+\.\d s on {left.channel}", d["piper/left"].message)
    assert d["piper/left"].values["joint_feedback_hz"] == 0.0
    assert d["piper/left"].values["feedback_age_s"] > backend.feedback_stale
    assert d["piper/right"].level == 0                  # the other arm still reports

    left.mute = False
    wait_until(lambda: backend.read().feedback_age < 0.1 and diag(backend)["piper/left"].level == 0,
               3.0, "feedback to recover after the left arm talks again")


def test_closed_arms_make_feedback_age_grow_on_both_sides(rig):
    backend, left, right = rig
    left.close()
    right.close()
    wait_until(lambda: backend.read().feedback_age > 0.6, 2.0, "feedback age to pass 0.6 s")
    d = diag(backend)
    assert d["piper/left"].level == 2 and d["piper/right"].level == 2
    assert right.channel in d["piper/right"].message


# -- item 7: no resume frame from enable(); release is explicit --------------------------------
def test_enable_after_emergency_stop_is_refused_and_sends_no_frame(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    backend.emergency_stop()
    assert left.wait_for(pc.MOTION_CTRL_1)[0].data[0] == pc.ESTOP_STOP
    right.wait_for(pc.MOTION_CTRL_1)
    left.clear()
    with pytest.raises(RuntimeError) as err:
        backend.enable()
    assert str(err.value) == ("piper: arms are in hardware emergency stop; call "
                              "/arm/release_emergency_stop first (the arms lose power and may "
                              "fall: support them)")
    assert str(err.value) == ESTOP_REFUSAL
    assert sent_until_disable(backend, left) == [[]]     # no 0x150 0x02, no 0x471 enable


def test_release_sends_resume_once_with_a_warning_then_enable_works(rig, caplog):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    backend.emergency_stop()
    for arm in (left, right):
        arm.wait_for(pc.MOTION_CTRL_1)
        arm.clear()
    with caplog.at_level(logging.WARNING, logger="motus_ros.hardware.piper"):
        backend.release_emergency_stop()
    assert "lose power" in caplog.text and left.channel in caplog.text
    for arm in (left, right):
        assert [f.data for f in arm.wait_for(pc.MOTION_CTRL_1)] == [RESUME]
        arm.clear()

    backend.enable()
    left.wait_for(pc.GRIPPER_CTRL)
    ids = [f.arbitration_id for f in left.received()]
    assert pc.MOTION_CTRL_1 not in ids                   # enable() never sends 0x150
    assert ids.index(pc.MOTOR_ENABLE_DISABLE) < ids.index(pc.MOTION_CTRL_2) < ids.index(pc.GRIPPER_CTRL)
    wait_until(lambda: backend.read().enabled, 5.0, "the arms to report enabled after the release")
    backend.write(np.array([*HOME, 0.03, *HOME, 0.03]))
    left.wait_for(pc.JOINT_CTRL_IDS[0])                  # writes flow again


def test_release_without_emergency_stop_sends_nothing(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    backend.release_emergency_stop()                     # would drop a powered arm: must not send
    assert [f for f in sent_until_disable(backend, left)[0] if f.arbitration_id == pc.MOTION_CTRL_1] == []


def test_arm_reporting_emergency_stop_refuses_enable_and_release_reaches_only_that_arm(rig):
    backend, left, right = rig
    left.arm_status = pc.ARM_STATUS_ESTOP                # stopped before this driver started
    wait_until(lambda: "left: emergency_stop" in backend.read().faults, 5.0, "left e-stop status")
    with pytest.raises(RuntimeError, match=re.escape(ESTOP_REFUSAL)):
        backend.enable()
    backend.release_emergency_stop()
    assert [f.data for f in left.wait_for(pc.MOTION_CTRL_1)] == [RESUME]
    backend.enable()
    assert right.received(pc.MOTION_CTRL_1) == []       # the right arm was never dropped


# -- item 8: a leader arm on the follower bus --------------------------------------------------
def test_leader_on_the_follower_bus_refuses_enable_naming_the_channel():
    left = FakePiperArm(channel("l"), joints_rad=HOME, follow=True, leader_on_bus=True,
                        leader_joints_rad=[0.3, 0.6, -0.4, 0.1, 0.0, 0.2])
    right = FakePiperArm(channel("r"), joints_rad=HOME, follow=True)
    backend = PiperArmBackend(channels=(left.channel, right.channel), bustype="virtual",
                              enable_timeout=3.0)
    try:
        backend.connect()
        wait_until(lambda: diag(backend)["piper/left"].level == 1, 2.0, "a WARN for the leader frames")
        assert "leader" in diag(backend)["piper/left"].message
        assert diag(backend)["piper/right"].level == 0
        with pytest.raises(RuntimeError) as err:
            backend.enable()
        message = str(err.value)
        assert f"leader arm is active on the follower CAN bus ({left.channel}: control frames" in message
        assert right.channel not in message
        for fix in ("its own CAN channel", "power it off", "follower mode"):
            assert fix in message
        on_left, on_right = sent_until_disable(backend, left, right)
        assert on_right == []                             # enable() sent nothing at all
        assert {f.arbitration_id for f in on_left} <= set(pc.CTRL_FRAME_IDS)   # the leader's only

        left.leader.mute = True                           # the operator powers the leader off
        time.sleep(0.05)
        backend.enable()
        wait_until(lambda: backend.read().enabled, 5.0, "the followers to enable without the leader")
    finally:
        backend.close()
        left.close()
        right.close()


def test_arm_in_linkage_teaching_mode_refuses_enable(rig):
    backend, left, right = rig
    left.ctrl_mode = pc.CTRL_MODE_LINKAGE_TEACHING_INPUT
    wait_until(lambda: diag(backend)["piper/left"].values["ctrl_mode"] == "linkage_teaching_input",
               5.0, "the 0x06 control mode to be reported")
    with pytest.raises(RuntimeError, match=rf"{left.channel}: an arm reports ctrl_mode 0x06"):
        backend.enable()


def test_own_control_frames_are_not_taken_for_a_leader(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    cmd = np.array([*HOME, 0.03, *HOME, 0.03])
    for _ in range(20):                                  # our frames echo back on the virtual bus
        backend.write(cmd)
        backend.read()
        time.sleep(0.005)
    backend.enable()                                     # re-enable right after writing
    backend.disable()
    backend.enable()                                     # right after disable's 0x159
    assert diag(backend)["piper/left"].values["foreign_control_frames"] == "none seen"
    assert diag(backend)["piper/left"].level == 0


# -- item 9: a CAN interface that does not open ------------------------------------------------
def test_socketcan_interface_that_cannot_open_fails_at_once_with_the_reason():
    left, right = channel("sl"), channel("sr")
    backend = PiperArmBackend(channels=(left, right), bustype="socketcan", feedback_timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        backend.connect()
    assert time.monotonic() - t0 < 2.0                   # not after the 5 s feedback timeout
    message = str(err.value)
    # This sandbox has no SocketCAN in its kernel (OSError: Address family not supported);
    # a machine with SocketCAN and no such interface says OSError: No such device.
    assert re.fullmatch(rf"piper: cannot open CAN interface '{left}' \(socketcan\): \w+Error: .+; "
                        rf"check `ip link show {left}` and that it is up \(bitrate 1000000\)", message)
    assert "CreateCanBus ERROR" not in message
    backend.close()


def test_can_adapter_the_sdk_cannot_open_fails_at_once_not_after_the_feedback_timeout():
    # python-can's slcan: the SDK's C_STD_CAN.Init() swallows can.CanError and leaves its buses
    # None; before the fix ConnectPort then spun on no bus until "no joint feedback" after 5 s.
    left, right = channel("al"), channel("ar")
    backend = PiperArmBackend(channels=(left, right), bustype="slcan", feedback_timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"^piper: cannot open CAN interface '{left}' \(slcan\): "
                                           r"\w+: .+; check that the adapter is connected"):
        backend.connect()
    assert time.monotonic() - t0 < 2.0
    backend.close()


def test_socketcan_link_state_comes_from_sysfs_flags(tmp_path, monkeypatch):
    (tmp_path / "can_up").mkdir()
    (tmp_path / "can_up" / "flags").write_text("0xc1\n")          # IFF_UP | IFF_RUNNING | IFF_NOARP
    (tmp_path / "can_down").mkdir()
    (tmp_path / "can_down" / "flags").write_text("0x80\n")
    monkeypatch.setattr(piper, "SYSFS_NET", str(tmp_path))
    assert pc.link_problem(piper._socketcan_flags("can_up")) is None
    assert pc.link_problem(piper._socketcan_flags("can_down")).startswith("the interface is down")
    assert pc.link_problem(piper._socketcan_flags("can_gone")) == "no such network interface"


# -- item 11: the achieved command rate ---------------------------------------------------------
def test_command_hz_reports_writes_per_second_over_the_last_second(rig):
    backend, left, right = rig
    enable_and_settle(backend, left, right)
    assert diag(backend)["piper/left"].values["command_hz"] == 0.0
    cmd = np.array([*HOME, 0.03, *HOME, 0.03])
    times = []
    end = time.monotonic() + 1.3
    while time.monotonic() < end:                        # about 50 Hz, whatever the load allows
        backend.write(cmd)
        times.append(time.monotonic())
        time.sleep(0.02)
    now = time.monotonic()
    d = diag(backend)
    expected = sum(t > now - 1.0 for t in times)
    for side in ("piper/left", "piper/right"):
        assert abs(d[side].values["command_hz"] - expected) <= 2, (d[side].values, expected)
    time.sleep(1.05)
    assert diag(backend)["piper/left"].values["command_hz"] == 0.0


# -- pure helpers -------------------------------------------------------------------------------
def test_bookkeeping_helpers_are_pure():
    seen, age = pc.stamp_age(None, 5.0, 100.0)
    assert seen == (5.0, 100.0) and age == 0.0
    assert pc.stamp_age(seen, 5.0, 101.5) == ((5.0, 100.0), 1.5)      # same frame: older
    assert pc.stamp_age(seen, 6.0, 101.5) == ((6.0, 101.5), 0.0)      # new frame: fresh
    assert pc.foreign_frames(True, 10.0, None, 0.1)                   # we never sent
    assert not pc.foreign_frames(True, 10.0, 9.95, 0.1)               # could be our echo
    assert pc.foreign_frames(True, 10.0, 9.5, 0.1)
    assert not pc.foreign_frames(False, 10.0, None, 0.1)
    assert pc.feedback_lost_message(1.234, "can_x") == "no joint feedback for 1.2 s on can_x"
