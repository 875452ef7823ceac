"""`piper` backend (Agilex-Aloha-2): two Piper followers through piper-sdk's C_PiperInterface_V2.

One SDK interface per CAN channel (left, right). Units on the wire: joints 0.001 degree, gripper
0.001 mm (see piper_can.py); the layout uses radians and metres of gripper opening, mapped by the
robot's calibration file. Leader arms (teleoperation) are read from the same or other channels:
a leader in linkage-teaching mode sends joint/gripper *control* frames (0x155-0x157, 0x159) that
the SDK parses into GetArmJointCtrl()/GetArmGripperCtrl().
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import numpy as np

from motus_ros.hardware import piper_can as pc
from motus_ros.hardware.calibration import JointCalibration, load_calibration
from motus_ros.hardware.interface import ArmBackend, ArmState, BackendDiagnostic, JointLimits
from motus_ros.layout import ARM_JOINTS, DOF, SIDES

log = logging.getLogger(__name__)


def _default_sdk_factory(channel: str, bustype: str):
    """Open one C_PiperInterface_V2 on `channel` without the SDK's socketcan-only auto init."""
    try:
        from piper_sdk import C_PiperInterface_V2
    except ImportError as exc:  # pragma: no cover - piper-sdk is a dependency of the project
        raise RuntimeError("piper backend needs the 'piper-sdk' package (pip install piper-sdk)") from exc
    sdk = C_PiperInterface_V2(can_name=channel, judge_flag=False, can_auto_init=False)
    sdk.CreateCanBus(channel, bustype=bustype, judge_flag=False)
    sdk.ConnectPort(piper_init=False)
    return sdk


def _joint_list(js) -> list[int]:
    return [js.joint_1, js.joint_2, js.joint_3, js.joint_4, js.joint_5, js.joint_6]


class PiperArmBackend(ArmBackend):
    """Two Piper followers; `read_leader()` returns the leader arms' positions when configured."""

    def __init__(self, calibration: JointCalibration | str = "agilex_aloha2",
                 channels: Sequence[str] = ("can_left", "can_right"), bustype: str = "socketcan",
                 leader_channels: Sequence[str] = (), speed_percent: int = 100,
                 gripper_effort: float = 1.0, enable_timeout: float = 5.0,
                 feedback_timeout: float = 2.0,
                 sdk_factory: Callable[[str, str], object] | None = None):
        self.calibration = (load_calibration(calibration) if isinstance(calibration, str)
                            else calibration)
        if len(channels) != 2:
            raise ValueError(f"channels: got {list(channels)}, expected two CAN channels [left, right]")
        if leader_channels and len(leader_channels) != 2:
            raise ValueError(f"leader_channels: got {list(leader_channels)}, expected [] or [left, right]")
        if not 0 < speed_percent <= 100:
            raise ValueError(f"speed_percent: got {speed_percent}, expected 1..100")
        effort = int(round(gripper_effort * 1000))
        if not 0 <= effort <= pc.GRIPPER_EFFORT_MAX:
            raise ValueError(f"gripper_effort: got {gripper_effort} N*m, expected 0..5 N*m")
        self.channels = tuple(channels)
        self.leader_channels = tuple(leader_channels)
        self.bustype = bustype
        self.speed_percent = int(speed_percent)
        self.gripper_effort_mnm = effort
        self.enable_timeout = float(enable_timeout)
        self.feedback_timeout = float(feedback_timeout)
        self._factory = sdk_factory or _default_sdk_factory
        self._sdk: dict[str, object] = {}
        self._estopped = False
        self._enabled = False

    @property
    def limits(self) -> JointLimits:
        return self.calibration.limits

    # -- connection ------------------------------------------------------------------------------
    def _open(self, channel: str):
        if channel not in self._sdk:
            try:
                self._sdk[channel] = self._factory(channel, self.bustype)
            except Exception as exc:
                raise RuntimeError(f"piper: cannot open CAN channel '{channel}' ({self.bustype}): {exc}"
                                   ) from exc
        return self._sdk[channel]

    def connect(self) -> None:
        for ch in (*self.channels, *self.leader_channels):
            self._open(ch)
        deadline = time.monotonic() + self.feedback_timeout
        waiting = list(self.channels)
        while waiting and time.monotonic() < deadline:
            waiting = [ch for ch in waiting if self._sdk[ch].GetArmJointMsgs().time_stamp == 0]
            if waiting:
                time.sleep(0.005)
        if waiting:
            raise RuntimeError(f"piper: no joint feedback (0x2A5-0x2A7) on {waiting} within "
                               f"{self.feedback_timeout:.1f} s: check arm power and CAN wiring")

    def _sides(self):
        return zip(SIDES, (self._sdk[ch] for ch in self.channels))

    # -- state -----------------------------------------------------------------------------------
    def _raw(self, joints_mdeg: Sequence[list[int]], grippers_um: Sequence[int]) -> np.ndarray:
        raw = np.zeros(DOF)
        for s in range(2):
            base = s * (ARM_JOINTS + 1)
            raw[base:base + ARM_JOINTS] = [pc.mdeg_to_rad(v) for v in joints_mdeg[s]]
            raw[base + ARM_JOINTS] = pc.um_to_m(grippers_um[s])
        return self.calibration.raw_to_layout(raw)

    def read(self) -> ArmState:
        if not self._sdk:
            raise RuntimeError("piper: read() before connect()")
        joints, grippers, efforts, faults, enabled = [], [], np.zeros(DOF), [], True
        for s, (side, sdk) in enumerate(self._sides()):
            joints.append(_joint_list(sdk.GetArmJointMsgs().joint_state))
            g = sdk.GetArmGripperMsgs().gripper_state
            grippers.append(g.grippers_angle)
            efforts[s * (ARM_JOINTS + 1) + ARM_JOINTS] = g.grippers_effort / 1000.0
            st = sdk.GetArmStatus().arm_status
            faults += [f"{side}: {f}" for f in pc.status_faults(int(st.arm_status), int(st.err_code))]
            faults += [f"{side}: {f}" for f in pc.gripper_faults(int(g.status_code))]
            enabled = enabled and all(sdk.GetArmEnableStatus())
        return ArmState(self._raw(joints, grippers), efforts=efforts,
                        enabled=enabled and not self._estopped, faults=faults)

    def read_leader(self) -> np.ndarray | None:
        """Leader arms' positions (layout units) from their control frames; None if not configured."""
        if not self.leader_channels:
            return None
        joints, grippers = [], []
        for ch in self.leader_channels:
            sdk = self._sdk[ch]
            joints.append(_joint_list(sdk.GetArmJointCtrl().joint_ctrl))
            grippers.append(sdk.GetArmGripperCtrl().gripper_ctrl.grippers_angle)
        return self._raw(joints, grippers)

    # -- commands --------------------------------------------------------------------------------
    def write(self, positions: np.ndarray) -> None:
        """Per arm: 0x151 (CAN control, MOVE J, speed), 0x155-0x157 joints, 0x159 gripper."""
        if self._estopped:
            return
        raw = self.calibration.layout_to_raw(np.asarray(positions, dtype=np.float64))
        for s, (_, sdk) in enumerate(self._sides()):
            base = s * (ARM_JOINTS + 1)
            mdeg = [pc.rad_to_mdeg(q) for q in raw[base:base + ARM_JOINTS]]
            # The SDK's joint demo (demo/V2/piper_ctrl_joint.py) re-sends the mode frame with every
            # target: an arm that dropped to standby (e.g. after a fault reset) then resumes.
            sdk.MotionCtrl_2(pc.CTRL_MODE_CAN, pc.MOVE_J, self.speed_percent, pc.MIT_OFF)
            sdk.JointCtrl(*mdeg)
            sdk.GripperCtrl(max(0, pc.m_to_um(raw[base + ARM_JOINTS])), self.gripper_effort_mnm,
                            pc.GRIPPER_ENABLE, 0)

    def enable(self) -> None:
        """Enable sequence: (resume after e-stop), 0x471 enable all until every motor reports
        enabled (0x261-0x266 bit 6), then 0x151 CAN control / MOVE J and 0x159 gripper enable."""
        if self._estopped:
            log.warning("piper: leaving emergency stop with resume (0x150 = 0x02)")
            for _, sdk in self._sides():
                sdk.MotionCtrl_1(pc.ESTOP_RESUME, 0, 0)
        deadline = time.monotonic() + self.enable_timeout
        pending = list(self._sides())
        while pending:
            pending = [(side, sdk) for side, sdk in pending if not sdk.EnablePiper()]
            if not pending:
                break
            if time.monotonic() > deadline:
                detail = {side: sdk.GetArmEnableStatus() for side, sdk in pending}
                raise RuntimeError(f"piper: motors not enabled after {self.enable_timeout:.1f} s "
                                   f"(per-motor enable flags {detail})")
            time.sleep(0.01)
        state = self.read()
        for s, (_, sdk) in enumerate(self._sides()):
            sdk.MotionCtrl_2(pc.CTRL_MODE_CAN, pc.MOVE_J, self.speed_percent, pc.MIT_OFF)
            g = self.calibration.gripper.to_raw(state.positions[s * (ARM_JOINTS + 1) + ARM_JOINTS])
            sdk.GripperCtrl(max(0, pc.m_to_um(float(g))), self.gripper_effort_mnm, pc.GRIPPER_ENABLE, 0)
        self._estopped = False
        self._enabled = True

    def disable(self) -> None:
        """0x471 disable all motors and 0x159 gripper disable (the arm goes limp)."""
        for _, sdk in self._sides():
            sdk.DisableArm(pc.ALL_MOTORS, pc.MOTOR_DISABLE)
            sdk.GripperCtrl(0, 0, pc.GRIPPER_DISABLE, 0)
        self._enabled = False

    def emergency_stop(self) -> None:
        """0x150 quick emergency stop on both arms; writes are ignored until enable()."""
        self._estopped = True
        for _, sdk in self._sides():
            sdk.MotionCtrl_1(pc.ESTOP_STOP, 0, 0)

    def close(self) -> None:
        for ch, sdk in list(self._sdk.items()):
            try:
                sdk.DisconnectPort()
            except Exception as exc:  # noqa: BLE001 - closing must not raise twice
                log.warning("piper: closing %s: %s", ch, exc)
        self._sdk.clear()

    def diagnostics(self) -> list[BackendDiagnostic]:
        items = []
        for side, ch in zip(SIDES, self.channels):
            sdk = self._sdk.get(ch)
            if sdk is None:
                items.append(BackendDiagnostic(2, f"piper/{side}", f"{ch}: not connected"))
                continue
            st = sdk.GetArmStatus().arm_status
            g = sdk.GetArmGripperMsgs().gripper_state
            faults = pc.status_faults(int(st.arm_status), int(st.err_code)) + pc.gripper_faults(
                int(g.status_code))
            flowing = bool(sdk.isOk())
            level = 2 if (faults or not flowing) else (1 if self._estopped else 0)
            message = "; ".join(faults) or ("no CAN feedback" if not flowing else
                                            "emergency stop" if self._estopped else "ok")
            items.append(BackendDiagnostic(level, f"piper/{side}", message, {
                "channel": ch,
                "ctrl_mode": pc.CTRL_MODES.get(int(st.ctrl_mode), str(st.ctrl_mode)),
                "arm_status": pc.ARM_STATUS.get(int(st.arm_status), str(st.arm_status)),
                "err_code": f"0x{int(st.err_code):04X}",
                "motors_enabled": str(sdk.GetArmEnableStatus()),
                "joint_feedback_hz": float(sdk.GetArmJointMsgs().Hz),
            }))
        return items
