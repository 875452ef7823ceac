"""Chunk scheduling and blending (replace, temporal_ensemble, rtc), step limiting, interpolation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from motus_ros.execution.chunks import (ChunkError, ChunkScheduler, Trajectory, limit_step,
                                        make_chunk, rtc_weights)
from motus_ros.execution.interpolation import CommandInterpolator, upsample
from motus_ros.layout import DOF, JOINT_NAMES

DT = 0.1


def rows(values) -> np.ndarray:
    """(H, DOF) rows where every joint of row i has values[i]."""
    return np.repeat(np.asarray(values, dtype=float)[:, None], DOF, axis=1)


def chunk(stamp, values, chunk_id=0):
    r = rows(values)
    return make_chunk(JOINT_NAMES, DT, r.shape[0], r.ravel(), stamp, chunk_id)


A = list(range(1, 11))           # rows at t = 0.1 .. 1.0
B = [100 + j for j in range(10)]  # stamp 0.3: rows at t = 0.4 .. 1.3


def run(strategy, **kw):
    """Chunk A at t=0, ticks 0.1..0.4, chunk B (stamp 0.3) at 0.5, ticks 0.5..1.3."""
    s = ChunkScheduler(strategy, **kw)
    s.add(chunk(0.0, A, 1), now=0.0)
    seq = [s.target(round(k * DT, 10))[0] for k in range(1, 5)]
    stats = s.add(chunk(0.3, B, 2), now=0.5)
    seq += [s.target(round(k * DT, 10))[0] for k in range(5, 14)]
    return np.array(seq), stats


def test_replace_switches_to_the_new_chunk_and_drops_past_rows():
    seq, stats = run("replace")
    np.testing.assert_allclose(seq, [1, 2, 3, 4, 101, 102, 103, 104, 105, 106, 107, 108, 109])
    assert stats.dropped_steps == 1 and stats.used_steps == 9   # row at t=0.4 was already past
    assert stats.latency == pytest.approx(0.2)
    assert stats.blend_discontinuity == pytest.approx(101 - 5)  # at t=0.5: A says 5, B says 101


def test_temporal_ensemble_uses_act_exponential_weights_oldest_first():
    m = 0.01
    seq, _ = run("temporal_ensemble", ensemble_decay=m)
    w0, w1 = 1.0, math.exp(-m)                 # w_i = exp(-m * i), i = 0 the oldest (chunk A)
    expected = [1, 2, 3, 4]
    for k in range(5, 14):
        a = k if k <= 10 else None             # A covers up to t = 1.0
        b = 100 + (k - 4)                      # B row at t = k * 0.1
        expected.append((w0 * a + w1 * b) / (w0 + w1) if a is not None else b)
    np.testing.assert_allclose(seq, expected, rtol=1e-12)


def test_temporal_ensemble_with_large_decay_favours_the_oldest_prediction():
    seq, _ = run("temporal_ensemble", ensemble_decay=50.0)
    np.testing.assert_allclose(seq[4:6], [5, 6], atol=1e-12)


def test_rtc_keeps_frozen_rows_then_blends_with_the_soft_mask_then_follows_the_new_chunk():
    seq, stats = run("rtc", rtc_freeze_margin_steps=1)
    # Rows of B (index i at t = 0.4 + 0.1 i): frozen while t < now + 1 step = 0.6 -> i = 0, 1;
    # the overlap with A ends at t = 1.0 -> i = 6; RTC weights of the old plan in between.
    d, end = 2, 6
    expected = [1, 2, 3, 4]
    for k in range(5, 14):
        i = k - 4
        old, new = (k if k <= 10 else None), 100 + i
        if i < d:
            w = 1.0
        elif i <= end:
            c = (end + 1 - i) / (end - d + 2)
            w = c * (math.exp(c) - 1) / (math.e - 1)
        else:
            w = 0.0
        expected.append(w * old + (1 - w) * new if w > 0 else new)
    np.testing.assert_allclose(seq, expected, rtol=1e-12)
    assert seq[4] == 5                         # the command at the switch is exactly the old plan
    assert stats.blend_discontinuity == pytest.approx(0.0)


def test_rtc_weights_are_one_then_decay_monotonically_to_zero():
    w = rtc_weights(12, frozen=3, overlap_end=8)
    np.testing.assert_allclose(w[:3], 1.0)
    assert np.all(np.diff(w[3:10]) < 0) and np.all(w[9:] == 0) and 0 < w[8] < w[3] < 1


@pytest.mark.parametrize("strategy", ["replace", "temporal_ensemble", "rtc"])
def test_step_limit_bounds_every_tick_including_chunk_switches(strategy):
    max_step = np.full(DOF, 0.5)
    s = ChunkScheduler(strategy)
    s.add(chunk(0.0, np.zeros(10)), now=0.0)
    previous, jumps = np.zeros(DOF), []
    for k in range(1, 25):
        t = round(k * DT, 10)
        if k == 4:
            s.add(chunk(0.3, np.full(10, 7.0)), now=t)   # a 7 rad jump offered at once
        command = limit_step(previous, s.target(t), max_step)
        jumps.append(np.max(np.abs(command - previous)))
        previous = command
    assert max(jumps) <= 0.5 + 1e-12
    assert previous[0] == pytest.approx(7.0)             # still converges to the new plan


def test_plan_holds_last_row_when_exhausted():
    s = ChunkScheduler("replace")
    s.add(chunk(0.0, [1, 2, 3]), now=0.0)
    assert not s.exhausted(0.3)
    assert s.exhausted(0.5)
    np.testing.assert_allclose(s.target(0.5)[0], 3)


def test_out_of_order_and_entirely_past_chunks_are_refused():
    s = ChunkScheduler("replace")
    assert s.add(chunk(1.0, A), now=1.0).accepted
    old = s.add(chunk(0.5, B), now=1.05)
    assert not old.accepted and old.reason == "out_of_order"
    late = s.add(chunk(1.1, [5, 6]), now=2.0)
    assert not late.accepted and late.reason == "all_steps_past" and late.dropped_steps == 2
    np.testing.assert_allclose(s.target(1.1)[0], 1)      # plan unchanged


def test_interpolated_ticks_between_rows():
    traj = Trajectory(np.array([0.1, 0.2]), rows([1.0, 3.0]))
    assert traj.value(0.15)[0] == pytest.approx(2.0)
    assert traj.value(0.0)[0] == 1.0 and traj.value(1.0)[0] == 3.0


def test_make_chunk_reorders_columns_by_joint_name():
    names = list(reversed(JOINT_NAMES))
    values = np.arange(2 * DOF, dtype=float).reshape(2, DOF)      # columns in `names` order
    c = make_chunk(names, 1 / 30, 2, values.ravel(), 5.0, 7)
    np.testing.assert_allclose(c.positions, values[:, ::-1])
    np.testing.assert_allclose(c.times, [5.0 + 1 / 30, 5.0 + 2 / 30])
    assert c.chunk_id == 7


@pytest.mark.parametrize("kwargs,reason,match", [
    (dict(n_values=2 * DOF - 1), "wrong_size", "expected horizon x dof"),
    (dict(names=[*JOINT_NAMES[:-1], "wrist"]), "wrong_names", "unknown \\['wrist'\\]"),
    (dict(nan=True), "non_finite", "NaN"),
    (dict(period=0.0), "bad_period", "control_period"),
])
def test_make_chunk_rejects_bad_chunks_naming_the_field(kwargs, reason, match):
    values = np.zeros(kwargs.get("n_values", 2 * DOF))
    if kwargs.get("nan"):
        values[3] = np.nan
    with pytest.raises(ChunkError, match=match) as err:
        make_chunk(kwargs.get("names", JOINT_NAMES), kwargs.get("period", 1 / 30), 2, values, 0.0)
    assert err.value.reason == reason


def test_command_interpolator_ramps_over_the_measured_period():
    ip = CommandInterpolator("linear", nominal_period=0.1)
    assert ip.sample(0.0) is None
    ip.push(0.0, np.zeros(DOF))
    np.testing.assert_allclose(ip.sample(0.05), 0.0)        # first command: no ramp from nowhere
    ip.push(0.1, np.ones(DOF))
    np.testing.assert_allclose(ip.sample(0.125), 0.25)
    np.testing.assert_allclose(ip.sample(0.15), 0.5)
    np.testing.assert_allclose(ip.sample(0.3), 1.0)         # never overshoots
    ip.push(0.2, np.full(DOF, 2.0))                         # mid-ramp start is where we are
    np.testing.assert_allclose(ip.sample(0.2), 1.0)


def test_command_interpolator_none_mode_is_a_staircase():
    ip = CommandInterpolator("none")
    ip.push(0.0, np.zeros(DOF))
    ip.push(0.1, np.ones(DOF))
    np.testing.assert_allclose(ip.sample(0.1001), 1.0)


def test_upsample_30hz_to_200hz_is_linear():
    src = np.stack([np.arange(4.0), -np.arange(4.0)], axis=1)   # 4 rows at 30 Hz
    out = upsample(src, 1 / 30, 1 / 200)
    assert out.shape == (21, 2)
    np.testing.assert_allclose(out[:, 0], np.arange(21) / 200 * 30, atol=1e-9)


def test_a_chunk_stamped_in_the_future_is_refused_and_does_not_lock_out_later_chunks():
    s = ChunkScheduler("replace", max_future_stamp=0.5)
    bogus = s.add(chunk(3600.0, A, chunk_id=1), now=0.0)          # an hour ahead: a clock error
    assert not bogus.accepted and bogus.reason == "future_stamp" and not s.has_plan
    assert s.add(chunk(0.3, A, chunk_id=2), now=0.0).accepted      # within the tolerance
    assert s.add(chunk(0.4, B, chunk_id=3), now=0.5).accepted      # later valid chunks still go in
