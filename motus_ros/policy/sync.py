"""Observation synchronisation: three cameras + the joint state matched by stamp.

Pure Python (no ROS): the policy and world-model nodes feed it (stamp in seconds, payload) from
their callbacks and ask for an observation at the node clock's `now`, so use_sim_time works.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from motus_ros.layout import JOINT_NAMES, LayoutError, reorder

STATE = "joint_state"
# Stamps as float seconds since 1970 resolve ~0.2 us: a frame stamped at a requested time, read back
# through builtin_interfaces/Time, may land this far below it and still counts as reached.
STAMP_EPSILON_S = 1e-6


def state_vector(names: Sequence[str], positions: Sequence[float],
                 expected: Sequence[str] = JOINT_NAMES) -> np.ndarray:
    """JointState names/positions -> positions in `expected` order (float64).

    Other joints the robot reports are ignored. Raises LayoutError (a ValueError; reason
    "wrong_size", "wrong_names" or "non_finite") naming what is missing or not finite.
    """
    out = reorder(names, positions, expected, field="JointState.name", allow_extra=True)
    if not np.all(np.isfinite(out)):
        bad = [n for n, v in zip(expected, out) if not np.isfinite(v)]
        raise LayoutError("non_finite", f"JointState.position: non-finite values for {bad}")
    return out


@dataclass
class SyncResult:
    """Either an observation (ok) or the reason there is none, for logs and diagnostics."""

    ok: bool
    reason: str = ""
    stamp: float | None = None                 # observation time (s): the oldest matched stamp
    samples: dict[str, Any] = field(default_factory=dict)   # source -> payload
    stamps: dict[str, float] = field(default_factory=dict)  # source -> stamp (s)
    stale: bool = False                        # too old / missing (as opposed to out of sync)


class ObservationSync:
    """Keeps the last `history` samples per source and matches them by stamp.

    tolerance_s: the largest spread between matched stamps. max_age_s: the oldest observation
    (now - stamp) that may be acted on.
    """

    def __init__(self, cameras: Sequence[str], tolerance_s: float, max_age_s: float,
                 history: int = 15, state_history: int = 100):
        if tolerance_s < 0 or max_age_s <= 0:
            raise ValueError(f"tolerance_s {tolerance_s} must be >= 0 and max_age_s {max_age_s} > 0")
        self.cameras = tuple(cameras)
        self.sources = (*self.cameras, STATE)
        self.tolerance_s = float(tolerance_s)
        self.max_age_s = float(max_age_s)
        # Joint states come at the driver rate (50-200 Hz) and arrive before the frames rendered or
        # encoded from the same instant: keep ~1-2 s of them so a late frame still finds its match.
        self._buf: dict[str, deque] = {s: deque(maxlen=state_history if s == STATE else history)
                                       for s in self.sources}
        self.last_used: float | None = None

    def add(self, source: str, stamp: float, payload: Any) -> None:
        if source not in self._buf:
            raise KeyError(f"source: got {source!r}, expected one of {list(self.sources)}")
        buf = self._buf[source]
        if buf and stamp < buf[-1][0]:
            buf.clear()  # time went backwards (sim reset, bag loop): forget the old timeline
        buf.append((float(stamp), payload))

    def ages(self, now: float) -> dict[str, float | None]:
        """Seconds since each source's newest sample (None: never received)."""
        return {s: (now - b[-1][0]) if b else None for s, b in self._buf.items()}

    def assemble(self, now: float, at: float | None = None, require_new: bool = True) -> SyncResult:
        """Match one sample per source near `at` (default: the newest time all sources cover)."""
        missing = [s for s, b in self._buf.items() if not b]
        if missing:
            return SyncResult(False, "no data yet from " + ", ".join(_label(s) for s in missing),
                              stale=True)
        ref = min(b[-1][0] for b in self._buf.values()) if at is None else float(at)
        chosen = {s: min(b, key=lambda item: abs(item[0] - ref)) for s, b in self._buf.items()}
        stamps = {s: c[0] for s, c in chosen.items()}
        old = {s: now - t for s, t in stamps.items() if now - t > self.max_age_s}
        if old:
            text = ", ".join(f"{_label(s)} is {age:.3f} s old" for s, age in old.items())
            return SyncResult(False, f"stale observation: {text} (max_observation_age_s "
                              f"{self.max_age_s:g})", stamps=stamps, stale=True)
        spread = max(stamps.values()) - min(stamps.values())
        if spread > self.tolerance_s:
            text = ", ".join(f"{_label(s)} {t:.3f}" for s, t in stamps.items())
            return SyncResult(False, f"out of sync: stamps spread {spread:.3f} s > "
                              f"sync_tolerance_s {self.tolerance_s:g} ({text})", stamps=stamps)
        stamp = min(stamps.values())
        if require_new and self.last_used is not None and stamp <= self.last_used:
            return SyncResult(False, "no new observation since the last chunk", stamp=stamp,
                              stamps=stamps)
        return SyncResult(True, "", stamp, {s: c[1] for s, c in chosen.items()}, stamps)

    def cameras_at(self, at: float) -> SyncResult:
        """One frame per camera, the nearest to time `at` (s), for comparing a prediction with what
        happened; joint states are not needed and the age limit does not apply (`at` is in the
        past by design). Not ok while a camera has no frame at or after `at` yet (a nearer one may
        still come), or when a camera's nearest frame is more than tolerance_s away."""
        at = float(at)
        missing = [c for c in self.cameras if not self._buf[c]]
        if missing:
            return SyncResult(False, "no data yet from " + ", ".join(_label(c) for c in missing),
                              stale=True)
        behind = [c for c in self.cameras if self._buf[c][-1][0] < at - STAMP_EPSILON_S]
        if behind:
            return SyncResult(False, f"no frame at or after {at:.3f} s yet from "
                              + ", ".join(_label(c) for c in behind))
        chosen = {c: min(self._buf[c], key=lambda item: abs(item[0] - at)) for c in self.cameras}
        stamps = {c: item[0] for c, item in chosen.items()}
        far = {c: t for c, t in stamps.items() if abs(t - at) > self.tolerance_s}
        if far:
            text = ", ".join(f"{_label(c)} {t:.3f}" for c, t in far.items())
            return SyncResult(False, f"no frame within sync_tolerance_s {self.tolerance_s:g} of "
                              f"{at:.3f} s ({text})", stamps=stamps, stale=True)
        return SyncResult(True, "", min(stamps.values()), {c: item[1] for c, item in chosen.items()},
                          stamps)

    def mark_used(self, stamp: float) -> None:
        self.last_used = stamp

    def reset(self) -> None:
        for b in self._buf.values():
            b.clear()
        self.last_used = None


def _label(source: str) -> str:
    return "joint state" if source == STATE else f"camera {source}"
