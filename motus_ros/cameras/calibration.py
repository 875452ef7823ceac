"""Camera intrinsics files: calibration/<robot>/<camera>.yaml in the ROS camera_info YAML format.

The format is the one camera_calibration / camera_calibration_parsers write (image_width,
image_height, camera_name, camera_matrix, distortion_model, distortion_coefficients, ...), so a
file produced by `ros2 run camera_calibration cameracalibrator` can replace a nominal one as is.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from motus_ros.cameras.base import CameraError, CameraIntrinsics
from motus_ros.paths import calibration_dir


def calibration_path(robot: str, camera: str) -> Path:
    return calibration_dir() / robot / f"{camera}.yaml"


def _matrix(doc: dict, key: str, rows: int, cols: int, path: Path) -> list[float]:
    entry = doc.get(key)
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or len(data) != rows * cols:
        raise CameraError(f"{path}: '{key}.data' must be a list of {rows * cols} numbers, got {data!r}")
    return [float(v) for v in data]


def load_intrinsics(path: str | Path) -> CameraIntrinsics:
    """Parse a camera_info YAML file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise CameraError(f"calibration file {path} not found")
    doc = yaml.safe_load(path.read_text()) or {}
    for key in ("image_width", "image_height"):
        if not isinstance(doc.get(key), int) or doc[key] <= 0:
            raise CameraError(f"{path}: '{key}' must be a positive integer, got {doc.get(key)!r}")
    k = _matrix(doc, "camera_matrix", 3, 3, path)
    dist = doc.get("distortion_coefficients", {}).get("data", [0.0] * 5)
    return CameraIntrinsics(
        width=doc["image_width"], height=doc["image_height"], fx=k[0], fy=k[4], cx=k[2], cy=k[5],
        distortion_model=str(doc.get("distortion_model", "plumb_bob")),
        distortion=tuple(float(v) for v in dist))


def resolve_intrinsics(robot: str, camera: str, width: int, height: int,
                       device: CameraIntrinsics | None = None,
                       path: str | Path | None = None) -> tuple[CameraIntrinsics | None, str]:
    """Intrinsics for an image of width x height and where they came from.

    Order: an explicit/`calibration/<robot>/<camera>.yaml` file (scaled if the resolution
    differs), else the device's own (RealSense factory) intrinsics, else None.
    """
    file = Path(path) if path else calibration_path(robot, camera)
    if file.is_file():
        intr = load_intrinsics(file)
        if (intr.width, intr.height) != (width, height):
            return intr.scaled(width, height), f"{file} (scaled from {intr.width}x{intr.height})"
        return intr, str(file)
    if path:
        raise CameraError(f"calibration file {file} not found")
    if device is not None:
        if (device.width, device.height) != (width, height):
            device = device.scaled(width, height)
        return device, "device"
    return None, "none"
