"""The arm interface every backend implements (piper, arx, sim, mock).

A backend knows its joint names, limits and gripper range before it connects, so the driver's
safety filter is configured before any command can reach hardware. Positions are absolute, in the
14-DoF layout of motus_ros.layout: radians for arm joints, the robot's gripper unit for grippers.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from motus_ros.layout import DOF, JOINT_NAMES
from motus_ros.params import ParameterError


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position limits (radians; gripper in its own unit) and maximum speed (unit/s)."""

    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    def __post_init__(self):
        for name in ("lower", "upper", "max_velocity"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (DOF,):
                raise ValueError(f"JointLimits.{name}: expected shape ({DOF},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        if np.any(self.lower >= self.upper):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(self.lower >= self.upper)]
            raise ValueError(f"JointLimits: lower must be < upper for {bad}")
        if np.any(self.max_velocity <= 0):
            raise ValueError("JointLimits.max_velocity: expected > 0 for every joint")

    def contains(self, positions: np.ndarray) -> bool:
        return bool(np.all(positions >= self.lower) and np.all(positions <= self.upper))

    def clip(self, positions: np.ndarray) -> np.ndarray:
        return np.clip(positions, self.lower, self.upper)


@dataclass
class ArmState:
    """One reading of both arms: positions (DOF,), optional velocities/efforts (DOF,)."""

    positions: np.ndarray
    velocities: np.ndarray | None = None
    efforts: np.ndarray | None = None
    enabled: bool = True
    faults: list[str] = field(default_factory=list)
    # Time of the reading on the backend's own clock (s), when it has one: the simulation's time,
    # so joint states share the cameras' time base. None: the driver stamps with its node clock.
    stamp: float | None = None
    # Seconds since the newest joint feedback from the device, when the backend can tell (Piper:
    # CAN frames). The driver stops publishing states and reports ERROR when it exceeds its
    # feedback_timeout; None: the backend always reads fresh values (mock, sim).
    feedback_age: float | None = None


@dataclass
class BackendDiagnostic:
    """A backend health item; the driver turns it into a DiagnosticStatus."""

    level: int  # 0 OK, 1 WARN, 2 ERROR (diagnostic_msgs/DiagnosticStatus levels)
    name: str
    message: str
    values: dict = field(default_factory=dict)


class ArmBackend(ABC):
    """connect / read / write / enable / disable / emergency_stop / close for two arms.

    A backend also describes its own options: PARAMS (motus_ros.params.Param specs, which the arm
    driver declares when this backend is chosen) and from_params(), which builds the backend from
    their values, so the driver needs no per-vendor code.
    """

    joint_names: tuple[str, ...] = JOINT_NAMES
    PARAMS: ClassVar[Sequence] = ()   # Param specs of this backend's options (read-only)

    @classmethod
    def check_params(cls, values: dict[str, Any]) -> None:
        """Refuse option combinations PARAMS alone cannot express (raise ParameterError)."""

    @classmethod
    def from_params(cls, values: dict[str, Any], calibration) -> "ArmBackend":
        """Build the backend from the driver's parameter values (its own PARAMS included)."""
        return cls(calibration=calibration)

    @property
    @abstractmethod
    def limits(self) -> JointLimits:
        """Limits known before connect()."""

    @abstractmethod
    def connect(self) -> None:
        """Open the device(s). Raises RuntimeError with a clear message on failure."""

    @abstractmethod
    def read(self) -> ArmState:
        """Latest joint state of both arms."""

    @abstractmethod
    def write(self, positions: np.ndarray) -> None:
        """Send absolute targets (DOF,). The caller has already applied the safety filter."""

    @abstractmethod
    def enable(self) -> None:
        """Power the motors / leave standby."""

    @abstractmethod
    def disable(self) -> None:
        """Release the motors (arms may fall if unsupported: callers hold position first)."""

    @abstractmethod
    def emergency_stop(self) -> None:
        """Stop all motion at once; further writes are ignored until enable()."""

    def release_emergency_stop(self) -> None:
        """Leave a hardware emergency stop so that enable() can power the arm again.

        Called only by an explicit operator action (the driver's release service), never as a
        side effect of enable(). Default: nothing to release (enable() alone resumes).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device(s); safe to call twice."""

    def diagnostics(self) -> list[BackendDiagnostic]:
        """Health items for /diagnostics (default: none)."""
        return []



def check_left_right(values: dict[str, Any], *keys: str) -> None:
    """Each of `keys` holds one entry per arm, [left, right] (CAN channels, interfaces)."""
    for key in keys:
        if len(values[key]) != 2:
            raise ParameterError(f"parameter '{key}': got {list(values[key])}, expected two entries "
                                 "[left, right]")
