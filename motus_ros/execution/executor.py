"""The chunk executor's core: action chunks in, one step-limited joint command per tick out.

Pure Python on any clock in seconds (no ROS). The chunk executor node drives it from its
subscriptions and its control-rate timer; `motus-ros eval --in-process` drives the same object on
simulated time, so both run the graph's code with the graph's parameters.

Per tick: while chunks keep coming, the command follows the scheduler's plan (strategy and
blending: motus_ros.execution.chunks), moving at most `max_step` per joint from the last command;
when no chunk was accepted for policy_timeout_s it holds the last command; when the plan ran out it
holds the last target (hold_when_exhausted) or stays silent. `reset(now)` drops the plan and
refuses chunks observed before `now`: after a reset the executor is silent until a chunk of the new
situation arrives, whose first command starts from the measured state. The arm being disabled and
a new sim episode reset it (`arm_enabled`, `episode`).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from motus_ros.execution.chunks import (ACT_ENSEMBLE_DECAY, STRATEGIES, Chunk, ChunkScheduler,
                                        ChunkStats, limit_step)
from motus_ros.layout import CONTROL_RATE_HZ, DOF, GRIPPER_INDICES


@dataclass(frozen=True)
class ExecutorSettings:
    """The executor's parameters (the node's ROS parameters of the same names)."""

    control_rate_hz: float = CONTROL_RATE_HZ   # ticks per second the step limits are given for (Hz)
    strategy: str = "rtc"
    ensemble_decay: float = ACT_ENSEMBLE_DECAY
    rtc_freeze_margin_steps: int = 1
    rtc_blend_steps: int = 0
    lookahead: float = 0.0                    # s
    max_joint_step: float = 0.1               # rad per tick at control_rate_hz
    max_gripper_step: float = 0.1             # gripper unit per tick at control_rate_hz
    hold_when_exhausted: bool = True
    max_future_stamp_s: float = 0.5
    policy_timeout_s: float = 1.0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: got {self.strategy!r}, expected one of {list(STRATEGIES)}")
        positive = ("control_rate_hz", "max_joint_step", "max_gripper_step", "policy_timeout_s")
        non_negative = ("ensemble_decay", "rtc_freeze_margin_steps", "rtc_blend_steps", "lookahead",
                        "max_future_stamp_s")
        for name in positive + non_negative:
            value = getattr(self, name)
            low_ok = value > 0 if name in positive else value >= 0
            if not (math.isfinite(value) and low_ok):
                expected = "> 0" if name in positive else ">= 0"
                raise ValueError(f"{name}: got {value!r}, expected a finite value {expected}")

    @classmethod
    def from_params(cls, params: dict) -> "ExecutorSettings":
        """Settings from a parameter dict (a node's values, a YAML's ros__parameters); keys that are
        not executor settings (diagnostics_period, use_sim_time) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def per_tick_step(self, tick_s: float) -> np.ndarray:
        """Largest change per joint in one tick of tick_s seconds (same speed as max_*_step at
        control_rate_hz)."""
        step = np.full(DOF, float(self.max_joint_step))
        step[list(GRIPPER_INDICES)] = float(self.max_gripper_step)
        return step * float(tick_s) * float(self.control_rate_hz)


class ChunkExecutor:
    """Scheduler, step limit, policy timeout and reset of one arm pair's command stream.

    `add(chunk, now)` offers a chunk; `tick(now, measured)` returns the command for this tick or
    None (nothing to command). `on_event(kind, text)` hears "policy_timeout" and "policy_back"
    (the node logs them). Counters feed `status()` (diagnostics).
    """

    def __init__(self, settings: ExecutorSettings = ExecutorSettings(), tick_s: float | None = None,
                 on_event: Callable[[str, str], None] | None = None):
        # tick_s: seconds between tick() calls; the node ticks at control_rate_hz, the in-process
        # eval at every physics step (the step limit is scaled so the speed limit is the same).
        self.tick_s = 1.0 / settings.control_rate_hz if tick_s is None else float(tick_s)
        if not self.tick_s > 0:
            raise ValueError(f"tick_s: got {tick_s!r}, expected > 0 s")
        self.settings = settings
        self.scheduler = ChunkScheduler(settings.strategy, settings.ensemble_decay,
                                        settings.rtc_freeze_margin_steps, settings.rtc_blend_steps,
                                        settings.lookahead, max_future_stamp=settings.max_future_stamp_s)
        self.max_step = settings.per_tick_step(self.tick_s)
        self._on_event = on_event
        self.last_command: np.ndarray | None = None
        self.last_chunk_time: float | None = None   # `now` of the newest accepted chunk
        self.last_stats: ChunkStats | None = None
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.commands = 0
        self.starved_ticks = 0
        self.max_discontinuity = 0.0
        self.policy_silent = False
        self.policy_timeouts = 0
        self.resets = 0
        self.reset_at: float | None = None      # chunks observed before this are refused
        self.chunks_before_reset = 0               # chunks refused for that
        self.arm_executing: bool | None = None   # None: not known (no driver heard)
        self.episode_number: int | None = None
        self._episode_start: float | None = None  # newest /sim/episode_start used (s)

    # -- settings ----------------------------------------------------------------------------------
    def configure(self, **changes) -> ExecutorSettings:
        """Apply changed settings at once (validated first: a ValueError changes nothing).

        The plan is kept: a new strategy blends the next chunk into it; new step limits bound the
        next tick. control_rate_hz is the node's timer rate and cannot change here.
        """
        if "control_rate_hz" in changes and changes["control_rate_hz"] != self.settings.control_rate_hz:
            raise ValueError(f"control_rate_hz: got {changes['control_rate_hz']!r}, expected "
                             f"{self.settings.control_rate_hz!r} (fixed while running)")
        new = dataclasses.replace(self.settings, **changes)
        s = self.scheduler
        s.strategy, s.ensemble_decay, s.lookahead = new.strategy, float(new.ensemble_decay), float(new.lookahead)
        s.rtc_freeze_margin_steps, s.rtc_blend_steps = int(new.rtc_freeze_margin_steps), int(new.rtc_blend_steps)
        s.max_future_stamp = float(new.max_future_stamp_s)
        self.max_step = new.per_tick_step(self.tick_s)
        self.settings = new
        return new

    # -- events ------------------------------------------------------------------------------------
    def reset(self, now: float | None = None) -> None:
        """Drop the plan and the last command: the next chunk starts from the measured state.

        With `now`, chunks observed before it are refused ("before_reset"): a chunk still in flight
        from before a new episode or an e-stop belongs to the dropped plan, so nobody has to wait
        for it to arrive or to run out.
        """
        self.scheduler.reset()
        self.last_command = None
        # The policy owes a chunk within policy_timeout_s of the reset: a policy that died before
        # it must still be reported, plan or no plan.
        self.last_chunk_time = None if now is None else float(now)
        self.policy_silent = False
        self.reset_at = None if now is None else float(now)
        self.resets += 1

    def arm_enabled(self, enabled: bool, now: float | None = None) -> bool:
        """The driver's /arm/enabled; True when it stopped executing and the plan was dropped."""
        dropped = bool(self.arm_executing) and not enabled
        if dropped:
            self.reset(now)
        self.arm_executing = bool(enabled)
        return dropped

    def episode(self, number: int, now: float | None = None, start: float | None = None) -> bool:
        """The sim's episode counter; True when it changed and the plan (of the old scene) was dropped.
        The first number heard is the current episode, not a new one. start: the newest episode's
        first-state time (/sim/episode_start) when known; chunks observed from then on are the new
        scene's, so the boundary is exact instead of `now` (when the counter was heard)."""
        dropped = self.episode_number is not None and number != self.episode_number
        if dropped:
            # A start no newer than the last one used is the old episode's (its message not here yet).
            new_start = (start is not None and (self._episode_start is None or start > self._episode_start)
                         and (now is None or start <= now))
            self.reset(start if new_start else now)
        if start is not None:
            self._episode_start = start if self._episode_start is None else max(start, self._episode_start)
        self.episode_number = int(number)
        return dropped

    def reject(self, reason: str) -> None:
        """Count a chunk refused before scheduling (wrong mode, bad fields)."""
        self.rejected[reason] += 1

    def add(self, chunk: Chunk, now: float) -> ChunkStats:
        """Offer a chunk at time `now` (the chunk stamp's clock, seconds); returns its statistics."""
        if self.reset_at is not None and now < self.reset_at:   # the clock went back: a new timeline
            self.reset_at = None
        if self.reset_at is not None and chunk.stamp < self.reset_at:
            stats = ChunkStats(chunk.chunk_id, now - chunk.stamp, chunk.horizon, 0, 0.0,
                               self.settings.strategy, accepted=False, reason="before_reset")
        else:
            stats = self.scheduler.add(chunk, now)
        self.last_stats = stats
        if stats.reason == "before_reset":   # expected after every reset: counted, not a fault
            self.chunks_before_reset += 1
            return stats
        if not stats.accepted:
            self.rejected[stats.reason] += 1
            return stats
        self.accepted += 1
        self.last_chunk_time = now
        if self.policy_silent:
            self.policy_silent = False
            self._event("policy_back", f"chunks are back (chunk {chunk.chunk_id}): following the plan")
        self.max_discontinuity = max(self.max_discontinuity, stats.blend_discontinuity)
        return stats

    # -- ticks -------------------------------------------------------------------------------------
    def tick(self, now: float, measured: np.ndarray | None = None) -> np.ndarray | None:
        """The command for time `now`, or None: no plan, arm not executing, or plan exhausted
        without hold_when_exhausted. measured: the joint positions (layout order) the first command
        after a reset starts from."""
        if self.arm_executing is False:
            return None
        timed_out = self._policy_timed_out(now)   # checked without a plan too (after a reset)
        if not self.scheduler.has_plan:
            return None
        if timed_out:
            return None if self.last_command is None else self._command(self.last_command)
        if self.scheduler.exhausted(now):
            self.starved_ticks += 1
            if not self.settings.hold_when_exhausted:
                return None
        target = self.scheduler.target(now)
        if target is None:
            return None
        previous = self.last_command if self.last_command is not None else measured
        self.last_command = limit_step(previous, target, self.max_step)
        return self._command(self.last_command)

    def _command(self, command: np.ndarray) -> np.ndarray:
        self.commands += 1
        return command.copy()

    def _policy_timed_out(self, now: float) -> bool:
        """True (and reported once) when the newest chunk is older than policy_timeout_s."""
        if self.last_chunk_time is None:
            return False
        if now < self.last_chunk_time:   # the clock went back (sim restart): start counting again
            self.last_chunk_time = now
        age = now - self.last_chunk_time
        silent = age > self.settings.policy_timeout_s
        if silent and not self.policy_silent:
            self.policy_timeouts += 1
            self._event("policy_timeout", f"no chunk from the policy for {age:.2f} s (> policy_timeout_s "
                                          f"{self.settings.policy_timeout_s:.2f} s): holding the last command")
        self.policy_silent = silent
        return silent

    def _event(self, kind: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event(kind, text)

    # -- diagnostics -------------------------------------------------------------------------------
    def status(self, now: float) -> tuple[int, str, dict]:
        """(level 0 ok / 1 warn / 2 error, message, values) for /diagnostics."""
        values = {"strategy": self.settings.strategy, "chunks_accepted": self.accepted,
                  "commands": self.commands, "starved_ticks": self.starved_ticks,
                  "policy_timeouts": self.policy_timeouts, "resets": self.resets,
                  "chunks_before_reset": self.chunks_before_reset,
                  "arm_executing": "unknown" if self.arm_executing is None else self.arm_executing,
                  "max_blend_discontinuity_rad": self.max_discontinuity,
                  **{f"rejected_{k}": v for k, v in sorted(self.rejected.items())}}
        if self.last_stats is not None:
            values.update(last_chunk_id=self.last_stats.chunk_id, last_latency_s=self.last_stats.latency,
                          last_dropped_steps=self.last_stats.dropped_steps)
        if self.scheduler.latency_estimate is not None:
            values["latency_estimate_s"] = self.scheduler.latency_estimate
        level, message = 0, "ok"
        if not self.scheduler.has_plan:
            level, message = 0, "waiting for the first chunk"
        elif self.scheduler.exhausted(now):
            level, message = 1, "plan exhausted: holding the last target"
        if self.rejected:
            level, message = 1, f"{sum(self.rejected.values())} chunks rejected"
        if self.arm_executing is False:
            level, message = 0, "arm not executing commands: plan dropped, waiting"
        elif self.policy_silent:
            level, message = 2, (f"no chunk from the policy for {now - self.last_chunk_time:.1f} s: "
                                 "holding the last command")
        return level, message, values
