"""Action-chunk scheduling and blending, pure numpy (no ROS).

A chunk row i is the absolute target for time `stamp + (i + 1) * period`, where `stamp` is the
time of the observation the chunk was computed from (ActionChunk.header.stamp). Rows already in
the past when the chunk arrives are dropped (counted, never executed); the remaining rows are
merged with the current plan by one of three strategies:

- ``replace``: the new chunk's trajectory takes over from now on.
- ``temporal_ensemble``: every chunk that has a prediction for time t votes; weights
  w_i = exp(-m * i) with i = 0 the oldest prediction (ACT, Zhao et al. 2023, "Learning
  Fine-Grained Bimanual Manipulation with Low-Cost Hardware", Sec. 3.3; m = 0.01 there).
- ``rtc``: real-time-chunking style (Black et al. 2025, "Real-Time Execution of Action Chunking
  Flow Policies"). The rows that executed or will execute while the chunk was being computed
  (observation stamp up to now + a margin) keep the old plan exactly; the rest of the overlap
  follows the paper's soft guidance mask W_i = c_i (e^{c_i} - 1) / (e - 1),
  c_i = (E + 1 - i) / (E - d + 2) for d <= i <= E (d frozen rows, E last overlapping row), so the
  old plan's weight decays smoothly to zero; after the overlap the new chunk runs alone.

Whatever the strategy, the executor finally limits each tick's change to a maximum step
(`limit_step`), so no blend can jump more than that between chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from motus_ros.layout import DOF, GRIPPER_INDICES, JOINT_NAMES, LayoutError, reorder

STRATEGIES = ("replace", "temporal_ensemble", "rtc")
ACT_ENSEMBLE_DECAY = 0.01   # m in w_i = exp(-m * i), ACT reference implementation
_ARM_COLUMNS = np.array([i for i in range(DOF) if i not in GRIPPER_INDICES])


class ChunkError(ValueError):
    """A chunk that cannot be executed; `reason` says why (counted by the executor)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Chunk:
    """A validated chunk in layout order: positions (H, DOF), times in seconds."""

    stamp: float
    period: float
    positions: np.ndarray
    chunk_id: int = 0

    @property
    def horizon(self) -> int:
        return int(self.positions.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Target time of every row (seconds, same clock as stamp)."""
        return self.stamp + (np.arange(self.horizon) + 1) * self.period


def make_chunk(joint_names: Sequence[str], period: float, horizon: int, positions: Sequence[float],
               stamp: float, chunk_id: int = 0, layout: Sequence[str] = JOINT_NAMES) -> Chunk:
    """Validate an ActionChunk's fields and reorder its columns into the layout order."""
    names = list(joint_names)
    flat = np.asarray(positions, dtype=np.float64).reshape(-1)
    if not (period > 0 and math.isfinite(period)):
        raise ChunkError("bad_period", f"control_period: got {period}, expected a finite value > 0 s")
    if horizon < 1:
        raise ChunkError("wrong_size", f"horizon: got {horizon}, expected >= 1")
    dof = len(names) if names else len(layout)
    if flat.shape[0] != horizon * dof:
        raise ChunkError("wrong_size", f"positions: got {flat.shape[0]} values, expected horizon x dof "
                                       f"= {horizon} x {dof} = {horizon * dof}")
    try:   # (H, dof) row-major as in ActionChunk.msg -> (H, len(layout)) columns in layout order
        rows = reorder(names, flat.reshape(horizon, dof), layout, field="joint_names")
    except LayoutError as exc:
        raise ChunkError(exc.reason, str(exc)) from exc
    if not np.all(np.isfinite(rows)):
        raise ChunkError("non_finite", "positions: chunk contains NaN or inf")
    return Chunk(float(stamp), float(period), rows, int(chunk_id))


class Trajectory:
    """Piecewise-linear trajectory through (times, positions); clamped before its start."""

    def __init__(self, times: np.ndarray, positions: np.ndarray):
        self.times = np.asarray(times, dtype=np.float64)
        self.positions = np.asarray(positions, dtype=np.float64)
        self._eps = 1e-6 * (float(np.min(np.diff(self.times))) if len(self.times) > 1 else 1.0)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def covers(self, t: float) -> bool:
        return self.start - self._eps <= t <= self.end + self._eps

    def reaches(self, t: float) -> bool:
        """True while t is not past the last row."""
        return t <= self.end + self._eps

    def value(self, t: float) -> np.ndarray:
        """Position at time t (linear between rows, first/last row outside)."""
        if t <= self.times[0]:
            return self.positions[0].copy()
        if t >= self.times[-1] - self._eps:
            return self.positions[-1].copy()
        k = int(np.searchsorted(self.times, t, side="right"))  # times[k-1] <= t < times[k]
        t0, t1 = self.times[k - 1], self.times[k]
        if t - t0 <= self._eps:
            return self.positions[k - 1].copy()
        a = (t - t0) / (t1 - t0)
        return (1.0 - a) * self.positions[k - 1] + a * self.positions[k]


@dataclass
class ChunkStats:
    """Per-chunk execution statistics (mirrors motus_msgs/ChunkExecutionStats)."""

    chunk_id: int
    latency: float
    dropped_steps: int
    used_steps: int
    blend_discontinuity: float
    strategy: str
    accepted: bool = True
    reason: str = ""


def rtc_weights(n_rows: int, frozen: int, overlap_end: int) -> np.ndarray:
    """Weight of the OLD plan per row: 1 for i < frozen, RTC soft mask to overlap_end, then 0."""
    w = np.zeros(n_rows)
    d = max(0, min(frozen, n_rows))
    w[:d] = 1.0
    end = min(overlap_end, n_rows - 1)
    if end >= d:
        i = np.arange(d, end + 1)
        c = (end + 1 - i) / (end - d + 2)
        w[d:end + 1] = c * (np.exp(c) - 1.0) / (math.e - 1.0)
    return w


def limit_step(previous: np.ndarray | None, target: np.ndarray, max_step: np.ndarray) -> np.ndarray:
    """Move from previous toward target by at most max_step per joint (previous None: target)."""
    if previous is None:
        return np.asarray(target, dtype=np.float64).copy()
    return previous + np.clip(target - previous, -max_step, max_step)


class ChunkScheduler:
    """Holds the executed plan; `add()` merges a chunk, `target(t)` samples the plan at time t."""

    def __init__(self, strategy: str = "rtc", ensemble_decay: float = ACT_ENSEMBLE_DECAY,
                 rtc_freeze_margin_steps: int = 1, rtc_blend_steps: int = 0,
                 lookahead: float = 0.0, latency_smoothing: float = 0.2,
                 max_future_stamp: float = 0.5):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: got {strategy!r}, expected one of {list(STRATEGIES)}")
        if ensemble_decay < 0:
            raise ValueError(f"ensemble_decay: got {ensemble_decay}, expected >= 0")
        self.strategy = strategy
        self.ensemble_decay = float(ensemble_decay)
        self.rtc_freeze_margin_steps = int(rtc_freeze_margin_steps)
        self.rtc_blend_steps = int(rtc_blend_steps)
        self.lookahead = float(lookahead)
        self.latency_smoothing = float(latency_smoothing)
        # A chunk stamped further ahead than this is a clock error (its observation cannot come
        # from the future); accepted, it would make every later valid chunk "out of order".
        self.max_future_stamp = float(max_future_stamp)
        self.latency_estimate: float | None = None
        self._plans: list[Trajectory] = []    # oldest first; one plan except temporal_ensemble
        self._last_value: np.ndarray | None = None
        self._newest_stamp: float | None = None

    def reset(self) -> None:
        """Forget every plan (after an emergency stop or a new episode)."""
        self._plans.clear()
        self._last_value = None
        self._newest_stamp = None

    @property
    def has_plan(self) -> bool:
        return bool(self._plans)

    def exhausted(self, t: float) -> bool:
        """True when no plan reaches time t (the executor then holds the last target)."""
        return not any(p.reaches(t) for p in self._plans)

    def add(self, chunk: Chunk, now: float) -> ChunkStats:
        """Merge chunk at time `now` (same clock as chunk.stamp); returns its statistics."""
        latency = now - chunk.stamp
        times = chunk.times
        eps = 1e-6 * chunk.period
        past = times < now + self.lookahead - eps
        dropped = int(np.count_nonzero(past))
        used = chunk.horizon - dropped
        stats = ChunkStats(chunk.chunk_id, latency, dropped, used, 0.0, self.strategy)
        if chunk.stamp > now + self.max_future_stamp:
            stats.accepted, stats.reason, stats.used_steps, stats.dropped_steps = (
                False, "future_stamp", 0, chunk.horizon)
            return stats
        if self._newest_stamp is not None and chunk.stamp < self._newest_stamp:
            stats.accepted, stats.reason, stats.used_steps, stats.dropped_steps = (
                False, "out_of_order", 0, chunk.horizon)
            return stats
        if used == 0:
            stats.accepted, stats.reason = False, "all_steps_past"
            return stats
        self._newest_stamp = chunk.stamp
        self.latency_estimate = latency if self.latency_estimate is None else (
            (1 - self.latency_smoothing) * self.latency_estimate + self.latency_smoothing * latency)

        first_future = float(times[dropped])
        before = self.target(first_future, remember=False)
        self._prune(now)
        if self.strategy == "replace" or not self._plans:
            self._plans = [Trajectory(times, chunk.positions)]
        elif self.strategy == "temporal_ensemble":
            self._plans.append(Trajectory(times, chunk.positions))
        else:  # rtc
            self._plans = [self._rtc_merge(chunk, times, now)]
        after = self.target(first_future, remember=False)
        if before is not None and after is not None:
            stats.blend_discontinuity = float(np.max(np.abs(after - before)[_ARM_COLUMNS]))
        return stats

    def _rtc_merge(self, chunk: Chunk, times: np.ndarray, now: float) -> Trajectory:
        old = self._plans[-1]
        eps = 1e-6 * chunk.period
        frozen = int(np.count_nonzero(
            times < now + self.rtc_freeze_margin_steps * chunk.period - eps))
        overlap = np.flatnonzero(times <= old.end + eps)
        overlap_end = int(overlap[-1]) if len(overlap) else -1
        if self.rtc_blend_steps > 0:
            overlap_end = min(overlap_end, frozen - 1 + self.rtc_blend_steps)
        w = rtc_weights(chunk.horizon, frozen, overlap_end)
        merged = chunk.positions.copy()
        for i in np.flatnonzero(w > 0):
            merged[i] = w[i] * old.value(float(times[i])) + (1.0 - w[i]) * chunk.positions[i]
        return Trajectory(times, merged)

    def _prune(self, now: float) -> None:
        if len(self._plans) > 1:
            self._plans = [p for p in self._plans if p.reaches(now)] or self._plans[-1:]

    def target(self, t: float, remember: bool = True) -> np.ndarray | None:
        """Planned position at time t; the last target when the plan ran out; None before any."""
        if not self._plans:
            return None
        if self.strategy == "temporal_ensemble":
            voters = [p for p in self._plans if p.covers(t)]
            if voters:
                w = np.exp(-self.ensemble_decay * np.arange(len(voters)))  # oldest first
                value = np.tensordot(w / w.sum(), np.stack([p.value(t) for p in voters]), axes=1)
            else:
                live = [p for p in self._plans if p.reaches(t)]
                value = (live[-1] if live else self._plans[-1]).value(t)
        else:
            value = self._plans[-1].value(t)
        if remember:
            self._last_value = value
            if len(self._plans) > 1:
                self._prune(t)
        return value
