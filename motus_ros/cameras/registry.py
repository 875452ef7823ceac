"""Camera backends by name: camera_node's `backend` parameter picks one.

Backends are imported only when chosen (a machine without pyrealsense2 or rosbags can still run
the others), and base.py knows none of them, so no module imports in a circle.
"""
from __future__ import annotations

from typing import Any

from motus_ros.cameras.base import CameraBackend, CameraError
from motus_ros.plugins import load_registered

# name -> "module:Class"
BACKENDS = {
    "realsense": "motus_ros.cameras.realsense:RealSenseBackend",
    "opencv": "motus_ros.cameras.opencv:OpenCVBackend",
    "replay": "motus_ros.cameras.replay:ReplayBackend",
    "sim": "motus_ros.cameras.sim:SimBackend",
}


def backend_class(kind: str) -> type[CameraBackend]:
    """The class registered under `kind`; CameraError names the choices or the missing module."""
    return load_registered(BACKENDS, kind, "camera backend", unknown=CameraError, broken=CameraError)


def make_backend(kind: str, **options: Any) -> CameraBackend:
    """Create backend `kind` from keyword options (see each backend's constructor)."""
    return backend_class(kind)(**options)
