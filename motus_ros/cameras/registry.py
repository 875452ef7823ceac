"""Camera backends by name: camera_node's `backend` parameter picks one.

Backends are imported only when chosen (a machine without pyrealsense2 or rosbags can still run
the others), and base.py knows none of them, so no module imports in a circle.
"""
from __future__ import annotations

import importlib
from typing import Any

from motus_ros.cameras.base import CameraBackend, CameraError

# name -> "module:Class"
BACKENDS = {
    "realsense": "motus_ros.cameras.realsense:RealSenseBackend",
    "opencv": "motus_ros.cameras.opencv:OpenCVBackend",
    "replay": "motus_ros.cameras.replay:ReplayBackend",
    "sim": "motus_ros.cameras.sim:SimBackend",
}


def backend_class(kind: str) -> type[CameraBackend]:
    """The class registered under `kind`; CameraError names the choices or the missing module."""
    if kind not in BACKENDS:
        raise CameraError(f"camera backend: got {kind!r}, expected one of {list(BACKENDS)}")
    module_name, class_name = BACKENDS[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CameraError(f"camera backend '{kind}': cannot import {module_name}: {exc}") from exc
    return getattr(module, class_name)


def make_backend(kind: str, **options: Any) -> CameraBackend:
    """Create backend `kind` from keyword options (see each backend's constructor)."""
    return backend_class(kind)(**options)
