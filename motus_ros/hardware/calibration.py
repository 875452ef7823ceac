"""Per-robot joint calibration: limits, gripper mapping and zero offsets from calibration/<robot>/joints.yaml.

File layout (radians for arm joints; the gripper in the robot's layout unit):

    robot: agilex_aloha2
    arm:                       # applies to both arms; `left:`/`right:` blocks may override
      lower: [6 values]
      upper: [6 values]
      max_velocity: [6 values] # unit/s
    gripper:
      lower: 0.0               # layout unit (metres of opening for Piper/ARX, 0..1 in sim)
      upper: 0.07
      max_velocity: 0.2
      raw_closed: 0.0          # backend unit at `lower` (linear map raw <-> layout)
      raw_open: 0.07           # backend unit at `upper`
    offsets: {left_joint1: 0.0, ...}   # layout = raw + offset (radians), optional
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motus_ros.hardware.interface import JointLimits
from motus_ros.layout import ARM_JOINTS, DOF, GRIPPER_INDICES, JOINT_NAMES, SIDES
from motus_ros.paths import calibration_dir, resolve


class CalibrationError(ValueError):
    """A calibration file that is missing or malformed; the message names file and field."""


@dataclass
class GripperMap:
    """Linear map between a backend's raw gripper unit and the layout's gripper unit."""

    raw_closed: float = 0.0
    raw_open: float = 1.0
    lower: float = 0.0
    upper: float = 1.0

    def to_layout(self, raw):
        return self.lower + (np.asarray(raw, dtype=np.float64) - self.raw_closed) * (
            (self.upper - self.lower) / (self.raw_open - self.raw_closed))

    def to_raw(self, value):
        return self.raw_closed + (np.asarray(value, dtype=np.float64) - self.lower) * (
            (self.raw_open - self.raw_closed) / (self.upper - self.lower))


@dataclass
class JointCalibration:
    """Limits, gripper mapping and offsets of one bimanual robot."""

    robot: str
    limits: JointLimits
    gripper: GripperMap = field(default_factory=GripperMap)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(DOF))
    source: str = ""

    def raw_to_layout(self, raw: np.ndarray) -> np.ndarray:
        """Backend reading (DOF,) -> layout values: offsets on joints, gripper map on grippers."""
        out = np.asarray(raw, dtype=np.float64) + self.offsets
        for g in GRIPPER_INDICES:
            out[g] = self.gripper.to_layout(raw[g])
        return out

    def layout_to_raw(self, values: np.ndarray) -> np.ndarray:
        """Layout targets (DOF,) -> backend units; inverse of raw_to_layout."""
        out = np.asarray(values, dtype=np.float64) - self.offsets
        for g in GRIPPER_INDICES:
            out[g] = self.gripper.to_raw(values[g])
        return out


def _vector(block: dict, key: str, n: int, where: str) -> np.ndarray:
    if key not in block:
        raise CalibrationError(f"{where}.{key}: missing")
    arr = np.asarray(block[key], dtype=np.float64).reshape(-1)
    if arr.shape[0] != n or not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}.{key}: got {block[key]!r}, expected {n} finite numbers")
    return arr


def calibration_from_dict(data: dict, source: str = "<dict>") -> JointCalibration:
    """Build a JointCalibration from the parsed YAML mapping (see module docstring)."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{source}: expected a mapping at top level")
    lower, upper, vmax = np.zeros(DOF), np.zeros(DOF), np.zeros(DOF)
    arm = data.get("arm", {})
    for s, side in enumerate(SIDES):
        block = {**arm, **data.get(side, {})}
        where = f"{source}: {side}" if side in data else f"{source}: arm"
        base = s * (ARM_JOINTS + 1)
        lower[base:base + ARM_JOINTS] = _vector(block, "lower", ARM_JOINTS, where)
        upper[base:base + ARM_JOINTS] = _vector(block, "upper", ARM_JOINTS, where)
        vmax[base:base + ARM_JOINTS] = _vector(block, "max_velocity", ARM_JOINTS, where)
    g = data.get("gripper")
    if not isinstance(g, dict):
        raise CalibrationError(f"{source}: gripper: missing (lower, upper, max_velocity)")
    try:
        gmap = GripperMap(float(g.get("raw_closed", g["lower"])), float(g.get("raw_open", g["upper"])),
                          float(g["lower"]), float(g["upper"]))
        gv = float(g["max_velocity"])
    except KeyError as exc:
        raise CalibrationError(f"{source}: gripper.{exc.args[0]}: missing") from None
    if gmap.raw_open == gmap.raw_closed:
        raise CalibrationError(f"{source}: gripper.raw_open must differ from gripper.raw_closed")
    for gi in GRIPPER_INDICES:
        lower[gi], upper[gi], vmax[gi] = gmap.lower, gmap.upper, gv
    offsets = np.zeros(DOF)
    for name, value in (data.get("offsets") or {}).items():
        if name not in JOINT_NAMES:
            raise CalibrationError(f"{source}: offsets.{name}: unknown joint, expected one of "
                                   f"{list(JOINT_NAMES)}")
        offsets[JOINT_NAMES.index(name)] = float(value)
    try:
        limits = JointLimits(lower, upper, vmax)
    except ValueError as exc:
        raise CalibrationError(f"{source}: {exc}") from None
    return JointCalibration(str(data.get("robot", "")), limits, gmap, offsets, source)


def calibration_path(robot_or_path: str) -> Path:
    """`calibration/<robot>/joints.yaml` for a robot name, else the given (relative) path."""
    if robot_or_path.endswith((".yaml", ".yml")):
        return resolve(robot_or_path)
    return calibration_dir() / robot_or_path / "joints.yaml"


def load_calibration(robot_or_path: str) -> JointCalibration:
    """Read a robot's joints.yaml (robot name or path); errors name the file and the field."""
    import yaml

    path = calibration_path(robot_or_path)
    if not path.is_file():
        raise CalibrationError(f"joint calibration file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f)
    return calibration_from_dict(data, str(path))
