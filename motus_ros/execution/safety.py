"""Driver-side safety: command validation, joint/gripper limits, step limit, watchdog.

Pure numpy, no ROS. The arm driver node owns one SafetyFilter and one Watchdog; every command
passes `validate()` (names, sizes, finite values) and every tick passes `step()` (limits, the maximum
step per tick and, when set, the maximum change of that step per tick: an acceleration limit) before anything reaches a backend. A rejected command is counted by
reason, reported through the `on_reject` callback (the node logs it) and never forwarded.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from motus_ros.hardware.interface import JointLimits
from motus_ros.layout import DOF, JOINT_NAMES, LayoutError, reorder

# Rejection / intervention reasons (keys of SafetyFilter.counts).
WRONG_SIZE = "wrong_size"
WRONG_NAMES = "wrong_names"
NON_FINITE = "non_finite"
OUT_OF_LIMITS = "out_of_limits"      # rejected (limit_mode == "reject")
LIMIT_CLIPPED = "limit_clipped"      # clipped into the limits (limit_mode == "clip")
STEP_LIMITED = "step_limited"        # a tick's step was shortened to max_step
ACCEL_LIMITED = "accel_limited"      # a tick's step changed by more than max_step_change
LIMIT_MODES = ("clip", "reject")
# In clip mode a command beyond a limit by more than this fraction of the joint's range is garbage
# (e.g. q + 100 rad): rejected, not clipped.
FAR_OUTSIDE_FRACTION = 0.25


class CommandRejected(ValueError):
    """A command that must not reach the arm; `reason` is one of the reason constants."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def max_step_from_limits(limits: JointLimits, rate_hz: float, scale: float = 1.0) -> np.ndarray:
    """Largest allowed change per tick (unit per tick) from the limits' max velocity at rate_hz."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz: got {rate_hz}, expected > 0")
    return limits.max_velocity * float(scale) / float(rate_hz)


def max_step_change_from_limits(limits: JointLimits, rate_hz: float, scale: float,
                                accel_time: float) -> np.ndarray | None:
    """Largest change of the per-tick step (unit per tick^2) when the max velocity (times scale)
    is reached from rest in accel_time seconds; None when accel_time is 0 (no limit)."""
    if accel_time < 0:
        raise ValueError(f"accel_time: got {accel_time}, expected >= 0 s")
    if accel_time == 0:
        return None
    max_acceleration = limits.max_velocity * float(scale) / float(accel_time)   # unit/s^2
    return max_acceleration / float(rate_hz) ** 2


@dataclass
class SafetyReport:
    """What `step()` made of one tick's target (interventions are counted in SafetyFilter.counts)."""

    position: np.ndarray


class SafetyFilter:
    """Validates commands and turns targets into safe per-tick positions.

    `validate(names, positions)` returns the command in layout order or raises CommandRejected;
    `step(target)` clamps the target into the limits (or rejects it, limit_mode="reject") and
    moves at most `max_step` per joint from the last output; with `max_step_change`, the step
    itself changes by at most that much per tick (an acceleration limit that still stops on the
    target: it brakes in time instead of overshooting). `hold()` returns the last output.
    """

    def __init__(self, limits: JointLimits, max_step: np.ndarray, limit_mode: str = "clip",
                 joint_names: Sequence[str] = JOINT_NAMES,
                 on_reject: Callable[[str, str], None] | None = None,
                 max_step_change: np.ndarray | None = None):
        if limit_mode not in LIMIT_MODES:
            raise ValueError(f"limit_mode: got {limit_mode!r}, expected one of {list(LIMIT_MODES)}")
        max_step = np.asarray(max_step, dtype=np.float64)
        if max_step.shape != (DOF,) or not np.all(np.isfinite(max_step)) or np.any(max_step <= 0):
            raise ValueError(f"max_step: expected {DOF} finite values > 0, got {max_step!r}")
        if max_step_change is not None:
            max_step_change = np.asarray(max_step_change, dtype=np.float64)
            if (max_step_change.shape != (DOF,) or not np.all(np.isfinite(max_step_change))
                    or np.any(max_step_change <= 0)):
                raise ValueError(f"max_step_change: expected {DOF} finite values > 0, "
                                 f"got {max_step_change!r}")
        self.limits = limits
        self.max_step = max_step
        self.max_step_change = max_step_change
        self._last_step = np.zeros(DOF)
        self.limit_mode = limit_mode
        self.joint_names = tuple(joint_names)
        self._on_reject = on_reject
        self.counts: Counter[str] = Counter()
        self.accepted = 0
        self._last: np.ndarray | None = None

    # -- validation of incoming commands ---------------------------------------------------------
    def _reject(self, reason: str, message: str) -> CommandRejected:
        self.counts[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason, message)
        return CommandRejected(reason, message)

    def validate(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Command in layout order (DOF,); names may be empty (layout order) or any permutation."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1)
        if positions.shape[0] != DOF:
            raise self._reject(WRONG_SIZE, f"command positions: got {positions.shape[0]} values, "
                                           f"expected {DOF}")
        try:
            positions = reorder(names, positions, self.joint_names, field="command names")
        except LayoutError as exc:   # exc.reason is WRONG_SIZE or WRONG_NAMES
            raise self._reject(exc.reason, str(exc)) from exc
        if not np.all(np.isfinite(positions)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(positions))]
            raise self._reject(NON_FINITE, f"command positions: non-finite values for {bad}")
        if not self.limits.contains(positions):
            span = self.limits.upper - self.limits.lower
            excess = np.maximum(self.limits.lower - positions, positions - self.limits.upper)
            if self.limit_mode == "reject" or np.any(excess > FAR_OUTSIDE_FRACTION * span):
                # Far outside (garbage, not a target at the edge) is rejected in clip mode too.
                raise self._reject(OUT_OF_LIMITS, "command positions: " + self._limit_text(positions))
            # Clipped here, before interpolation: a ramp toward an out-of-limit target would
            # otherwise drive the joint into its limit at full speed for a command period.
            self.counts[LIMIT_CLIPPED] += 1
            positions = self.limits.clip(positions)
        self.accepted += 1
        return positions

    def _limit_text(self, positions: np.ndarray) -> str:
        out = np.flatnonzero((positions < self.limits.lower) | (positions > self.limits.upper))
        return ", ".join(f"{self.joint_names[i]}={positions[i]:.4f} outside "
                         f"[{self.limits.lower[i]:.4f}, {self.limits.upper[i]:.4f}]" for i in out)

    # -- per-tick shaping ---------------------------------------------------------------------
    def reset(self, position: np.ndarray) -> None:
        """Start (or restart) from a measured position: the next step moves from here."""
        position = np.asarray(position, dtype=np.float64)
        if position.shape != (DOF,) or not np.all(np.isfinite(position)):
            raise ValueError(f"reset position: expected {DOF} finite values, got {position!r}")
        self._last = position.copy()
        self._last_step = np.zeros(DOF)   # a (re)start is from rest

    @property
    def last(self) -> np.ndarray | None:
        """The last position handed to the backend (None before reset())."""
        return None if self._last is None else self._last.copy()

    def hold(self) -> np.ndarray:
        """The last safe position (what the watchdog and emergency stop command)."""
        if self._last is None:
            raise RuntimeError("SafetyFilter.hold(): no position yet; call reset() with the arm state")
        return self._last.copy()

    def stopping_point(self) -> np.ndarray:
        """Where the joints come to rest from the current step under the acceleration limit
        (the last output without one): the position to hold when commands stop."""
        last = self.hold()
        if self.max_step_change is None:
            return last
        a, s = self.max_step_change, np.abs(self._last_step)
        # Braking covers (s - a) + (s - 2a) + ... ~= s (s - a) / (2a) after the current step.
        distance = np.maximum(s * (s - a), 0.0) / (2.0 * a)
        return self.limits.clip(last + np.sign(self._last_step) * distance)

    def step(self, target: np.ndarray) -> SafetyReport:
        """Clamp target into the limits, then move at most max_step from the last output."""
        if self._last is None:
            raise RuntimeError("SafetyFilter.step(): no position yet; call reset() with the arm state")
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (DOF,) or not np.all(np.isfinite(target)):
            # Targets come from validate() or an interpolator over validated commands; anything
            # else is a programming error and must never move the arm.
            self.counts[NON_FINITE if target.shape == (DOF,) else WRONG_SIZE] += 1
            return SafetyReport(self._last.copy())
        clipped_target = self.limits.clip(target)
        if np.any(clipped_target != target):
            self.counts[LIMIT_CLIPPED] += 1
        delta = clipped_target - self._last
        limited = np.clip(delta, -self.max_step, self.max_step)
        if np.any(limited != delta):
            self.counts[STEP_LIMITED] += 1
        if self.max_step_change is not None:
            limited = self._limit_step_change(delta, limited)
        # Only the target is clipped, not the output: when the last output lies outside the limits
        # (the arm started there), the output moves toward the clipped target by at most max_step
        # per tick instead of jumping into the allowed range.
        out = self._last + limited
        self._last = out
        self._last_step = limited
        return SafetyReport(out.copy())

    def _limit_step_change(self, delta: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Bound the change of the per-tick step (acceleration) while still stopping on target.

        The wanted step is also capped by the braking step: with d the remaining distance and a
        the step change per tick, the joint can still stop at the target, so a far target is
        approached without overshoot and a chattering one is followed slowly.
        """
        a = self.max_step_change
        # Largest step s from which stopping within d is possible: braking covers
        # s + (s - a) + ... = s (s + a) / (2a) <= d  ->  s = (sqrt(a^2 + 8 a d) - a) / 2.
        braking = 0.5 * (np.sqrt(a * a + 8.0 * a * np.abs(delta)) - a)
        wanted = np.sign(step) * np.minimum(np.abs(step), np.maximum(braking, a))
        wanted = np.where(np.abs(delta) <= a, delta, wanted)  # close enough: land exactly
        out = np.clip(wanted, self._last_step - a, self._last_step + a)
        if np.any(np.abs(out - wanted) > 1e-12):
            self.counts[ACCEL_LIMITED] += 1
        return out

    def summary(self) -> dict[str, int]:
        """Counters for diagnostics: accepted commands and each rejection/intervention reason."""
        values = {"accepted": self.accepted}
        for reason in (WRONG_SIZE, WRONG_NAMES, NON_FINITE, OUT_OF_LIMITS, LIMIT_CLIPPED, STEP_LIMITED,
                       ACCEL_LIMITED):
            values[reason] = int(self.counts.get(reason, 0))
        return values


class Watchdog:
    """Trips when the newest command is older than `timeout` seconds (on the caller's clock)."""

    def __init__(self, timeout: float):
        if not timeout > 0:
            raise ValueError(f"watchdog timeout: got {timeout}, expected > 0 s")
        self.timeout = float(timeout)
        self._last_feed: float | None = None
        self.tripped = False
        self.trips = 0

    def feed(self, now: float) -> None:
        """A valid command arrived at `now` (seconds)."""
        self._last_feed = float(now)
        self.tripped = False

    def clear(self) -> None:
        """Forget the last command (after enable/disable/emergency stop)."""
        self._last_feed = None
        self.tripped = False

    def age(self, now: float) -> float | None:
        return None if self._last_feed is None else float(now) - self._last_feed

    def check(self, now: float) -> bool:
        """True when commands are stale; counts a trip on the transition fresh -> stale."""
        if self._last_feed is None:
            return False
        stale = float(now) - self._last_feed > self.timeout
        if stale and not self.tripped:
            self.trips += 1
        self.tripped = stale
        return stale

