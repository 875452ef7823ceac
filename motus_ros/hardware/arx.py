"""`arx` backend (AC-One): two ARX X5 arms through the `arx5-interface` Python SDK (PyPI 0.1.5).

Every SDK call lives in ArxSdkAdapter, written against the package's own stub
(arx5_interface/python/arx5_interface.pyi): Arx5JointController(model, interface_name),
get_joint_state() -> JointState (pos()/vel()/torque() arrays, gripper_pos metres),
set_joint_cmd(JointState(pos, vel, torque, gripper_pos)), set_to_damping(), set_gain(Gain(...)),
get_controller_config() (default_kp/kd, default_gripper_kp/kd). With the SDK's default
controller config (background_send_recv = True, controller_dt = 0.002 s) the SDK runs its own
500 Hz CAN loop and interpolates between our targets, so this backend only sets targets.
The SDK is imported lazily: without it, connect() fails with a message naming the package.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from motus_ros.hardware.calibration import JointCalibration, load_calibration
from motus_ros.hardware.interface import (ArmBackend, ArmState, BackendDiagnostic, JointLimits,
                                          check_left_right)
from motus_ros.layout import ARM_JOINTS, DOF, SIDES
from motus_ros.params import Param

log = logging.getLogger(__name__)
ARX_PACKAGE = "arx5-interface"


def import_arx_sdk():
    """The arx5_interface module, or a RuntimeError naming the missing package."""
    try:
        import arx5_interface
    except ImportError as exc:
        raise RuntimeError(
            f"arx backend needs the '{ARX_PACKAGE}' package (pip install {ARX_PACKAGE}==0.1.5; "
            f"cp311 manylinux wheel) and a SocketCAN interface per arm: {exc}") from exc
    return arx5_interface


class ArxSdkAdapter:
    """The only place that calls arx5_interface; one controller per arm (CAN interface)."""

    def __init__(self, model: str = "X5", sdk=None):
        self.model = model
        self._sdk = sdk

    @property
    def sdk(self):
        if self._sdk is None:
            self._sdk = import_arx_sdk()
        return self._sdk

    def open(self, interface: str):
        return self.sdk.Arx5JointController(self.model, interface)

    @staticmethod
    def read(ctrl) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float]:
        """(pos[6] rad, vel[6] rad/s, torque[6] N*m, gripper_pos m, gripper_vel m/s, gripper_torque)."""
        js = ctrl.get_joint_state()
        return (np.asarray(js.pos(), dtype=np.float64), np.asarray(js.vel(), dtype=np.float64),
                np.asarray(js.torque(), dtype=np.float64), float(js.gripper_pos),
                float(js.gripper_vel), float(js.gripper_torque))

    def command(self, ctrl, pos: np.ndarray, gripper_pos: float) -> None:
        zeros = np.zeros(ARM_JOINTS)
        ctrl.set_joint_cmd(self.sdk.JointState(np.asarray(pos, dtype=np.float64), zeros, zeros,
                                               float(gripper_pos)))

    def hold_current(self, ctrl) -> None:
        """Target = current position, then the controller's default gains (motors hold)."""
        pos, _, _, grip, _, _ = self.read(ctrl)
        self.command(ctrl, pos, grip)
        cfg = ctrl.get_controller_config()
        ctrl.set_gain(self.sdk.Gain(np.asarray(cfg.default_kp), np.asarray(cfg.default_kd),
                                    float(cfg.default_gripper_kp), float(cfg.default_gripper_kd)))

    @staticmethod
    def damping(ctrl) -> None:
        ctrl.set_to_damping()

    @staticmethod
    def timestamp(ctrl) -> float:
        return float(ctrl.get_timestamp())


class ArxArmBackend(ArmBackend):
    """Two ARX X5 arms (left, right) on their CAN interfaces (AC-One: can0, can1)."""

    PARAMS = (
        Param("arx_interfaces", ["can0", "can1"], "arx: CAN interfaces [left, right]"),
        Param("arx_model", "X5", "arx: robot model for arx5-interface", choices=("X5", "L5")),
    )

    @classmethod
    def check_params(cls, values) -> None:
        check_left_right(values, "arx_interfaces")

    @classmethod
    def from_params(cls, values, calibration) -> "ArxArmBackend":
        return cls(calibration=calibration, interfaces=values["arx_interfaces"], model=values["arx_model"])

    def __init__(self, calibration: JointCalibration | str = "ac_one",
                 interfaces: Sequence[str] = ("can0", "can1"), model: str = "X5",
                 adapter: ArxSdkAdapter | None = None):
        self.calibration = (load_calibration(calibration) if isinstance(calibration, str)
                            else calibration)
        if len(interfaces) != 2:
            raise ValueError(f"interfaces: got {list(interfaces)}, expected two CAN interfaces [left, right]")
        self.interfaces = tuple(interfaces)
        self.adapter = adapter or ArxSdkAdapter(model)
        self._ctrl: list = []
        self._estopped = False
        self._enabled = False

    @property
    def limits(self) -> JointLimits:
        return self.calibration.limits

    def connect(self) -> None:
        if self._ctrl:
            return
        self.adapter.sdk   # a missing package raises here, with its own message
        for side, iface in zip(SIDES, self.interfaces):
            try:
                self._ctrl.append(self.adapter.open(iface))
            except Exception as exc:
                self._ctrl.clear()
                raise RuntimeError(f"arx: cannot open {side} arm on '{iface}': {exc}") from exc
        # Constructing Arx5JointController enables the motors and holds the current pose.
        self._enabled = True

    def _require(self) -> None:
        if not self._ctrl:
            raise RuntimeError("arx: not connected (call connect() first)")

    def read(self) -> ArmState:
        self._require()
        raw, vel, eff = np.zeros(DOF), np.zeros(DOF), np.zeros(DOF)
        for s, ctrl in enumerate(self._ctrl):
            pos, v, tq, gp, gv, gt = self.adapter.read(ctrl)
            base = s * (ARM_JOINTS + 1)
            raw[base:base + ARM_JOINTS], vel[base:base + ARM_JOINTS] = pos, v
            eff[base:base + ARM_JOINTS] = tq
            raw[base + ARM_JOINTS], vel[base + ARM_JOINTS], eff[base + ARM_JOINTS] = gp, gv, gt
        return ArmState(self.calibration.raw_to_layout(raw), velocities=vel, efforts=eff,
                        enabled=self._enabled and not self._estopped)

    def write(self, positions: np.ndarray) -> None:
        self._require()
        if self._estopped or not self._enabled:
            return
        raw = self.calibration.layout_to_raw(np.asarray(positions, dtype=np.float64))
        for s, ctrl in enumerate(self._ctrl):
            base = s * (ARM_JOINTS + 1)
            self.adapter.command(ctrl, raw[base:base + ARM_JOINTS], raw[base + ARM_JOINTS])

    def enable(self) -> None:
        self._require()
        for ctrl in self._ctrl:
            self.adapter.hold_current(ctrl)
        self._estopped = False
        self._enabled = True

    def disable(self) -> None:
        """Damping mode (kp = 0): the X5's safe passive state; the arm sinks slowly."""
        self._require()
        for ctrl in self._ctrl:
            self.adapter.damping(ctrl)
        self._enabled = False

    def emergency_stop(self) -> None:
        """ARX has no stop frame: switch both arms to damping and ignore writes until enable()."""
        self._estopped = True
        for ctrl in self._ctrl:
            self.adapter.damping(ctrl)

    def close(self) -> None:
        # Dropping the controllers lets the SDK shut down to passive (shutdown_to_passive = True).
        self._ctrl.clear()

    def diagnostics(self) -> list[BackendDiagnostic]:
        if not self._ctrl:
            return [BackendDiagnostic(2, "arx", "not connected", {"interfaces": ",".join(self.interfaces)})]
        level = 1 if (self._estopped or not self._enabled) else 0
        message = "emergency stop (damping)" if self._estopped else ("ok" if self._enabled else "disabled")
        values = {f"{side}_interface": iface for side, iface in zip(SIDES, self.interfaces)}
        for side, ctrl in zip(SIDES, self._ctrl):
            try:
                values[f"{side}_timestamp_s"] = self.adapter.timestamp(ctrl)
            except Exception as exc:  # noqa: BLE001 - diagnostics must not raise
                level, message = 2, f"{side}: {exc}"
        return [BackendDiagnostic(level, "arx", message, values)]
