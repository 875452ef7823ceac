"""`mock` backend: commands become state (optionally through a first-order lag), for graph tests.

Like ros2_control's mock_components/GenericSystem: no device, known limits, and a state that
follows the last written command, so the whole graph runs without hardware.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from motus_ros.hardware.calibration import JointCalibration, load_calibration
from motus_ros.hardware.interface import ArmBackend, ArmState, BackendDiagnostic, JointLimits
from motus_ros.layout import DOF
from motus_ros.params import Param


class MockArmBackend(ArmBackend):
    """State follows commands: x += (cmd - x) * (1 - exp(-dt / time_constant)); 0 s = instant."""

    PARAMS = (Param("mock_time_constant", 0.0, "mock: first-order lag of state behind command (s)",
                    min=0.0, max=10.0),)

    @classmethod
    def from_params(cls, values, calibration) -> "MockArmBackend":
        return cls(calibration=calibration, time_constant=values["mock_time_constant"])

    def __init__(self, calibration: JointCalibration | str = "mock", time_constant: float = 0.0,
                 initial_position: np.ndarray | None = None,
                 clock: Callable[[], float] = time.monotonic, record_writes: bool = False):
        self.calibration = (load_calibration(calibration) if isinstance(calibration, str)
                            else calibration)
        if time_constant < 0:
            raise ValueError(f"time_constant: got {time_constant}, expected >= 0 s")
        self.time_constant = float(time_constant)
        self._clock = clock
        lim = self.calibration.limits
        if initial_position is None:
            # The point of the limits closest to zero (zero itself lies on Piper's J2/J3 edges).
            initial_position = np.clip(np.zeros(DOF), lim.lower, lim.upper)
        self._position = np.asarray(initial_position, dtype=np.float64).copy()
        self._command = self._position.copy()
        self._t = self._clock()
        self._lock = threading.Lock()
        self.connected = False
        self.enabled = False
        self.estopped = False
        self.writes = 0
        self.ignored_writes = 0
        self.record_writes = record_writes
        self.write_log: list[tuple[float, np.ndarray]] = []
        self.faults: list[str] = []

    @property
    def limits(self) -> JointLimits:
        return self.calibration.limits

    def connect(self) -> None:
        self.connected = True
        self.enabled = True

    def _advance(self) -> None:
        now = self._clock()
        dt, self._t = max(0.0, now - self._t), now
        if self.time_constant <= 0 or self.estopped:
            if not self.estopped:
                self._position = self._command.copy()
            return
        a = 1.0 - np.exp(-dt / self.time_constant)
        self._position += (self._command - self._position) * a

    def read(self) -> ArmState:
        if not self.connected:
            raise RuntimeError("mock backend: read() before connect()")
        with self._lock:
            self._advance()
            return ArmState(self._position.copy(), enabled=self.enabled and not self.estopped,
                            faults=list(self.faults))

    def write(self, positions: np.ndarray) -> None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (DOF,):
            raise ValueError(f"mock write: expected ({DOF},) positions, got {positions.shape}")
        with self._lock:
            if not self.connected or not self.enabled or self.estopped:
                self.ignored_writes += 1
                return
            self._advance()
            self._command = positions.copy()
            self.writes += 1
            if self.record_writes:
                self.write_log.append((time.monotonic(), positions.copy()))

    def enable(self) -> None:
        with self._lock:
            self._advance()
            self.enabled = True
            self.estopped = False
            self._command = self._position.copy()

    def disable(self) -> None:
        with self._lock:
            self._advance()
            self.enabled = False
            self._command = self._position.copy()

    def emergency_stop(self) -> None:
        with self._lock:
            self._advance()
            self.estopped = True
            self._command = self._position.copy()

    def close(self) -> None:
        self.connected = False

    def diagnostics(self) -> list[BackendDiagnostic]:
        level = 2 if self.faults else (1 if self.estopped else 0)
        message = "; ".join(self.faults) or ("emergency stop" if self.estopped else "ok")
        return [BackendDiagnostic(level, "mock", message,
                                  {"writes": self.writes, "ignored_writes": self.ignored_writes,
                                   "time_constant_s": self.time_constant})]
