"""ChunkExecutor (the core of the chunk executor node and of the in-process eval), without ROS."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.execution.chunks import Chunk
from motus_ros.execution.executor import ChunkExecutor, ExecutorSettings
from motus_ros.layout import DOF

DT = 0.1   # control period of these tests (s)


def chunk(stamp, values, chunk_id=0):
    """A chunk whose row i sets every joint to values[i], rows DT apart after stamp."""
    return Chunk(stamp, DT, np.repeat(np.asarray(values, float)[:, None], DOF, axis=1), chunk_id)


def core(events=None, **changes):
    settings = ExecutorSettings(**{"control_rate_hz": 1 / DT, "max_joint_step": 100.0,
                                   "max_gripper_step": 100.0, **changes})
    return ChunkExecutor(settings, on_event=None if events is None else
                         lambda kind, text: events.append((kind, text)))


ZERO = np.zeros(DOF)


def test_nothing_is_commanded_before_a_chunk_then_the_plan_is_followed():
    ex = core()
    assert ex.tick(0.1, ZERO) is None and ex.commands == 0
    assert ex.add(chunk(0.0, [1, 2, 3]), now=0.0).accepted
    assert [ex.tick(t, ZERO)[0] for t in (0.1, 0.2, 0.3)] == pytest.approx([1, 2, 3])
    assert ex.commands == 3


def test_the_first_command_after_a_reset_starts_from_the_measured_state():
    ex = core(max_joint_step=0.5)
    ex.add(chunk(0.0, [5, 5, 5]), now=0.0)
    measured = np.full(DOF, 2.0)
    assert ex.tick(0.1, measured)[0] == pytest.approx(2.5)   # measured + one step
    assert ex.tick(0.2, measured)[0] == pytest.approx(3.0)   # then from the last command


def test_policy_timeout_holds_the_last_command_and_reports_once_then_recovers():
    events = []
    ex = core(events, policy_timeout_s=0.25, strategy="replace")
    ex.add(chunk(0.0, list(range(1, 11))), now=0.0)
    assert ex.tick(0.2, ZERO)[0] == pytest.approx(2)
    held = [ex.tick(t, ZERO)[0] for t in (0.3, 0.4, 0.5)]      # 0.3 s > 0.25 s without a chunk
    assert held == pytest.approx([2, 2, 2]) and ex.policy_timeouts == 1
    assert [k for k, _ in events] == ["policy_timeout"] and "policy_timeout_s 0.25" in events[0][1]
    assert ex.status(0.5)[0] == 2
    ex.add(chunk(0.5, [9, 9, 9]), now=0.5)
    assert ex.tick(0.6, ZERO)[0] == pytest.approx(9) and [k for k, _ in events][-1] == "policy_back"


def test_a_policy_silent_since_a_reset_is_reported_without_a_plan():
    """The soak's policy kill just before a new episode: the reset dropped the plan, no chunk
    ever comes; the executor must still say the policy is gone, and command nothing."""
    events = []
    ex = core(events, policy_timeout_s=0.25)
    ex.add(chunk(0.0, [1, 2, 3]), now=0.0)
    ex.reset(now=0.3)                                       # new episode: plan dropped
    assert ex.tick(0.5, ZERO) is None and ex.policy_timeouts == 0
    assert ex.tick(0.6, ZERO) is None and ex.policy_timeouts == 1   # 0.3 s after the reset
    assert [k for k, _ in events] == ["policy_timeout"]
    assert ex.status(0.6)[0] == 2
    ex.reset()                                              # a reset without a time: start-up rules
    assert ex.tick(5.0, ZERO) is None and ex.policy_timeouts == 1


def test_exhausted_plan_holds_the_last_target_or_stays_silent():
    for hold, expected in ((True, 3.0), (False, None)):
        ex = core(hold_when_exhausted=hold, policy_timeout_s=10.0)
        ex.add(chunk(0.0, [1, 2, 3]), now=0.0)
        out = ex.tick(0.5, ZERO)
        assert (out if out is None else out[0]) == expected and ex.starved_ticks == 1


def test_arm_disable_and_a_new_episode_drop_the_plan_but_learning_the_state_does_not():
    ex = core()
    assert not ex.arm_enabled(True) and not ex.episode(4)       # first news: no reset
    ex.add(chunk(0.0, [1, 2, 3]), now=0.0)
    assert ex.arm_enabled(False) and not ex.scheduler.has_plan and ex.resets == 1
    assert ex.tick(0.1, ZERO) is None                            # disabled: silent
    assert ex.status(0.1)[1].startswith("arm not executing")
    ex.arm_enabled(True)
    ex.add(chunk(0.1, [1, 2, 3]), now=0.1)
    assert not ex.episode(4) and ex.scheduler.has_plan
    assert ex.episode(5) and not ex.scheduler.has_plan and ex.resets == 2
    assert ex.last_command is None


def test_rejections_are_counted_by_reason_for_diagnostics():
    ex = core()
    ex.reject("wrong_names")
    assert not ex.add(chunk(3600.0, [1]), now=0.0).accepted       # a clock error
    level, message, values = ex.status(0.0)
    assert level == 1 and message == "2 chunks rejected"
    assert values["rejected_wrong_names"] == 1 and values["rejected_future_stamp"] == 1


def test_configure_applies_at_once_and_a_bad_value_changes_nothing():
    ex = core()
    ex.add(chunk(0.0, [0] * 10), now=0.0)
    ex.configure(strategy="replace", max_joint_step=0.5)
    assert ex.scheduler.strategy == "replace" and ex.settings.strategy == "replace"
    assert ex.max_step[0] == pytest.approx(0.5)
    stats = ex.add(chunk(0.1, [7] * 10), now=0.1)
    assert stats.strategy == "replace"
    with pytest.raises(ValueError, match=r"strategy: got 'fast', expected one of"):
        ex.configure(strategy="fast")
    with pytest.raises(ValueError, match=r"policy_timeout_s: got -1"):
        ex.configure(policy_timeout_s=-1)
    with pytest.raises(ValueError, match="control_rate_hz"):
        ex.configure(control_rate_hz=50.0)
    assert ex.settings.strategy == "replace" and ex.scheduler.strategy == "replace"
    assert ex.settings.policy_timeout_s == 1.0


def test_step_limits_keep_the_speed_when_ticking_faster_than_the_control_rate():
    settings = ExecutorSettings(control_rate_hz=30.0, max_joint_step=0.1, max_gripper_step=0.15)
    fast = ChunkExecutor(settings, tick_s=0.02)                    # 50 Hz physics steps
    assert fast.max_step[0] == pytest.approx(0.1 * 0.02 * 30) and fast.max_step[6] == pytest.approx(0.15 * 0.6)
    assert ChunkExecutor(settings).max_step[0] == pytest.approx(0.1)


def test_settings_from_parameters_ignore_other_keys_and_name_a_bad_field():
    s = ExecutorSettings.from_params({"strategy": "rtc", "diagnostics_period": 1.0, "use_sim_time": True})
    assert s.strategy == "rtc"
    with pytest.raises(ValueError, match=r"max_joint_step: got 0"):
        ExecutorSettings(max_joint_step=0)


def test_chunks_observed_before_a_reset_are_refused_without_a_warning():
    ex = core(strategy="replace")
    ex.episode(1)
    ex.add(chunk(0.0, [1] * 10), now=0.0)
    assert ex.episode(2, now=0.5)                                   # new scene at t = 0.5 s
    late = ex.add(chunk(0.4, [1] * 10), now=0.6)                    # observed in the old scene
    assert not late.accepted and late.reason == "before_reset" and not ex.scheduler.has_plan
    assert ex.add(chunk(0.55, [2] * 10), now=0.7).accepted          # the new scene's chunk
    level, _, values = ex.status(0.7)
    assert level == 0 and values["chunks_before_reset"] == 1 and not ex.rejected
    ex.reset(now=5.0)
    assert ex.add(chunk(0.1, [3] * 10), now=0.2).accepted           # the clock went back: new timeline


def test_a_known_episode_start_is_the_exact_boundary_of_the_new_scene():
    ex = core(strategy="replace")
    ex.episode(1, now=0.0, start=0.0)
    assert ex.episode(2, now=2.05, start=2.0)                      # heard 50 ms after the start
    assert ex.add(chunk(2.01, [1] * 10), now=2.3).accepted          # observed in the new scene
    assert not ex.add(chunk(1.99, [1] * 10), now=2.3).accepted
    assert ex.episode(3, now=4.05, start=2.0)                      # its start not heard yet: now
    assert ex.add(chunk(4.01, [1] * 10), now=4.3).reason == "before_reset"
