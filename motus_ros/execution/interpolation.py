"""Upsampling of the 30 Hz command stream to a driver's own rate (pure numpy).

The Piper controller accepts joint targets far faster than the policy's 30 Hz (this project's
Piper driver ticks at 200 Hz by default), and stepping it with 30 Hz staircases makes it jerk at
every command. The driver therefore ramps linearly from where it is
to each new command over one measured command period: a first-order hold that adds at most one
command period of delay and never overshoots a command.
"""
from __future__ import annotations

import numpy as np

INTERPOLATION_MODES = ("linear", "none")


class CommandInterpolator:
    """push(t, target) on every command; sample(t) at every driver tick (seconds, one clock)."""

    def __init__(self, mode: str = "linear", nominal_period: float = 1.0 / 30.0,
                 max_period: float = 0.2, smoothing: float = 0.2):
        if mode not in INTERPOLATION_MODES:
            raise ValueError(f"interpolation: got {mode!r}, expected one of {list(INTERPOLATION_MODES)}")
        if not nominal_period > 0 or not max_period >= nominal_period:
            raise ValueError(f"periods: got nominal {nominal_period}, max {max_period}; "
                             "expected 0 < nominal <= max (s)")
        self.mode = mode
        self.nominal_period = float(nominal_period)
        self.max_period = float(max_period)
        self.smoothing = float(smoothing)
        self.period = float(nominal_period)   # measured command period (EMA)
        self._start: np.ndarray | None = None
        self._goal: np.ndarray | None = None
        self._t_goal: float | None = None

    def reset(self, position: np.ndarray | None = None) -> None:
        """Drop the ramp; with a position, hold it until the next command."""
        self._start = None if position is None else np.asarray(position, dtype=np.float64).copy()
        self._goal = self._start
        self._t_goal = None

    @property
    def goal(self) -> np.ndarray | None:
        return None if self._goal is None else self._goal.copy()

    def push(self, t: float, target: np.ndarray) -> None:
        target = np.asarray(target, dtype=np.float64)
        if self._t_goal is not None:
            dt = t - self._t_goal
            if 0 < dt <= self.max_period:
                self.period = (1 - self.smoothing) * self.period + self.smoothing * dt
        current = self.sample(t) if self._goal is not None else target
        self._start = current
        self._goal = target.copy()
        self._t_goal = float(t)

    def sample(self, t: float) -> np.ndarray | None:
        """Interpolated target at time t (None before the first command or reset position)."""
        if self._goal is None:
            return None
        if self.mode == "none" or self._t_goal is None or self._start is None:
            return self._goal.copy()
        a = (t - self._t_goal) / max(self.period, 1e-9)
        a = min(max(a, 0.0), 1.0)
        return self._start + a * (self._goal - self._start)


def upsample(positions: np.ndarray, src_period: float, dst_period: float) -> np.ndarray:
    """Resample rows spaced src_period to rows spaced dst_period by linear interpolation."""
    positions = np.asarray(positions, dtype=np.float64)
    n = positions.shape[0]
    t_src = np.arange(n) * src_period
    t_dst = np.arange(0.0, t_src[-1] + 1e-12, dst_period)
    return np.stack([np.interp(t_dst, t_src, positions[:, j]) for j in range(positions.shape[1])], axis=1)
