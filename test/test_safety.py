"""SafetyFilter and Watchdog: limits, NaN/inf, wrong sizes/names, step limit, stale commands."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.execution.safety import (LIMIT_CLIPPED, NON_FINITE, OUT_OF_LIMITS, STEP_LIMITED,
                                        WRONG_NAMES, WRONG_SIZE, CommandRejected, SafetyFilter,
                                        Watchdog, max_step_from_limits)
from motus_ros.hardware.interface import JointLimits
from motus_ros.layout import DOF, JOINT_NAMES

LIMITS = JointLimits(lower=np.full(DOF, -1.0), upper=np.full(DOF, 1.0), max_velocity=np.full(DOF, 3.0))


def make_filter(limit_mode="clip", max_step=0.1, log=None):
    f = SafetyFilter(LIMITS, np.full(DOF, max_step), limit_mode,
                     on_reject=(lambda r, m: log.append((r, m))) if log is not None else None)
    f.reset(np.zeros(DOF))
    return f


def test_valid_command_in_any_name_order_is_returned_in_layout_order():
    f = make_filter()
    values = np.linspace(-0.5, 0.5, DOF)
    names = list(reversed(JOINT_NAMES))
    out = f.validate(names, values[::-1])
    np.testing.assert_allclose(out, values)
    np.testing.assert_allclose(f.validate([], values), values)   # empty names: layout order
    assert f.accepted == 2 and sum(f.counts.values()) == 0


def test_joint_limits_clip_and_gripper_limits_clip():
    f = make_filter(max_step=10.0)
    target = np.zeros(DOF)
    target[0], target[6], target[13] = 1.3, -1.4, 1.2    # left_joint1, left_gripper, right_gripper
    out = f.step(f.validate([], target)).position
    assert out[0] == 1.0 and out[6] == -1.0 and out[13] == 1.0
    assert LIMITS.contains(out)
    assert f.counts[LIMIT_CLIPPED] == 1


def test_limit_mode_reject_refuses_out_of_range_command_and_names_the_joint():
    log = []
    f = make_filter("reject", log=log)
    target = np.zeros(DOF)
    target[13] = 1.2
    with pytest.raises(CommandRejected, match="right_gripper=1.2000 outside") as err:
        f.validate(JOINT_NAMES, target)
    assert err.value.reason == OUT_OF_LIMITS
    assert f.counts[OUT_OF_LIMITS] == 1 and log[0][0] == OUT_OF_LIMITS
    np.testing.assert_array_equal(f.hold(), np.zeros(DOF))     # nothing forwarded


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_counted_and_logged(bad):
    log = []
    f = make_filter(log=log)
    target = np.zeros(DOF)
    target[3] = bad
    with pytest.raises(CommandRejected, match="left_joint4"):
        f.validate(JOINT_NAMES, target)
    assert f.counts[NON_FINITE] == 1 and f.accepted == 0
    assert log == [(NON_FINITE, log[0][1])] and "non-finite" in log[0][1]


@pytest.mark.parametrize("names,n_values,reason", [
    ([], DOF - 1, WRONG_SIZE),                                       # too few values
    ([], DOF + 1, WRONG_SIZE),                                       # too many values
    (list(JOINT_NAMES[:-1]), DOF, WRONG_SIZE),                        # names and values disagree
    ([*JOINT_NAMES[:-1], "left_joint1"], DOF, WRONG_NAMES),           # duplicate, one missing
    ([*JOINT_NAMES[:-1], "elbow"], DOF, WRONG_NAMES),                 # unknown name
])
def test_wrong_sizes_and_names_are_rejected_by_reason(names, n_values, reason):
    f = make_filter()
    with pytest.raises(CommandRejected) as err:
        f.validate(names, np.zeros(n_values))
    assert err.value.reason == reason
    assert f.counts[reason] == 1
    assert f.summary()[reason] == 1 and f.summary()["accepted"] == 0


def test_step_limit_moves_at_most_max_step_per_tick_and_reaches_target():
    f = make_filter(max_step=0.1)
    target = np.full(DOF, 0.35)
    outputs = [f.step(target).position for _ in range(5)]
    np.testing.assert_allclose([o[0] for o in outputs], [0.1, 0.2, 0.3, 0.35, 0.35])
    steps = np.abs(np.diff(np.vstack([np.zeros(DOF), *outputs]), axis=0))
    assert steps.max() <= 0.1 + 1e-12
    assert f.counts[STEP_LIMITED] == 3


def test_step_from_outside_limits_moves_back_inside_gradually():
    f = SafetyFilter(LIMITS, np.full(DOF, 0.1))
    start = np.zeros(DOF)
    start[0] = 1.3                       # arm reported slightly beyond the limit
    f.reset(start)
    first = f.step(start).position
    assert first[0] == pytest.approx(1.2)  # toward the limit by one step, never a jump
    for _ in range(5):
        last = f.step(start).position
    assert last[0] == pytest.approx(1.0)


def test_max_step_from_limits_divides_velocity_by_rate():
    np.testing.assert_allclose(max_step_from_limits(LIMITS, 100.0, 0.5), np.full(DOF, 0.015))
    with pytest.raises(ValueError, match="rate_hz"):
        max_step_from_limits(LIMITS, 0.0)


def test_watchdog_trips_once_when_commands_go_stale_and_recovers_on_feed():
    w = Watchdog(0.5)
    assert not w.check(100.0)          # nothing received yet: nothing to hold
    w.feed(1.0)
    assert not w.check(1.4)
    assert w.check(1.6) and w.check(2.0)
    assert w.trips == 1 and w.tripped
    w.feed(2.1)
    assert not w.check(2.2) and not w.tripped
    assert w.check(3.0) and w.trips == 2


def test_watchdog_rejects_non_positive_timeout():
    with pytest.raises(ValueError, match="watchdog timeout"):
        Watchdog(0.0)


def test_hold_before_reset_is_an_error():
    f = SafetyFilter(LIMITS, np.full(DOF, 0.1))
    with pytest.raises(RuntimeError, match="reset"):
        f.hold()


def make_accel_filter(max_step=0.1, max_step_change=0.01):
    f = SafetyFilter(LIMITS, np.full(DOF, max_step), "clip", max_step_change=np.full(DOF, max_step_change))
    f.reset(np.zeros(DOF))
    return f


def test_acceleration_limit_bounds_the_change_of_each_step_on_chattering_targets():
    f = make_accel_filter()
    out = [f.step(np.full(DOF, 0.5 if k % 2 == 0 else -0.5)).position for k in range(200)]
    steps = np.diff(np.vstack([np.zeros(DOF), out]), axis=0)
    assert np.all(np.abs(np.diff(steps, axis=0)) <= 0.01 + 1e-12)
    assert np.all(np.abs(steps) <= 0.1 + 1e-12)
    # Without the limit the joint reverses every tick at full speed (0.1 per tick); with it the
    # step never grows beyond one tick's change: the joint creeps at a tenth of full speed.
    assert np.max(np.abs(steps)) <= 0.01 + 1e-12
    assert f.summary()["accel_limited"] > 0


def test_acceleration_limit_reaches_a_far_target_without_overshoot():
    f = make_accel_filter()
    target = np.full(DOF, 0.8)
    out = np.array([f.step(target).position for _ in range(200)])
    np.testing.assert_allclose(out[-1], target, atol=1e-9)
    # Brakes in time: the discrete braking can leave less than one step change (a) of overshoot,
    # where an unbraked approach at 0.09 per tick would pass the target by up to 0.09.
    assert np.all(out <= target + 0.01)
    assert np.all(np.abs(np.diff(np.diff(out, axis=0), axis=0)) <= 0.01 + 1e-12)


def test_acceleration_limit_from_limits_and_off_when_zero():
    from motus_ros.execution.safety import max_step_change_from_limits
    a = max_step_change_from_limits(LIMITS, rate_hz=100.0, scale=1.0, accel_time=0.1)
    np.testing.assert_allclose(a, 3.0 / 0.1 / 100.0 ** 2)          # 30 rad/s^2 at 100 Hz
    assert max_step_change_from_limits(LIMITS, 100.0, 1.0, 0.0) is None
    with pytest.raises(ValueError, match="accel_time"):
        max_step_change_from_limits(LIMITS, 100.0, 1.0, -1.0)


def test_stopping_point_is_where_braking_ends_and_holding_it_never_reverses():
    f = make_accel_filter()
    for _ in range(8):
        f.step(np.full(DOF, 0.9))                                  # accelerating toward 0.9
    stop = f.stopping_point()
    out = np.array([f.step(stop).position for _ in range(30)])
    assert np.all(np.diff(out[:, 0]) >= -1e-12)                     # decelerates, never comes back
    np.testing.assert_allclose(out[-1], stop, atol=1e-9)


def test_clip_mode_clips_before_interpolation_and_rejects_far_out_garbage():
    f = make_filter(max_step=10.0)
    near = np.zeros(DOF)
    near[0] = 1.2                                   # 0.2 beyond: clipped already in validate()
    assert f.validate([], near)[0] == 1.0 and f.counts[LIMIT_CLIPPED] == 1
    far = np.zeros(DOF)
    far[3] = 100.0                                  # q + 100 rad: garbage, not a target at the edge
    with pytest.raises(CommandRejected) as info:
        f.validate([], far)
    assert info.value.reason == OUT_OF_LIMITS and "left_joint4=100.0000" in str(info.value)
