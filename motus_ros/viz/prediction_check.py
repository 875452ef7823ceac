"""Predicted vs what happened: keeps each world-model prediction until the camera frames for its
times arrive, then scores it beside the "nothing moves" baseline.

Pure module (numpy + OpenCV, no ROS); nodes/world_model_node.py feeds it and publishes the result.

- A prediction made from the observation at `stamp` (s) has frame k (k = 1..N) at
  stamp + k * period_s. It waits in a PredictionCheck until a real frame is found for every one of
  those times; one still missing max_wait_s after its last time (or whose clock went back: sim
  reset, bag loop) is dropped and counted.
- The real frame for time t is the three cameras nearest t tiled and resized by model_frame(): the
  same transforms the runtime applies to the model's input (MotusPolicy.model_image), so the
  predicted and the real frames share layout and size.
- Scores: PSNR (dB, 0..255) per frame with motus_ros.training.evaluation.psnr, for the prediction
  and for the copy baseline (the condition frame repeated); means leave out identical frames (PSNR
  inf), as the offline evaluation does. Running means cover the last `window` comparisons.
- comparison_image(): the real frames in a row above the predicted frames for the same times.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from motus_ros.policy.transforms import model_frame
from motus_ros.training.evaluation import finite_mean, psnr

COMPARISON_MAX_WIDTH = 1600   # pixels: the image is downsampled by an integer factor to fit
SEPARATOR_PX = 2              # grey line between the real and the predicted row
SEPARATOR_VALUE = 128

# Real frame for (time s, height, width): a tiled (height, width, 3) uint8 frame, or None while the
# cameras have not reached that time yet.
Lookup = Callable[[float, int, int], "np.ndarray | None"]


def comparison_image(real: np.ndarray, predicted: np.ndarray,
                     max_width: int = COMPARISON_MAX_WIDTH) -> np.ndarray:
    """(N, H, W, 3) real frames in a row above the (N, H, W, 3) predicted frames for the same
    times, a grey line between the rows, downsampled by an integer factor to fit max_width pixels.
    -> (2 * ceil(H / step) + SEPARATOR_PX, N * ceil(W / step), 3) uint8."""
    real, predicted = np.asarray(real), np.asarray(predicted)
    if real.shape != predicted.shape or real.ndim != 4 or real.shape[-1] != 3:
        raise ValueError(f"comparison frames: real {real.shape} and predicted {predicted.shape}, "
                         "expected equal (N, H, W, 3) shapes")
    n, _, w, _ = real.shape
    step = max(1, int(np.ceil(n * w / max_width)))

    def row(frames: np.ndarray) -> np.ndarray:
        return np.concatenate(list(frames[:, ::step, ::step]), axis=1)   # (h, N * w, 3)

    top, bottom = row(real), row(predicted)
    line = np.full((SEPARATOR_PX, top.shape[1], 3), SEPARATOR_VALUE, np.uint8)
    return np.ascontiguousarray(np.concatenate([top, line, bottom], axis=0))



@dataclass
class Comparison:
    """One prediction scored against the real frames for its times."""

    stamp: float                        # observation time the prediction started from (s)
    chunk_id: int
    times: np.ndarray                   # (N,) s, time of each frame
    predicted: np.ndarray               # (N, H, W, 3) uint8
    real: np.ndarray                    # (N, H, W, 3) uint8
    psnr_db: np.ndarray                 # (N,) predicted vs real
    copy_psnr_db: np.ndarray | None     # (N,) condition frame vs real; None: no condition frame

    @property
    def mean_psnr_db(self) -> float:
        return finite_mean(self.psnr_db)

    @property
    def mean_copy_psnr_db(self) -> float | None:
        return None if self.copy_psnr_db is None else finite_mean(self.copy_psnr_db)


@dataclass
class _Pending:
    stamp: float
    chunk_id: int
    times: np.ndarray
    frames: np.ndarray
    condition: np.ndarray | None
    real: list


class PredictionCheck:
    """Pending predictions, matched to real frames as they arrive, and running PSNR statistics.

    max_wait_s: how long after its last frame time a prediction may wait for real frames (s).
    window: comparisons in the running means. max_pending: predictions held at once; while full,
    new ones are not checked (counted), so that long horizons still complete.
    Not thread-safe: the caller serialises add/update/stats.
    """

    def __init__(self, max_wait_s: float = 2.0, window: int = 20, max_pending: int = 8):
        self.max_wait_s, self.max_pending = 0.0, 1
        self._history: deque = deque(maxlen=1)
        self.set_limits(max_wait_s, window, max_pending)
        self._pending: list[_Pending] = []
        self.last: Comparison | None = None
        self.compared = 0       # predictions scored
        self.dropped = 0        # predictions whose real frames did not all arrive in time
        self.unchecked = 0      # predictions not held because max_pending were waiting

    def set_limits(self, max_wait_s: float | None = None, window: int | None = None,
                   max_pending: int | None = None) -> None:
        """Change the limits (see the class docstring); the running means keep their newest entries."""
        if max_wait_s is not None:
            if not max_wait_s >= 0:
                raise ValueError(f"comparison_max_wait_s: got {max_wait_s}, expected >= 0 seconds")
            self.max_wait_s = float(max_wait_s)
        if window is not None:
            if int(window) < 1:
                raise ValueError(f"comparison_window: got {window}, expected >= 1 comparisons")
            self._history = deque(self._history, maxlen=int(window))
        if max_pending is not None:
            if int(max_pending) < 1:
                raise ValueError(f"comparison_max_pending: got {max_pending}, expected >= 1")
            self.max_pending = int(max_pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, stamp: float, frames: np.ndarray, period_s: float,
            condition: np.ndarray | None = None, chunk_id: int = 0) -> bool:
        """Hold a prediction: frames (N, H, W, 3) uint8 at stamp + k * period_s (k = 1..N, s);
        condition: the (H, W, 3) frame it started from (copy baseline). False when full."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[0] < 1 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"predicted frames: got shape {frames.shape} dtype {frames.dtype}, "
                             "expected (N>0, H, W, 3) uint8")
        if not period_s > 0:
            raise ValueError(f"period_s: got {period_s}, expected > 0 seconds")
        if condition is not None and np.shape(condition) != frames.shape[1:]:
            raise ValueError(f"condition frame: got shape {np.shape(condition)}, expected "
                             f"{frames.shape[1:]} (the predicted frames' size)")
        if len(self._pending) >= self.max_pending:
            self.unchecked += 1
            return False
        times = float(stamp) + period_s * np.arange(1, len(frames) + 1)
        self._pending.append(_Pending(float(stamp), int(chunk_id), times, frames, condition,
                                      [None] * len(frames)))
        return True

    def update(self, now: float, lookup: Lookup) -> list[Comparison]:
        """Ask lookup for the real frames still missing, score the predictions that are complete
        (oldest first) and drop the ones that waited too long; returns the new comparisons."""
        done, keep = [], []
        for p in self._pending:
            _, h, w, _ = p.frames.shape
            for i, t in enumerate(p.times):
                if p.real[i] is None:
                    frame = lookup(float(t), h, w)
                    if frame is not None:
                        if np.shape(frame) != (h, w, 3):
                            raise ValueError(f"real frame at {t:.3f} s: shape {np.shape(frame)}, "
                                             f"expected {(h, w, 3)}")
                        p.real[i] = frame
            if all(r is not None for r in p.real):
                done.append(self._score(p))
            elif now < p.stamp or now - p.times[-1] > self.max_wait_s:
                self.dropped += 1
            else:
                keep.append(p)
        self._pending = keep
        return done

    def clear(self) -> None:
        """Forget the waiting predictions (not counted as dropped), e.g. on deactivate."""
        self._pending = []

    def _score(self, p: _Pending) -> Comparison:
        real = np.stack(p.real)
        scores = np.array([psnr(f, r) for f, r in zip(p.frames, real)])
        copy = None if p.condition is None else np.array([psnr(p.condition, r) for r in real])
        result = Comparison(p.stamp, p.chunk_id, p.times, p.frames, real, scores, copy)
        self._history.append((scores, copy))
        self.last = result
        self.compared += 1
        return result

    def stats(self) -> dict[str, float | int | str]:
        """Counts and PSNR (dB) for /diagnostics: the last comparison, the running means over the
        window and, per frame k = 1..N of the horizon, the running mean as "k:dB" pairs."""
        values: dict[str, float | int | str] = {
            "compared_predictions": self.compared, "dropped_predictions": self.dropped,
            "unchecked_predictions": self.unchecked, "pending_predictions": len(self._pending)}
        if self.last is None:
            return values
        scores = [s for s, _ in self._history]
        values.update(psnr_last_db=self.last.mean_psnr_db,
                      psnr_mean_db=finite_mean(np.concatenate(scores)),
                      psnr_by_frame_db=_by_frame(scores), psnr_window=len(scores))
        copies = [c for _, c in self._history if c is not None]
        if copies:
            if self.last.copy_psnr_db is not None:
                values["copy_psnr_last_db"] = self.last.mean_copy_psnr_db
            values.update(copy_psnr_mean_db=finite_mean(np.concatenate(copies)),
                          copy_psnr_by_frame_db=_by_frame(copies))
        return values


def _by_frame(rows: list[np.ndarray]) -> str:
    """Finite mean per horizon index over rows of possibly different lengths: "1:31.2 2:29.8"."""
    longest = max(len(r) for r in rows)
    means = [finite_mean([r[k] for r in rows if len(r) > k]) for k in range(longest)]
    return " ".join(f"{k + 1}:{m:.1f}" for k, m in enumerate(means))


def psnr_summary(values: Mapping[str, object]) -> str:
    """One line from stats() values (or /diagnostics key values, strings) for titles; "" when
    nothing was compared yet."""
    def number(key):
        try:
            return float(values[key])
        except (KeyError, TypeError, ValueError):
            return None

    mean, last, copy = number("psnr_mean_db"), number("psnr_last_db"), number("copy_psnr_mean_db")
    if mean is None:
        return ""
    window = int(number("psnr_window") or 0)
    text = f"PSNR {mean:.1f} dB (mean of last {window})"
    if copy is not None:
        text += f" vs copy baseline {copy:.1f} dB"
    if last is not None:
        text += f", last {last:.1f} dB"
    compared, dropped = number("compared_predictions"), number("dropped_predictions")
    if compared is not None:
        text += f"; {int(compared)} compared, {int(dropped or 0)} dropped"
    return text
