"""Camera tiling for dataset conversion: the policy's own tiler, with the converter's signature.

There is one tiler, motus_ros.policy.transforms.tile_cameras (the one the shipped checkpoint's
training data went through), so training frames and policy inputs cannot drift apart. This module
only adapts it to the converter's call `tiler(high, left_wrist, right_wrist, height=, width=)`.
"""
from __future__ import annotations

import numpy as np

from motus_ros.policy.transforms import TILE_HEIGHT, TILE_WIDTH  # noqa: F401 - the converter's defaults
from motus_ros.policy.transforms import tile_cameras as _tile_views


def tile_cameras(high: np.ndarray, left_wrist: np.ndarray, right_wrist: np.ndarray,
                 height: int = TILE_HEIGHT, width: int = TILE_WIDTH) -> np.ndarray:
    """Three HxWx3 uint8 RGB views -> one (height, width, 3) uint8 frame (policy.transforms layout)."""
    return _tile_views({"high": high, "left_wrist": left_wrist, "right_wrist": right_wrist},
                       height=height, width=width)


def resolve_tiler():
    """The tiler the converter uses: tile_cameras above (kept for convert.py's callers)."""
    return tile_cameras
