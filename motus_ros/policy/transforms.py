"""Observation and action transforms of the Motus policy: small pure functions (numpy + OpenCV).

- tile_cameras: the three cameras -> one 384x320 (height x width) image: head camera full width on
  top, the two wrist cameras at half size side by side below, each letterboxed (aspect kept, black
  padding). Layout of the official release / DESIGN.md. The project's only tiler: dataset
  conversion reaches it through data/tiling.py, so training frames and policy inputs match.
- normalize / denormalize: per-dimension min/max to [0, 1] with stored statistics.
- validate_*: reject wrong shapes, NaN/inf and missing cameras with errors that name the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motus_ros.layout import CAMERAS, DOF

TILE_HEIGHT = 384   # tiled image, pixels (official configs/robotwin.yaml video_height)
TILE_WIDTH = 320    # pixels (video_width)
MIN_RANGE = 1e-8    # a statistics range below this is treated as a constant dimension


class ObservationError(ValueError):
    """An observation the policy cannot use; the message names the field, value seen and expected."""


# Images --------------------------------------------------------------------------------------------
def validate_image(name: str, image: Any) -> np.ndarray:
    """An HxWx3 uint8 RGB image, or ObservationError."""
    if not isinstance(image, np.ndarray):
        raise ObservationError(f"images['{name}']: got {type(image).__name__}, expected a numpy HxWx3 uint8 array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ObservationError(f"images['{name}']: shape {image.shape}, expected (H, W, 3) RGB")
    if image.dtype != np.uint8:
        raise ObservationError(f"images['{name}']: dtype {image.dtype}, expected uint8")
    return image


def validate_images(images: Any, field: str = "images") -> dict[str, np.ndarray]:
    if not isinstance(images, dict):
        raise ObservationError(f"{field}: got {type(images).__name__}, expected a dict with cameras {list(CAMERAS)}")
    missing = [c for c in CAMERAS if c not in images]
    if missing:
        raise ObservationError(f"{field}: missing cameras {missing}; got {sorted(images)}, expected {list(CAMERAS)}")
    return {c: validate_image(c if field == "images" else f"{field}.{c}", images[c]) for c in CAMERAS}


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize keeping the aspect ratio and centre on black: -> (height, width, 3) uint8."""
    import cv2

    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - nh) // 2, (width - nw) // 2
    out[top: top + nh, left: left + nw] = resized
    return out


def tile_cameras(images: dict[str, np.ndarray], height: int = TILE_HEIGHT, width: int = TILE_WIDTH) -> np.ndarray:
    """T-tiling: head camera (height/2 x width) on top, wrists (height/2 x width/2 each) below."""
    images = validate_images(images)
    top_h = height // 2
    half_w = width // 2
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[:top_h] = letterbox(images["high"], top_h, width)
    out[top_h:, :half_w] = letterbox(images["left_wrist"], height - top_h, half_w)
    out[top_h:, half_w:] = letterbox(images["right_wrist"], height - top_h, width - half_w)
    return out


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def model_frame(images: dict[str, np.ndarray], height: int, width: int) -> np.ndarray:
    """Camera dict -> the tiled (height, width, 3) uint8 frame the model sees and predicts: the
    cameras tiled at the release tile size, then resized to the model's video size."""
    return resize_image(tile_cameras(dict(images), TILE_HEIGHT, TILE_WIDTH), height, width)


def to_model_pixels(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW in [-1, 1]."""
    return (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def from_model_pixels(frames: np.ndarray) -> np.ndarray:
    """float [...,3,H,W] in [-1, 1] -> uint8 [...,H,W,3]."""
    x = np.clip((np.asarray(frames, dtype=np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    return np.moveaxis(x, -3, -1)


# Vectors -------------------------------------------------------------------------------------------
def validate_vector(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float array of exactly `shape`, or ObservationError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ObservationError(f"{name}: cannot be read as numbers ({exc}); expected shape {shape}") from exc
    if arr.shape != shape:
        raise ObservationError(f"{name}: shape {arr.shape}, expected {shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ObservationError(f"{name}: non-finite value {arr[idx]} at index {idx}; expected finite numbers")
    return arr


@dataclass(frozen=True)
class MinMax:
    """Per-dimension range used for normalization (units of the robot: radians, metres)."""

    min: np.ndarray
    max: np.ndarray

    def __post_init__(self):
        if self.min.shape != self.max.shape or self.min.ndim != 1:
            raise ValueError(f"min/max shapes {self.min.shape} and {self.max.shape}, expected equal 1-D")
        if not (np.isfinite(self.min).all() and np.isfinite(self.max).all()):
            raise ValueError("min/max contain non-finite values")
        if (self.max < self.min).any():
            i = int(np.argmax(self.max < self.min))
            raise ValueError(f"max[{i}]={self.max[i]} < min[{i}]={self.min[i]}")


@dataclass(frozen=True)
class NormStats:
    action: MinMax
    state: MinMax
    source: str = ""


def normalize(x: np.ndarray, stats: MinMax) -> np.ndarray:
    """(x - min) / (max - min) per last-axis dimension -> [0, 1] inside the range; constant dims -> 0."""
    x = np.asarray(x, dtype=np.float64)
    rng = stats.max - stats.min
    safe = np.where(rng < MIN_RANGE, 1.0, rng)
    return np.where(rng < MIN_RANGE, 0.0, (x - stats.min) / safe)


def denormalize(y: np.ndarray, stats: MinMax) -> np.ndarray:
    """Inverse of normalize: y * (max - min) + min (float64)."""
    y = np.asarray(y, dtype=np.float64)
    return y * (stats.max - stats.min) + stats.min


def _read_minmax(data: Any, where: str, dim: int) -> MinMax:
    if not isinstance(data, dict) or "min" not in data or "max" not in data:
        raise ValueError(f"{where}: expected an object with 'min' and 'max' lists of {dim} numbers")
    lo = validate_vector(f"{where}.min", data["min"], (dim,))
    hi = validate_vector(f"{where}.max", data["max"], (dim,))
    try:
        return MinMax(lo, hi)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_stats(path: str | Path, dim: int = DOF) -> NormStats:
    """Read {"action": {"min","max"}, "state": {"min","max"}, "source": str} from a JSON file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"normalization statistics '{p}' not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from exc
    return NormStats(action=_read_minmax(data.get("action"), f"{p.name}: action", dim),
                     state=_read_minmax(data.get("state"), f"{p.name}: state", dim),
                     source=str(data.get("source", "")))
