"""The camera backend interface shared by realsense, opencv, replay and sim backends.

Backends are created by name through motus_ros/cameras/registry.py.

A backend opens a device (or file, or bag), hands out RGB uint8 frames with an optional capture
time, and closes. It never touches ROS: the camera node wraps it and publishes. Backends that
pace themselves from files (video files, bags) do not sleep: they say when a frame is due
(`CameraFrame.due`, time.monotonic() seconds) and the caller waits, so a stop request is never
stuck behind a sleep.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class CameraError(RuntimeError):
    """A device/file problem meant for people (what failed, which device, what to check)."""


class EndOfStream(CameraError):
    """A finite source (video file, bag) has no more frames and is not set to loop."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels for an image of width x height; distortion as in CameraInfo."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def scaled(self, width: int, height: int) -> "CameraIntrinsics":
        """The same camera at another resolution (pure scaling; a crop is not modelled)."""
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                                self.distortion_model, self.distortion)

    def camera_matrix(self) -> list[float]:
        """Row-major 3x3 K."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


@dataclass
class CameraFrame:
    """One RGB frame.

    image: HxWx3 uint8 RGB. stamp: capture time in seconds on the host clock (epoch) when the
    device knows it (hardware/global timestamps, recorded bag stamps), else None and the caller
    stamps it on receipt. due: time.monotonic() seconds at which a paced source should publish it
    (None = now). hardware_stamp: True when stamp came from the device clock.
    """

    image: np.ndarray
    stamp: float | None = None
    due: float | None = None
    hardware_stamp: bool = False
    info: dict = field(default_factory=dict)


def check_rgb(image: np.ndarray, source: str) -> np.ndarray:
    """Validate an HxWx3 uint8 frame; raise CameraError naming the source otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise CameraError(f"{source}: frame has shape {shape} dtype {dtype}, expected HxWx3 uint8")
    return image


class CameraBackend(ABC):
    """open / read / close for one camera; `intrinsics` when the device reports them."""

    #: short name used in messages and diagnostics ("realsense:123456", "opencv:/dev/video0")
    description: str = "camera"

    @abstractmethod
    def open(self) -> None:
        """Open the device; raise CameraError with a clear message on failure."""

    @abstractmethod
    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        """Next frame, or None when none arrived within timeout seconds.

        Raises CameraError when the device failed (unplugged, closed) and EndOfStream when a
        finite source ended; the caller then closes and retries open() (reconnect).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice or after a failed open()."""

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        """Intrinsics the device reports (RealSense factory calibration), else None."""
        return None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

