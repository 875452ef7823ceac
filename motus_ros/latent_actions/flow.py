"""Optical flow between consecutive video frames, its colour-wheel image, and the per-episode cache.

Flow convention (OpenCV's): flow[y, x] = (u, v) in pixels such that frame0[y, x] ~ frame1[y + v, x + u];
u points right, v points down. A pair k of an episode is (frames[k], frames[k+1]) of the converted
`frames` array, i.e. at the model's video rate (5 Hz: 0.2 s apart), its interval ending at control
step frame_steps[k+1].

The estimator is behind `FlowEstimator` (frames pair -> (H, W, 2) float32 pixels); `DISFlow` wraps
OpenCV's dense inverse search (Kroeger et al., ECCV 2016: cv2.DISOpticalFlow), which needs no
downloaded weights. The paper computes flow with DPFlow; a learned estimator can be registered in
ESTIMATORS and selected by FlowSettings.estimator without touching the rest.

The flow image uses the colour coding of the Middlebury flow benchmark (Baker et al., "A Database
and Evaluation Methodology for Optical Flow", IJCV 2011): hue = direction on a wheel of 55 steps
through red, yellow, green, cyan, blue, magenta (15, 6, 4, 11, 13, 6 steps), saturation = magnitude
(white = still). Two deliberate differences from the reference code, both so the image can be
decoded back to flow (rgb_to_flow): the magnitude is divided by a fixed `max_flow` (the same for
every episode, not each image's own maximum) and clipped to 1 instead of darkened, and the wheel
is interpolated exactly (no rounding of its 55 colours) and cyclically (no seam at +-pi).

Cache: `episodes/<name>/flow.npz` beside data.npz holds the flow of every pair at FlowSettings'
output size, with a key = SHA-256 of the frames, the settings and the estimator's version. A key
that does not match (frames rewritten, other settings, another OpenCV) is recomputed and
overwritten, never used.
"""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ._folders import config_from_dict

CACHE_FILE = "flow.npz"
CACHE_VERSION = 1              # bump when the cached arrays' meaning changes

# Middlebury colour wheel (Baker et al. 2011): steps between the six primaries, 55 in all.
WHEEL_STEPS = (15, 6, 4, 11, 13, 6)          # R->Y, Y->G, G->C, C->B, B->M, M->R
WHEEL_COLOURS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [1, 0, 0]],
                         dtype=np.float64)    # the primaries in wheel order, red repeated to close it
WHEEL_BOUNDS = np.concatenate([[0.0], np.cumsum(WHEEL_STEPS) / sum(WHEEL_STEPS)])   # (7,) fractions of a turn
STILL = 1e-6                   # a colour this close to white decodes to zero flow

DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}   # cv2.DISOPTICAL_FLOW_PRESET_*


class FlowError(ValueError):
    """Bad flow settings or inputs; the message names the field, the value seen and the value expected."""


@dataclass(frozen=True)
class FlowSettings:
    """How the flow of a frame pair is computed and stored (all of it goes into the cache key)."""

    estimator: str = "dis"          # a key of ESTIMATORS
    preset: str = "medium"          # the estimator's quality preset (DIS: ultrafast | fast | medium)
    estimate_height: int = 192      # pixels: frames are resized to this before estimation (half the tile)
    estimate_width: int = 160
    height: int = 96                # pixels: the stored flow, = the flow autoencoder's input size
    width: int = 80                 # (vectors rescaled to these pixels, see resize_flow)

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise FlowError(f"flow.estimator: got {self.estimator!r}, expected one of: {', '.join(ESTIMATORS)}")
        ESTIMATORS[self.estimator].check_preset(self.preset)
        for name in ("estimate_height", "estimate_width", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 8:
                raise FlowError(f"flow.{name}: got {value!r}, expected an integer >= 8 (pixels)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FlowSettings":
        return config_from_dict(cls, data, "flow settings", FlowError)


# Estimators -----------------------------------------------------------------------------------------
class FlowEstimator(ABC):
    """Dense optical flow of one frame pair. Subclasses declare everything that changes their output
    in version() and the settings they are built from, so the cache can tell results apart."""

    def __init__(self, settings: FlowSettings):
        self.settings = settings

    @classmethod
    def check_preset(cls, preset: str) -> None:
        """FlowError when `preset` means nothing to this estimator."""

    @abstractmethod
    def version(self) -> str:
        """The implementation's version (a library version, a weights hash)."""

    @abstractmethod
    def estimate(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow in pixels of the inputs, from two (H, W, 3) uint8 RGB frames."""

    def pair_flow(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        """(height, width, 2) float32: estimate at the settings' estimation size, stored at their output
        size, vectors in output pixels."""
        import cv2

        s = self.settings
        size = (s.estimate_width, s.estimate_height)
        a = cv2.resize(frame0, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(frame1, size, interpolation=cv2.INTER_AREA)
        return resize_flow(self.estimate(a, b), s.height, s.width)


class DISFlow(FlowEstimator):
    """OpenCV's DIS optical flow on grey images (no weights to download)."""

    @classmethod
    def check_preset(cls, preset: str) -> None:
        if preset not in DIS_PRESETS:
            raise FlowError(f"flow.preset: got {preset!r}, expected one of: {', '.join(DIS_PRESETS)} (DIS)")

    def __init__(self, settings: FlowSettings):
        import cv2

        super().__init__(settings)
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[settings.preset])

    def version(self) -> str:
        import cv2

        return f"opencv {cv2.__version__}"

    def estimate(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        import cv2

        for name, frame in (("frame0", frame0), ("frame1", frame1)):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise FlowError(f"{name}: got {frame.dtype} {frame.shape}, expected (H, W, 3) uint8 RGB")
        if frame0.shape != frame1.shape:
            raise FlowError(f"frame1: shape {frame1.shape}, expected frame0's {frame0.shape}")
        g0 = cv2.cvtColor(frame0, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(frame1, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(g0, g1, None).astype(np.float32)


ESTIMATORS: dict[str, type[FlowEstimator]] = {"dis": DISFlow}


def make_estimator(settings: FlowSettings) -> FlowEstimator:
    """The estimator FlowSettings.estimator names, built from the settings."""
    return ESTIMATORS[settings.estimator](settings)


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 2) flow -> (height, width, 2), vectors rescaled per axis so they stay in pixels of the
    new size (u x width / w, v x height / h)."""
    import cv2

    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow.astype(np.float32, copy=False)
    shrink = height < h or width < w
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    return out.astype(np.float32)


# Colour wheel ---------------------------------------------------------------------------------------
def flow_to_rgb(flow: np.ndarray, max_flow: float, as_float: bool = False) -> np.ndarray:
    """(..., 2) flow in pixels -> (..., 3) RGB colour-wheel image: uint8, or float32 in [0, 1] with
    `as_float` (no quantisation). Magnitudes of max_flow pixels and more get the fully saturated colour."""
    if not max_flow > 0:
        raise FlowError(f"max_flow: got {max_flow}, expected > 0 (pixels)")
    flow = np.asarray(flow, dtype=np.float64)
    if flow.shape[-1] != 2:
        raise FlowError(f"flow: shape {flow.shape}, expected (..., 2)")
    u, v = flow[..., 0], flow[..., 1]
    radius = np.clip(np.hypot(u, v) / max_flow, 0.0, 1.0)
    # The reference code's angle: atan2(-v, -u) / pi in (-1, 1]; one turn of the wheel from -1 to 1.
    turn = ((np.arctan2(-v, -u) / np.pi + 1.0) / 2.0) % 1.0
    seg = np.clip(np.searchsorted(WHEEL_BOUNDS, turn, side="right") - 1, 0, len(WHEEL_STEPS) - 1)
    frac = (turn - WHEEL_BOUNDS[seg]) / (WHEEL_BOUNDS[seg + 1] - WHEEL_BOUNDS[seg])
    wheel = WHEEL_COLOURS[seg] * (1 - frac[..., None]) + WHEEL_COLOURS[seg + 1] * frac[..., None]
    rgb = 1.0 - radius[..., None] * (1.0 - wheel)              # white at rest, the wheel colour at max_flow
    if as_float:
        return rgb.astype(np.float32)
    return np.round(rgb * 255.0).astype(np.uint8)


def rgb_to_flow(rgb: np.ndarray, max_flow: float) -> np.ndarray:
    """Inverse of flow_to_rgb: (..., 3) uint8 or float in [0, 1] -> (..., 2) float32 flow in pixels.
    Colours off the code (a decoder's output) are read by their chroma and hue, as HSV does."""
    if not max_flow > 0:
        raise FlowError(f"max_flow: got {max_flow}, expected > 0 (pixels)")
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise FlowError(f"rgb: shape {rgb.shape}, expected (..., 3)")
    x = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else np.clip(rgb.astype(np.float64), 0.0, 1.0)
    hi, lo = x.max(-1), x.min(-1)
    radius = hi - lo                                           # = the encoded magnitude / max_flow
    safe = np.where(radius > STILL, radius, 1.0)
    r, g, b = ((x[..., i] - lo) / safe for i in range(3))     # the wheel colour: min 0, max 1
    arg = x.argmax(-1)
    hue = np.where(arg == 0, (g - b) % 6.0, np.where(arg == 1, (b - r) + 2.0, (r - g) + 4.0))   # HSV sextant
    seg = np.clip(np.floor(hue).astype(np.int64), 0, len(WHEEL_STEPS) - 1)
    turn = WHEEL_BOUNDS[seg] + (hue - seg) * (WHEEL_BOUNDS[seg + 1] - WHEEL_BOUNDS[seg])
    angle = (2.0 * turn - 1.0) * np.pi                         # = atan2(-v, -u)
    mag = np.where(radius > STILL, radius, 0.0) * max_flow
    return np.stack([-mag * np.cos(angle), -mag * np.sin(angle)], -1).astype(np.float32)


def endpoint_error(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean Euclidean distance in pixels between two (..., 2) flows (over `mask` when given; nan if empty)."""
    err = np.hypot(*np.moveaxis(np.asarray(estimate, np.float64) - np.asarray(reference, np.float64), -1, 0))
    if mask is not None:
        err = err[mask]
    return float(err.mean()) if err.size else float("nan")


# Per-episode flow and its cache ---------------------------------------------------------------------
def cache_key(frames: np.ndarray, estimator: FlowEstimator) -> str:
    """SHA-256 of the frames (bytes, shape, dtype), the settings and the estimator's version."""
    h = hashlib.sha256()
    h.update(json.dumps({"cache_version": CACHE_VERSION, "settings": estimator.settings.to_dict(),
                         "estimator_version": estimator.version(), "shape": list(frames.shape),
                         "dtype": str(frames.dtype)}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(frames).data)
    return h.hexdigest()


def compute_flow(frames: np.ndarray, estimator: FlowEstimator) -> np.ndarray:
    """(F-1, height, width, 2) float32: the flow of every consecutive pair of (F, H, W, 3) uint8 frames."""
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise FlowError(f"frames: got {frames.dtype} {frames.shape}, expected (F, H, W, 3) uint8")
    s = estimator.settings
    out = np.zeros((max(0, len(frames) - 1), s.height, s.width, 2), dtype=np.float32)
    for k in range(len(out)):
        out[k] = estimator.pair_flow(frames[k], frames[k + 1])
    return out


def read_cached_flow(path: Path, key: str) -> np.ndarray | None:
    """The cached flow when `path` holds exactly `key`, else None (absent, stale or unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                return None
            return np.asarray(data["flow"], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return None


def write_cached_flow(path: Path, key: str, flow: np.ndarray, settings: FlowSettings) -> None:
    """Atomically (temp file + rename): a reader never sees half a cache."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, flow=flow.astype(np.float32), key=np.array(key),
                            settings=np.array(json.dumps(settings.to_dict())))
    os.replace(tmp, path)


def episode_flow(episode, estimator: FlowEstimator, use_cache: bool = True,
                 log: Callable[[str], None] | None = None) -> tuple[np.ndarray, bool]:
    """(flow (F-1, height, width, 2) float32 of a dataset.Episode's frame pairs, whether it came from
    the cache). The cache sits beside the episode's data.npz and is rewritten when its key differs."""
    frames = episode.frames
    key = cache_key(frames, estimator)
    path = Path(episode.path).parent / CACHE_FILE
    if use_cache:
        cached = read_cached_flow(path, key)
        if cached is not None:
            return cached, True
        if path.is_file() and log is not None:
            log(f"[flow] {episode.name}: cached flow is for other frames or settings; recomputing")
    flow = compute_flow(frames, estimator)
    if use_cache:
        write_cached_flow(path, key, flow, estimator.settings)
    return flow, False


__all__ = ["CACHE_FILE", "DISFlow", "ESTIMATORS", "FlowError", "FlowEstimator", "FlowSettings", "cache_key",
           "compute_flow", "endpoint_error", "episode_flow", "flow_to_rgb", "make_estimator", "resize_flow",
           "rgb_to_flow"]
