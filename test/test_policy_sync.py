"""Pure observation synchronisation, mode checks and the inference worker."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from motus_ros.layout import JOINT_NAMES, LayoutError
from motus_ros.motus.modes import CONTROL_MODES, check_mode, mode_id
from motus_ros.policy.sync import STATE, ObservationSync, state_vector
from motus_ros.policy.worker import InferenceWorker

CAMS = ("high", "left_wrist", "right_wrist")


def fill(sync, stamps):
    for source, stamp in stamps.items():
        sync.add(source, stamp, f"{source}@{stamp}")


def test_matches_nearest_samples_and_stamps_with_oldest():
    sync = ObservationSync(CAMS, tolerance_s=0.02, max_age_s=1.0)
    for t in (10.0, 10.033, 10.066):
        fill(sync, {c: t for c in CAMS})
    fill(sync, {STATE: 10.0})
    fill(sync, {STATE: 10.04})
    result = sync.assemble(now=10.1)
    assert result.ok, result.reason
    # reference = newest time every source covers = 10.04 (state); cameras nearest: 10.033
    assert result.samples["high"] == "high@10.033" and result.samples[STATE] == "joint_state@10.04"
    assert result.stamp == pytest.approx(10.033)


def test_missing_source_is_named():
    sync = ObservationSync(CAMS, 0.05, 1.0)
    fill(sync, {"high": 1.0, STATE: 1.0})
    result = sync.assemble(now=1.0)
    assert not result.ok and result.stale
    assert result.reason == "no data yet from camera left_wrist, camera right_wrist"


def test_stale_observation_is_refused_with_ages():
    sync = ObservationSync(CAMS, 0.05, max_age_s=0.5)
    fill(sync, {c: 1.0 for c in CAMS})
    fill(sync, {STATE: 2.0})
    result = sync.assemble(now=2.0)
    assert not result.ok and result.stale
    assert "camera high is 1.000 s old" in result.reason and "max_observation_age_s 0.5" in result.reason
    assert "joint state" not in result.reason


def test_out_of_sync_is_refused():
    sync = ObservationSync(CAMS, tolerance_s=0.05, max_age_s=5.0)
    fill(sync, {"high": 1.0, "left_wrist": 1.0, "right_wrist": 1.2, STATE: 1.0})
    result = sync.assemble(now=1.2)
    assert not result.ok and not result.stale
    assert "spread 0.200 s > sync_tolerance_s 0.05" in result.reason


def test_same_observation_is_not_used_twice_and_time_reset_clears():
    sync = ObservationSync(CAMS, 0.05, 5.0)
    fill(sync, {**{c: 1.0 for c in CAMS}, STATE: 1.0})
    first = sync.assemble(now=1.0)
    sync.mark_used(first.stamp)
    assert sync.assemble(now=1.0).reason == "no new observation since the last chunk"
    assert sync.assemble(now=1.0, require_new=False).ok
    sync.add("high", 0.5, "back in time")  # e.g. the simulation was reset
    assert sync.ages(1.0)["high"] == pytest.approx(0.5)


def test_assemble_at_a_given_time():
    sync = ObservationSync(CAMS, 0.05, 5.0)
    for t in (1.0, 1.1, 1.2):
        fill(sync, {**{c: t for c in CAMS}, STATE: t})
    result = sync.assemble(now=1.2, at=1.09, require_new=False)
    assert result.ok and result.stamp == pytest.approx(1.1)


def test_state_vector_orders_by_name_and_names_missing():
    names = list(reversed(JOINT_NAMES))
    vec = state_vector(names, list(range(14)))
    assert vec[0] == 13 and vec[13] == 0
    with pytest.raises(ValueError, match=r"missing \['right_gripper'\]"):
        state_vector(JOINT_NAMES[:-1], [0.0] * 13)
    with pytest.raises(ValueError, match="non-finite"):
        state_vector(JOINT_NAMES, [np.nan] + [0.0] * 13)


def test_state_vector_ignores_extra_joints_and_gives_a_reason_key():
    names = ["head_pan", *reversed(JOINT_NAMES)]            # a robot that reports one more joint
    vec = state_vector(names, [99.0, *range(14)])
    assert vec[0] == 13 and vec[13] == 0 and 99.0 not in vec
    with pytest.raises(LayoutError) as err:
        state_vector(JOINT_NAMES, [0.0] * 13)
    assert err.value.reason == "wrong_size"
    with pytest.raises(LayoutError) as err:
        state_vector(JOINT_NAMES, [np.inf] + [0.0] * 13)
    assert err.value.reason == "non_finite"


def test_modes():
    assert check_mode(4) == "joint" and check_mode("VLA") == "vla" and mode_id("wm") == 1
    assert check_mode(0, CONTROL_MODES, "policy node") == "vla"
    with pytest.raises(ValueError, match=r"mode WM refused by policy node: it accepts only "
                                         r"VLA\(0\) or JOINT\(4\)"):
        check_mode(1, CONTROL_MODES, "policy node")
    with pytest.raises(ValueError, match=r"got 9, expected one of VLA\(0\)"):
        check_mode(9)


class GatedPolicy:
    """Test double: infer() waits until released, so 'busy' can be observed deterministically."""

    def __init__(self):
        self.gate = threading.Event()
        self.calls = []

    def infer(self, observation):
        self.gate.wait(10)
        self.calls.append(("infer", observation["x"]))
        if observation["x"] == "boom":
            raise RuntimeError("boom")
        return {"actions": np.zeros((2, 14)), "mode": "vla"}

    def set_mode(self, mode, steps=None):
        self.calls.append(("set_mode", mode, steps))

    def reset(self):
        self.calls.append(("reset",))


def test_worker_runs_one_job_at_a_time_and_applies_mode_first():
    policy, results, errors = GatedPolicy(), [], []
    worker = InferenceWorker(policy, lambda m, r, d: results.append(m), lambda m, e: errors.append(e))
    try:
        assert worker.submit({"x": 1}, "a")
        assert not worker.submit({"x": 2}, "b") and worker.skipped == 1  # busy: refused, counted
        policy.gate.set()
        assert worker.wait_idle(10)
        worker.set_mode("joint", 5)
        assert worker.submit({"x": 3}, "c") and worker.wait_idle(10)
        assert worker.submit({"x": "boom"}, "d") and worker.wait_idle(10)
    finally:
        worker.stop()
    assert results == ["a", "c"] and str(errors[0]) == "boom"
    assert policy.calls == [("infer", 1), ("set_mode", "joint", 5), ("infer", 3), ("infer", "boom")]
