"""The three-camera tiling the Motus video expert sees (arXiv 2512.13030; DESIGN.md).

convert uses the policy's own tiling (motus_ros.policy.transforms.tile_cameras) when it is
importable, so training frames and policy inputs match; `tile_cameras` below is a fallback with
the same layout: the head camera letterboxed into the top half (full width), the two wrist
cameras letterboxed side by side into the bottom half, aspect kept, black padding; 384 high x
320 wide in the paper.
"""
from __future__ import annotations

import cv2
import numpy as np

TILE_HEIGHT = 384  # pixels, paper layout
TILE_WIDTH = 320


def _letterbox(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to fit (height, width) keeping the aspect ratio; centre on black."""
    h, w = img.shape[:2]
    scale = min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


def tile_cameras(high: np.ndarray, left_wrist: np.ndarray, right_wrist: np.ndarray,
                 height: int = TILE_HEIGHT, width: int = TILE_WIDTH) -> np.ndarray:
    """Three HxWx3 uint8 RGB views -> one (height, width, 3) uint8 tiled frame."""
    for name, img in (("high", high), ("left_wrist", left_wrist), ("right_wrist", right_wrist)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"camera {name}: got {img.shape} {img.dtype}, expected HxWx3 uint8")
    top, half = height // 2, width // 2
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[:top] = _letterbox(high, top, width)
    out[top:, :half] = _letterbox(left_wrist, height - top, half)
    out[top:, half:] = _letterbox(right_wrist, height - top, width - half)
    return out


def resolve_tiler():
    """f(high, left_wrist, right_wrist, height=, width=) -> (height, width, 3) uint8: the
    policy's tiling when importable (it takes a dict of views), else tile_cameras."""
    try:
        from motus_ros.policy import transforms
        policy_tiler = transforms.tile_cameras
    except (ImportError, AttributeError):
        return tile_cameras

    def tile(high, left_wrist, right_wrist, height=TILE_HEIGHT, width=TILE_WIDTH):
        return policy_tiler({"high": high, "left_wrist": left_wrist, "right_wrist": right_wrist},
                            height=height, width=width)
    return tile
