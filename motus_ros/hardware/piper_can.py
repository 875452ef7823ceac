"""Piper CAN protocol facts as small pure functions: ids, units, frame layouts, status codes.

Everything here is read from piper-sdk 0.6.2 (the installed package), cited per item:
- ids: piper_sdk/piper_msgs/msg_v2/can_id.py (CanIDPiper);
- layouts: piper_sdk/protocol/protocol_v2/piper_protocol_v2.py (EncodeMessage/DecodeMessage);
  multi-byte fields are big-endian (piper_protocol_base.py: ConvertBytesToInt(byteorder='big'),
  ConvertToList_32bit packs '>i');
- units: joint angles in 0.001 degree, gripper stroke in 0.001 mm, gripper effort in
  0.001 N*m (C_PiperInterface_V2.JointCtrl / GripperCtrl / GetArmGripperMsgs docstrings);
- status codes: piper_msgs/msg_v2/feedback/arm_feedback_status.py, arm_feedback_low_spd.py;
- CAN bus: hardware_port/can_encapsulation_v0_4_0.py (C_STD_CAN), can_activate.sh (bitrate).

The backend talks to the arm through the SDK; this module exists so that conversions are tested
on their own and so that tests (and the fake arm) can build and check the exact bytes.
"""
from __future__ import annotations

import math
import struct
from typing import Sequence

# -- CAN ids (can_id.py) ------------------------------------------------------------------------
ARM_STATUS_FEEDBACK = 0x2A1
JOINT_FEEDBACK_IDS = (0x2A5, 0x2A6, 0x2A7)   # J1&J2, J3&J4, J5&J6
GRIPPER_FEEDBACK = 0x2A8
LOW_SPD_FEEDBACK_IDS = tuple(range(0x261, 0x267))  # motor 1..6 driver info (enable bit)
MOTION_CTRL_1 = 0x150          # emergency stop / resume, track and teach control
MOTION_CTRL_2 = 0x151          # control mode, move mode, speed percent
JOINT_CTRL_IDS = (0x155, 0x156, 0x157)       # J1&J2, J3&J4, J5&J6 targets
GRIPPER_CTRL = 0x159
MOTOR_ENABLE_DISABLE = 0x471

# Control frames: what a leader arm in linkage teaching mode sends, and what this driver sends.
# The SDK parses them into GetArmModeCtrl() (0x151), GetArmJointCtrl() (0x155-0x157) and
# GetArmGripperCtrl() (0x159), documented as "sent by the main arm" (__UpdateArmJointCtrl).
CTRL_FRAME_IDS = (MOTION_CTRL_2, *JOINT_CTRL_IDS, GRIPPER_CTRL)

# -- field values -------------------------------------------------------------------------------
# 0x150 byte 0 (MotionCtrl_1 / EmergencyStop docstrings): 0x00 invalid, 0x01 "quick emergency
# stop", 0x02 "resume". ResetPiper() sends the same 0x02 and documents it: "The robot will
# immediately lose power and fall down, clearing all errors and internal flags."
ESTOP_NONE, ESTOP_STOP, ESTOP_RESUME = 0x00, 0x01, 0x02
CTRL_MODE_STANDBY, CTRL_MODE_CAN = 0x00, 0x01                     # 0x151 byte 0
CTRL_MODE_LINKAGE_TEACHING_INPUT = 0x06                          # 0x2A1 byte 0: a leader arm
ARM_STATUS_ESTOP = 0x01                                          # 0x2A1 byte 1: emergency stop
MOVE_J = 0x01                                                    # 0x151 byte 1
MIT_OFF = 0x00                                                   # 0x151 byte 3: position-velocity
ALL_MOTORS = 7                                                   # 0x471 byte 0: 7 = all motors
MOTOR_DISABLE, MOTOR_ENABLE = 0x01, 0x02                          # 0x471 byte 1
GRIPPER_DISABLE, GRIPPER_ENABLE = 0x00, 0x01                      # 0x159 byte 6
GRIPPER_EFFORT_MAX = 5000                                        # 0.001 N*m (GripperCtrl: 0-5000)
FOC_ENABLED_BIT = 1 << 6                                         # low-speed byte 5 bit 6

CTRL_MODES = {0x00: "standby", 0x01: "can_control", 0x02: "teaching", 0x03: "ethernet",
              0x04: "wifi", 0x05: "remote", 0x06: "linkage_teaching_input", 0x07: "offline_trajectory"}
ARM_STATUS = {0x00: "normal", 0x01: "emergency_stop", 0x02: "no_solution", 0x03: "singularity",
              0x04: "target_exceeds_limit", 0x05: "joint_communication_error",
              0x06: "joint_brake_not_released", 0x07: "collision", 0x08: "teach_drag_overspeed",
              0x09: "joint_status_error", 0x0A: "other_error", 0x0B: "teaching_record",
              0x0C: "teaching_execution", 0x0D: "teaching_pause",
              0x0E: "main_controller_ntc_over_temperature",
              0x0F: "release_resistor_ntc_over_temperature"}
# arm_status values that are informational (teach modes), not faults.
ARM_STATUS_INFO = {0x00, 0x0B, 0x0C, 0x0D}
GRIPPER_STATUS_BITS = ("voltage_too_low", "motor_overheating", "driver_overcurrent",
                       "driver_overheating", "sensor_error", "driver_error")  # bits 0..5 (bit 6 enable)

BITRATE = 1_000_000                    # CreateCanBus expected_bitrate; can_activate.sh default
IFF_UP = 0x1                           # /sys/class/net/<if>/flags: administratively up (linux/if.h)

MDEG_PER_RAD = 180_000.0 / math.pi     # 0.001 degree per radian
UM_PER_M = 1_000_000.0                 # 0.001 mm per metre


def rad_to_mdeg(rad: float) -> int:
    """Radians -> integer 0.001 degree (the Piper joint unit), rounded to nearest."""
    return int(round(float(rad) * MDEG_PER_RAD))


def mdeg_to_rad(mdeg: int) -> float:
    return float(mdeg) / MDEG_PER_RAD


def m_to_um(metres: float) -> int:
    """Metres -> integer 0.001 mm (the Piper gripper stroke unit)."""
    return int(round(float(metres) * UM_PER_M))


def um_to_m(um: int) -> float:
    return float(um) / UM_PER_M


def _i32_pair(a: int, b: int) -> bytes:
    return struct.pack(">ii", int(a), int(b))


# -- command frames (what the SDK sends; tests compare against these) ---------------------------
def joint_ctrl_frames(joints_rad: Sequence[float]) -> list[tuple[int, bytes]]:
    """0x155-0x157: J1..J6 targets, int32 big-endian 0.001 degree, two per frame."""
    if len(joints_rad) != 6:
        raise ValueError(f"joints_rad: got {len(joints_rad)} values, expected 6")
    m = [rad_to_mdeg(q) for q in joints_rad]
    return [(JOINT_CTRL_IDS[k], _i32_pair(m[2 * k], m[2 * k + 1])) for k in range(3)]


def gripper_ctrl_frame(stroke_m: float, effort_mnm: int = 1000, code: int = GRIPPER_ENABLE,
                       set_zero: int = 0) -> tuple[int, bytes]:
    """0x159: int32 stroke (0.001 mm), uint16 effort (0.001 N*m), uint8 code, uint8 set_zero."""
    return GRIPPER_CTRL, struct.pack(">iHBB", m_to_um(stroke_m), int(effort_mnm), code, set_zero)


def motion_ctrl_2_frame(ctrl_mode: int = CTRL_MODE_CAN, move_mode: int = MOVE_J,
                        speed_percent: int = 100, mit_mode: int = MIT_OFF) -> tuple[int, bytes]:
    """0x151: control mode, move mode, speed %, MIT flag, residence time 0, install pos 0, 2 pad."""
    return MOTION_CTRL_2, bytes([ctrl_mode, move_mode, speed_percent, mit_mode, 0, 0, 0, 0])


def motion_ctrl_1_frame(emergency_stop: int) -> tuple[int, bytes]:
    """0x150: emergency stop byte (1 stop, 2 resume), track 0, teach 0, 5 pad."""
    return MOTION_CTRL_1, bytes([emergency_stop, 0, 0, 0, 0, 0, 0, 0])


def motor_enable_frame(enable: bool, motor: int = ALL_MOTORS) -> tuple[int, bytes]:
    """0x471: motor number (7 = all), flag (0x02 enable, 0x01 disable), 6 pad."""
    return MOTOR_ENABLE_DISABLE, bytes([motor, MOTOR_ENABLE if enable else MOTOR_DISABLE, 0, 0, 0, 0, 0, 0])


# -- feedback frames (what the arm sends; the fake arm builds these) ----------------------------
def joint_feedback_frames(joints_rad: Sequence[float]) -> list[tuple[int, bytes]]:
    """0x2A5-0x2A7: J1..J6 angles, int32 big-endian 0.001 degree, two per frame."""
    m = [rad_to_mdeg(q) for q in joints_rad]
    return [(JOINT_FEEDBACK_IDS[k], _i32_pair(m[2 * k], m[2 * k + 1])) for k in range(3)]


def gripper_feedback_frame(stroke_m: float, effort_mnm: int = 0, status: int = FOC_ENABLED_BIT
                           ) -> tuple[int, bytes]:
    """0x2A8: int32 stroke (0.001 mm), int16 effort (0.001 N*m), uint8 status bits, 1 pad."""
    return GRIPPER_FEEDBACK, struct.pack(">ihBB", m_to_um(stroke_m), int(effort_mnm), status, 0)


def status_frame(ctrl_mode: int = CTRL_MODE_CAN, arm_status: int = 0, err_code: int = 0
                 ) -> tuple[int, bytes]:
    """0x2A1: ctrl mode, arm status, mode feed, teach, motion, trajectory no., uint16 err code."""
    return ARM_STATUS_FEEDBACK, struct.pack(">BBBBBBH", ctrl_mode, arm_status, MOVE_J, 0, 0, 0, err_code)


def low_speed_frame(motor: int, enabled: bool) -> tuple[int, bytes]:
    """0x261-0x266: voltage, driver temp, motor temp, foc status (bit 6 = enabled), bus current."""
    return LOW_SPD_FEEDBACK_IDS[motor - 1], struct.pack(
        ">HhbBH", 240, 30, 30, FOC_ENABLED_BIT if enabled else 0, 0)


def decode_i32_pair(data: bytes) -> tuple[int, int]:
    return struct.unpack(">ii", bytes(data[:8]))


# -- status to diagnostics ----------------------------------------------------------------------
def status_faults(arm_status: int, err_code: int) -> list[str]:
    """Fault strings from the 0x2A1 arm status and 16-bit error code.

    err_code as the SDK parses it (big-endian bytes 6-7): bits 0-5 joint 1-6 communication error,
    bits 8-13 joint 1-6 angle limit exceeded (arm_feedback_status.py err_code setter).
    """
    faults = []
    if arm_status not in ARM_STATUS_INFO:
        faults.append(ARM_STATUS.get(arm_status, f"unknown_status_0x{arm_status:02X}"))
    for j in range(6):
        if err_code & (1 << j):
            faults.append(f"joint{j + 1}_communication_error")
        if err_code & (1 << (8 + j)):
            faults.append(f"joint{j + 1}_angle_limit")
    return faults


def gripper_faults(status: int) -> list[str]:
    """Fault strings from the 0x2A8 gripper status byte (bits 0-5)."""
    return [f"gripper_{name}" for bit, name in enumerate(GRIPPER_STATUS_BITS) if status & (1 << bit)]


# -- connection, feedback and control-frame bookkeeping (pure; piper.py holds the state) ----------
def link_problem(flags: int | None) -> str | None:
    """Why a socketcan interface cannot carry frames, from its /sys/class/net/<if>/flags.

    None (flags unreadable): the interface does not exist. A down interface still opens (bind
    succeeds) but never receives, and every send fails: the SDK would only log it.
    """
    if flags is None:
        return "no such network interface"
    if not flags & IFF_UP:
        return f"the interface is down (flags 0x{flags:X}, IFF_UP not set)"
    return None


def can_open_error(channel: str, bustype: str, reason: object) -> str:
    """The one-line error for a CAN interface that did not open, with what to check."""
    if bustype == "socketcan":
        hint = f"check `ip link show {channel}` and that it is up (bitrate {BITRATE})"
    else:
        hint = (f"check that the adapter is connected and that python-can's '{bustype}' "
                "interface and its driver are installed")
    return f"piper: cannot open CAN interface '{channel}' ({bustype}): {reason}; {hint}"


def stamp_age(seen: tuple[float, float] | None, stamp: float, now: float
              ) -> tuple[tuple[float, float], float]:
    """Age of the newest frame behind an SDK time_stamp, measured on the caller's clock.

    `seen` is (time_stamp, `now` when that time_stamp was first seen). The SDK's time_stamp is
    the frame's receive time on the CAN interface's clock (wall clock for socketcan and virtual,
    other clocks for other adapters), so it is only compared for change; a new value restarts
    the age at 0. The age is exact to one polling interval (the driver polls at its rate).
    Returns (new `seen`, age in seconds).
    """
    if seen is None or stamp != seen[0]:
        return (stamp, now), 0.0
    return seen, max(0.0, now - seen[1])


def foreign_frames(changed: bool, previous_poll: float, last_sent: float | None, echo_s: float
                   ) -> bool:
    """Did control frames that changed between two polls come from another node (a leader)?

    Our own control frames can come back to the SDK's receive bus (python-can's virtual bus
    delivers every frame to every other handle on the channel; socketcan does not with the
    SDK's local_loopback=False), within `echo_s` of sending. A change seen after
    `previous_poll` is foreign when our last control frame was sent more than `echo_s` before
    that poll (or never).
    """
    return changed and (last_sent is None or last_sent + echo_s < previous_poll)


def feedback_lost_message(age: float, channel: str) -> str:
    return f"no joint feedback for {age:.1f} s on {channel}"


def leader_refusal(found: dict[str, str]) -> str:
    """enable()'s refusal when leader (teaching-mode) arms are active on follower channels."""
    where = "; ".join(f"{ch}: {why}" for ch, why in found.items())
    return (f"piper: refusing to enable: a leader arm is active on the follower CAN bus ({where}). "
            "Its control frames would fight this driver's. Put the leader on its own CAN channel "
            "(leader_can_channels), power it off, or set it to follower mode "
            "(MasterSlaveConfig(0xFC, 0, 0, 0), then power-cycle it)")
