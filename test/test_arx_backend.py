"""ARX (AC-One) backend: the SDK adapter against a fake arx5_interface shaped like its .pyi stub."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from motus_ros.hardware.arx import ArxArmBackend, ArxSdkAdapter, import_arx_sdk
from motus_ros.layout import DOF


class FakeJointState:
    """arx5_interface.JointState(pos, vel, torque, gripper_pos) with pos()/vel()/torque()."""

    def __init__(self, pos, vel, torque, gripper_pos, gripper_vel=0.0, gripper_torque=0.0):
        self._pos, self._vel, self._torque = np.array(pos), np.array(vel), np.array(torque)
        self.gripper_pos, self.gripper_vel, self.gripper_torque = gripper_pos, gripper_vel, gripper_torque
        self.timestamp = 0.0

    def pos(self):
        return self._pos

    def vel(self):
        return self._vel

    def torque(self):
        return self._torque


class FakeGain:
    def __init__(self, kp, kd, gripper_kp, gripper_kd):
        self._kp, self._kd, self.gripper_kp, self.gripper_kd = kp, kd, gripper_kp, gripper_kd

    def kp(self):
        return self._kp


class FakeController:
    """Arx5JointController(model, interface_name); records every call."""

    instances: list["FakeController"] = []

    def __init__(self, model, interface_name):
        if interface_name == "missing":
            raise RuntimeError("CAN interface missing not found")
        self.model, self.interface = model, interface_name
        self.state = FakeJointState(np.arange(6) * 0.1, np.full(6, 0.01), np.full(6, 0.5), 0.04, 0.001, 0.2)
        self.calls: list[tuple] = []
        self.damping = False
        FakeController.instances.append(self)

    def get_joint_state(self):
        return self.state

    def set_joint_cmd(self, cmd):
        self.calls.append(("set_joint_cmd", cmd.pos().copy(), cmd.gripper_pos))

    def set_to_damping(self):
        self.damping = True
        self.calls.append(("set_to_damping",))

    def get_controller_config(self):
        return types.SimpleNamespace(default_kp=np.array([80., 70, 70, 30, 30, 20]),
                                     default_kd=np.array([2., 2, 2, 1, 1, 0.7]),
                                     default_gripper_kp=5.0, default_gripper_kd=0.2)

    def set_gain(self, gain):
        self.damping = False
        self.calls.append(("set_gain", gain.kp().copy(), gain.gripper_kp))

    def get_timestamp(self):
        return 12.5


FAKE_SDK = types.SimpleNamespace(Arx5JointController=FakeController, JointState=FakeJointState,
                                 Gain=FakeGain)


@pytest.fixture
def backend():
    FakeController.instances.clear()
    b = ArxArmBackend(interfaces=("can0", "can1"), adapter=ArxSdkAdapter("X5", sdk=FAKE_SDK))
    b.connect()
    yield b
    b.close()


def test_connect_opens_one_controller_per_arm_with_model_and_interface(backend):
    assert [(c.model, c.interface) for c in FakeController.instances] == [("X5", "can0"), ("X5", "can1")]


def test_read_maps_both_arms_into_the_layout(backend):
    state = backend.read()
    arm = np.arange(6) * 0.1
    np.testing.assert_allclose(state.positions, [*arm, 0.04, *arm, 0.04])
    np.testing.assert_allclose(state.velocities, [*np.full(6, 0.01), 0.001] * 2)
    np.testing.assert_allclose(state.efforts, [*np.full(6, 0.5), 0.2] * 2)
    assert state.enabled


def test_write_sends_joint_targets_and_gripper_per_arm(backend):
    cmd = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, 0.08])
    backend.write(cmd)
    left, right = FakeController.instances
    name, pos, grip = left.calls[-1]
    assert name == "set_joint_cmd" and grip == pytest.approx(0.05)
    np.testing.assert_allclose(pos, cmd[:6])
    np.testing.assert_allclose(right.calls[-1][1], cmd[7:13])
    assert right.calls[-1][2] == pytest.approx(0.08)


def test_emergency_stop_damps_both_arms_and_ignores_writes_until_enable(backend):
    backend.emergency_stop()
    left, right = FakeController.instances
    assert left.damping and right.damping
    n = len(left.calls)
    backend.write(np.zeros(DOF))
    assert len(left.calls) == n and not backend.read().enabled
    backend.enable()
    # enable: hold the current position first, then restore the default gains
    assert [c[0] for c in left.calls[n:]] == ["set_joint_cmd", "set_gain"]
    np.testing.assert_allclose(left.calls[n][1], np.arange(6) * 0.1)
    np.testing.assert_allclose(left.calls[n + 1][1], [80, 70, 70, 30, 30, 20])
    backend.write(np.zeros(DOF))
    assert left.calls[-1][0] == "set_joint_cmd" and backend.read().enabled


def test_disable_switches_to_damping(backend):
    backend.disable()
    assert all(c.damping for c in FakeController.instances)
    assert backend.diagnostics()[0].message == "disabled"


def test_diagnostics_report_interfaces_and_sdk_timestamp(backend):
    d = backend.diagnostics()[0]
    assert d.level == 0 and d.values["left_interface"] == "can0" and d.values["right_timestamp_s"] == 12.5


def test_open_failure_names_the_arm_and_interface():
    b = ArxArmBackend(interfaces=("can0", "missing"), adapter=ArxSdkAdapter("X5", sdk=FAKE_SDK))
    with pytest.raises(RuntimeError, match="right arm on 'missing'"):
        b.connect()


def test_missing_sdk_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "arx5_interface", None)   # import raises ImportError
    with pytest.raises(RuntimeError, match="arx5-interface"):
        import_arx_sdk()
    b = ArxArmBackend()
    assert b.limits.upper[1] == pytest.approx(3.5)              # limits known before connect
    with pytest.raises(RuntimeError, match="arx5-interface"):
        b.connect()
