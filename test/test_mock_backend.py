"""Mock backend, backend registry and per-robot calibration files."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.hardware.calibration import (CalibrationError, calibration_from_dict,
                                            load_calibration)
from motus_ros.hardware.mock import MockArmBackend
from motus_ros.hardware.registry import BACKENDS, backend_class, create_backend
from motus_ros.layout import DOF, GRIPPER_INDICES


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_commands_become_state_immediately_without_lag():
    b = MockArmBackend("mock")
    b.connect()
    target = np.linspace(-0.5, 0.5, DOF)
    b.write(target)
    np.testing.assert_allclose(b.read().positions, target)
    assert b.read().enabled


def test_first_order_lag_follows_the_exponential():
    clock = FakeClock()
    b = MockArmBackend("mock", time_constant=0.1, clock=clock)
    b.connect()
    b.write(np.ones(DOF))
    clock.t = 0.1
    np.testing.assert_allclose(b.read().positions, 1 - np.exp(-1.0))
    clock.t = 1.0
    np.testing.assert_allclose(b.read().positions, 1.0, atol=1e-3)


def test_emergency_stop_freezes_state_and_ignores_writes_until_enable():
    clock = FakeClock()
    b = MockArmBackend("mock", time_constant=0.1, clock=clock)
    b.connect()
    b.write(np.ones(DOF))
    clock.t = 0.1
    b.emergency_stop()
    frozen = b.read().positions.copy()
    b.write(np.full(DOF, -1.0))
    clock.t = 5.0
    np.testing.assert_allclose(b.read().positions, frozen)
    assert not b.read().enabled and b.ignored_writes == 1
    b.enable()
    b.write(np.zeros(DOF))
    clock.t = 10.0
    np.testing.assert_allclose(b.read().positions, 0.0, atol=1e-6)


def test_disable_ignores_writes_and_read_requires_connect():
    b = MockArmBackend("mock")
    with pytest.raises(RuntimeError, match="connect"):
        b.read()
    b.connect()
    b.disable()
    b.write(np.ones(DOF))
    np.testing.assert_allclose(b.read().positions, 0.0)


def test_registry_knows_every_backend_and_refuses_unknown_names():
    assert set(BACKENDS) == {"mock", "piper", "arx", "sim"}
    assert backend_class("mock") is MockArmBackend
    assert isinstance(create_backend("mock", calibration="mock"), MockArmBackend)
    with pytest.raises(ValueError, match="expected one of"):
        backend_class("ur5")


@pytest.mark.parametrize("robot", ["mock", "sim", "agilex_aloha2", "ac_one"])
def test_every_robot_calibration_loads_with_limits_known_before_connect(robot):
    cal = load_calibration(robot)
    assert cal.robot == robot
    assert np.all(cal.limits.lower < cal.limits.upper)
    for g in GRIPPER_INDICES:
        assert cal.limits.lower[g] == cal.gripper.lower


def test_piper_calibration_matches_the_sdk_joint_table():
    cal = load_calibration("agilex_aloha2")
    np.testing.assert_allclose(cal.limits.upper[:6], [2.6179, 3.14, 0.0, 1.745, 1.22, 2.09439])
    np.testing.assert_allclose(cal.limits.lower[7:13], [-2.6179, 0.0, -2.967, -1.745, -1.22, -2.09439])
    assert cal.limits.upper[6] == pytest.approx(0.07)


def test_gripper_mapping_and_offsets_round_trip():
    cal = load_calibration("sim")
    raw = np.zeros(DOF)
    raw[6], raw[13] = 0.05800, 0.01844                       # gym-aloha open / closed finger
    values = cal.raw_to_layout(raw)
    assert values[6] == pytest.approx(1.0) and values[13] == pytest.approx(0.0)
    np.testing.assert_allclose(cal.layout_to_raw(values), raw)


def test_calibration_errors_name_the_field():
    base = {"arm": {"lower": [-1] * 6, "upper": [1] * 6, "max_velocity": [1] * 6},
            "gripper": {"lower": 0, "upper": 1, "max_velocity": 1}}
    with pytest.raises(CalibrationError, match="arm.upper"):
        calibration_from_dict({**base, "arm": {**base["arm"], "upper": [1] * 5}}, "x.yaml")
    with pytest.raises(CalibrationError, match="gripper.max_velocity"):
        calibration_from_dict({**base, "gripper": {"lower": 0, "upper": 1}}, "x.yaml")
    with pytest.raises(CalibrationError, match="offsets.elbow"):
        calibration_from_dict({**base, "offsets": {"elbow": 0.1}}, "x.yaml")
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration("no_such_robot")
    cal = calibration_from_dict({**base, "offsets": {"left_joint2": 0.25}})
    assert cal.raw_to_layout(np.zeros(DOF))[1] == pytest.approx(0.25)
