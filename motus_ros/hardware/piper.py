"""`piper` backend (Agilex-Aloha-2): two Piper followers through piper-sdk's C_PiperInterface_V2.

One SDK interface per CAN channel (left, right). Units on the wire: joints 0.001 degree, gripper
0.001 mm (see piper_can.py); the layout uses radians and metres of gripper opening, mapped by the
robot's calibration file.

Stops, and what each frame does according to piper-sdk 0.6.2's own documentation:
- emergency_stop(): 0x150 byte 0 = 0x01, "quick emergency stop" (MotionCtrl_1, EmergencyStop).
  The SDK's demo list (demo/V2/README.MD, piper_ctrl_stop.py) describes it as "Stop the robotic
  arm and allow it to descend slowly. After use, reset and re-enable twice before resuming normal
  control." The arm reports arm_status 0x01 (emergency stop) in 0x2A1; writes are dropped.
- release_emergency_stop(): 0x150 byte 0 = 0x02, "resume" (MotionCtrl_1). It is the frame that
  ResetPiper() sends, documented as "The robot will immediately lose power and fall down,
  clearing all errors and internal flags." It is therefore only sent by that explicit operator
  call, logged as a warning, and only to arms that are in emergency stop; enable() never sends
  it and refuses while any arm is in emergency stop.
- Holding position while powered (watchdog, soft stop) is the driver's job: it keeps writing the
  held position through write(); no frame of its own is needed.

Agilex master/slave (leader/follower) set-up. An arm is made a leader ("teaching input arm") with
MasterSlaveConfig(0xFA, 0, 0, 0) (CAN 0x470; demo/V2/piper_set_master.py) and a follower ("motion
output arm") with MasterSlaveConfig(0xFC, 0, 0, 0) (piper_set_slave.py; a former leader must be
power-cycled after that, demo/V2/README.MD). In Agilex's teleoperation wiring (cobot_magic /
Aloha) each side's leader and follower share one CAN bus: the leader, in linkage teaching mode
(0x2A1 ctrl_mode 0x06 "linkage teaching input mode"), sends the control frames 0x151,
0x155-0x157 and 0x159 on the bus and the follower executes them directly, with no computer in
the loop. A computer on that bus can record both arms: the follower's feedback (0x2A5-0x2A8) and
the leader's commands, which the SDK parses into GetArmJointCtrl()/GetArmGripperCtrl()/
GetArmModeCtrl() ("sent by the main arm"); read_leader() returns them, from `leader_channels`.
For this driver to command the followers, no leader may be active on a follower bus: the follower
would execute the leader's frames and ours in turn. enable() therefore listens on each follower
channel for `leader_listen` seconds before sending anything and refuses, naming the channel, when
control frames arrive that this driver did not send (or an arm reports ctrl_mode 0x06). Fix: move
the leader to its own CAN channel (and list it in leader_channels), power it off, or set it to
follower mode.

Own frames on the bus: the SDK opens separate receive and send buses (C_STD_CAN in
hardware_port/can_encapsulation_v0_4_0.py, local_loopback=False). On socketcan the receive socket
then never sees our frames; on python-can's virtual bus it does (every other handle on a channel
receives every frame). Control frames are therefore counted as foreign only when none of ours can
still be in flight: OWN_ECHO_S after our last control frame (piper_can.foreign_frames).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Sequence

import numpy as np

from motus_ros.hardware import piper_can as pc
from motus_ros.hardware.calibration import JointCalibration, load_calibration
from motus_ros.hardware.interface import (ArmBackend, ArmState, BackendDiagnostic, JointLimits,
                                          check_left_right)
from motus_ros.layout import ARM_JOINTS, DOF, SERVICES, SIDES
from motus_ros.params import Param

log = logging.getLogger(__name__)

OWN_ECHO_S = 0.1        # our control frames are back on the SDK's receive bus within this (virtual bus)
RATE_WINDOW_S = 1.0     # command_hz: writes counted over this window
RELEASE_CONFIRM_FRAMES = 3  # fresh 0x2A1 frames without emergency stop that confirm a release
SYSFS_NET = "/sys/class/net"

ESTOP_REFUSAL = ("piper: arms are in hardware emergency stop; call "
                 f"{SERVICES['release_emergency_stop']} first (the arms lose power and may fall: "
                 "support them)")


class CanOpenError(RuntimeError):
    """A CAN interface did not open; the message names it, the reason and what to check."""


def _socketcan_flags(channel: str) -> int | None:
    try:
        with open(f"{SYSFS_NET}/{channel}/flags", encoding="ascii") as f:
            return int(f.read().strip(), 16)
    except (OSError, ValueError):
        return None


def _probe_reason(channel: str, bustype: str) -> str:
    """Open the bus with python-can ourselves to learn why the SDK could not (it only logs it)."""
    import can
    try:
        bus = can.Bus(channel=channel, interface=bustype, bitrate=pc.BITRATE)
    except Exception as exc:  # noqa: BLE001 - any failure is the reason we report
        return f"{type(exc).__name__}: {exc}"
    bus.shutdown()
    return "the SDK's CAN bus is not open (python-can opens it: retry)"


def _sdk_buses_open(can_bus) -> bool:
    """C_STD_CAN keeps recv_bus and send_bus (older SDKs: bus); None where opening failed."""
    if can_bus is None:
        return False
    buses = [getattr(can_bus, name) for name in ("recv_bus", "send_bus", "bus") if hasattr(can_bus, name)]
    return bool(buses) and all(b is not None for b in buses)


def _default_sdk_factory(channel: str, bustype: str):
    """Open one C_PiperInterface_V2 on `channel` without the SDK's socketcan-only auto init.

    The SDK swallows CAN open errors: C_STD_CAN.Init() catches can.CanError and leaves its buses
    None (ConnectPort would then spin its read thread on no bus), and CreateCanBus turns other
    errors into ConnectionError("['<ch>' CreateCanBus ERROR]"), raised inside its except block so
    that the cause is the exception's __context__. Both become a CanOpenError at once, with the
    reason, instead of a feedback timeout that reads like a wiring fault.
    """
    try:
        from piper_sdk import C_PiperInterface_V2
    except ImportError as exc:  # pragma: no cover - piper-sdk is a dependency of the project
        raise RuntimeError("piper backend needs the 'piper-sdk' package (pip install piper-sdk)") from exc
    sdk = C_PiperInterface_V2(can_name=channel, judge_flag=False, can_auto_init=False)
    try:
        sdk.CreateCanBus(channel, bustype=bustype, expected_bitrate=pc.BITRATE, judge_flag=False)
    except Exception as exc:
        cause = exc.__context__ or exc
        raise CanOpenError(pc.can_open_error(channel, bustype, f"{type(cause).__name__}: {cause}")
                           ) from exc
    if not _sdk_buses_open(sdk.GetCanBus()):
        raise CanOpenError(pc.can_open_error(channel, bustype, _probe_reason(channel, bustype)))
    if bustype == "socketcan":
        problem = pc.link_problem(_socketcan_flags(channel))
        if problem:
            sdk.GetCanBus().Close()
            raise CanOpenError(pc.can_open_error(channel, bustype, problem))
    sdk.ConnectPort(piper_init=False)
    return sdk


def _joint_list(js) -> list[int]:
    return [js.joint_1, js.joint_2, js.joint_3, js.joint_4, js.joint_5, js.joint_6]


def _ctrl_stamps(sdk) -> tuple[float, float, float]:
    """Receive stamps of the newest 0x155-0x157, 0x159 and 0x151 control frames on a channel."""
    return (sdk.GetArmJointCtrl().time_stamp, sdk.GetArmGripperCtrl().time_stamp,
            sdk.GetArmModeCtrl().time_stamp)


class PiperArmBackend(ArmBackend):
    """Two Piper followers; `read_leader()` returns the leader arms' positions when configured."""

    PARAMS = (
        Param("can_channels", ["can_left", "can_right"], "piper: follower CAN channels [left, right]"),
        Param("leader_can_channels", ["can_left", "can_right"],
              "piper: leader CAN channels [left, right], read when the driver's read_leaders is true"),
        Param("can_bustype", "socketcan", "piper: python-can interface (socketcan; virtual for tests)"),
        Param("piper_speed_percent", 100, "piper: MOVE J speed percentage (0x151 byte 2)", min=1, max=100),
        Param("gripper_effort", 1.0, "piper: gripper effort (N*m)", min=0.0, max=5.0),
        Param("enable_timeout", 5.0, "piper: time allowed for every motor to report enabled (s)",
              min=0.1, max=60.0),
    )

    @classmethod
    def check_params(cls, values) -> None:
        check_left_right(values, "can_channels", "leader_can_channels")

    @classmethod
    def from_params(cls, values, calibration) -> "PiperArmBackend":
        """Also reads the driver's read_leaders (open the leader channels) and feedback_timeout
        (the age at which this backend reports feedback as stale)."""
        return cls(calibration=calibration, channels=values["can_channels"], bustype=values["can_bustype"],
                   leader_channels=values["leader_can_channels"] if values["read_leaders"] else (),
                   speed_percent=values["piper_speed_percent"], gripper_effort=values["gripper_effort"],
                   enable_timeout=values["enable_timeout"], feedback_stale=values["feedback_timeout"])

    def __init__(self, calibration: JointCalibration | str = "agilex_aloha2",
                 channels: Sequence[str] = ("can_left", "can_right"), bustype: str = "socketcan",
                 leader_channels: Sequence[str] = (), speed_percent: int = 100,
                 gripper_effort: float = 1.0, enable_timeout: float = 5.0,
                 feedback_timeout: float = 2.0, feedback_stale: float = 0.5,
                 leader_listen: float = 0.1,
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
        if not feedback_stale > 0:
            raise ValueError(f"feedback_stale: got {feedback_stale} s, expected > 0")
        if not 0.01 <= leader_listen <= 5.0:
            raise ValueError(f"leader_listen: got {leader_listen} s, expected 0.01..5 s")
        self.channels = tuple(channels)
        self.leader_channels = tuple(leader_channels)
        self.bustype = bustype
        self.speed_percent = int(speed_percent)
        self.gripper_effort_mnm = effort
        self.enable_timeout = float(enable_timeout)
        self.feedback_timeout = float(feedback_timeout)
        self.feedback_stale = float(feedback_stale)
        self.leader_listen = float(leader_listen)
        self._factory = sdk_factory or _default_sdk_factory
        self._sdk: dict[str, object] = {}
        self._estopped = False
        self._enabled = False
        # Bookkeeping per follower channel, on time.monotonic(); _lock guards it (read() and
        # diagnostics() may run on different threads), _tx_lock serialises sending.
        self._lock = threading.Lock()
        self._tx_lock = threading.Lock()
        self._listening = False                                   # enable()'s leader check
        self._feedback_seen: dict[str, tuple[float, float]] = {}  # joint time_stamp, first seen
        self._ctrl_seen: dict[str, tuple[tuple, float]] = {}      # control stamps, poll time
        self._last_sent: dict[str, float] = {}                    # our newest control frame
        self._foreign_at: dict[str, float] = {}                   # newest foreign control frame
        self._writes = {ch: collections.deque() for ch in self.channels}  # write() times

    @property
    def limits(self) -> JointLimits:
        return self.calibration.limits

    # -- connection ------------------------------------------------------------------------------
    def _open(self, channel: str):
        if channel not in self._sdk:
            try:
                self._sdk[channel] = self._factory(channel, self.bustype)
            except CanOpenError:
                raise
            except Exception as exc:
                raise CanOpenError(pc.can_open_error(channel, self.bustype, exc)) from exc
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
                               f"{self.feedback_timeout:.1f} s: the CAN interface is open, so check "
                               "arm power, the CAN wiring and termination")
        now = time.monotonic()
        for ch in self.channels:
            self._feedback_age(ch, self._sdk[ch].GetArmJointMsgs().time_stamp, now)

    def _sides(self):
        return zip(SIDES, (self._sdk[ch] for ch in self.channels))

    def _require_connected(self, what: str) -> None:
        if any(ch not in self._sdk for ch in self.channels):
            raise RuntimeError(f"piper: {what} before connect()")

    # -- bookkeeping -----------------------------------------------------------------------------
    def _feedback_age(self, channel: str, stamp: float, now: float) -> float:
        with self._lock:
            self._feedback_seen[channel], age = pc.stamp_age(self._feedback_seen.get(channel), stamp, now)
        return age

    def _watch_control_frames(self, channel: str, sdk, now: float) -> None:
        """Note control frames that arrived since the last poll and that we cannot have sent."""
        stamps = _ctrl_stamps(sdk)
        with self._lock:
            previous = self._ctrl_seen.get(channel)
            self._ctrl_seen[channel] = (stamps, now)
            if previous is not None and pc.foreign_frames(stamps != previous[0], previous[1],
                                                          self._last_sent.get(channel), OWN_ECHO_S):
                self._foreign_at[channel] = now

    def _recent_writes(self, channel: str, now: float) -> collections.deque:
        """write() times on `channel` within the last RATE_WINDOW_S (caller holds _lock)."""
        times = self._writes[channel]
        while times and times[0] < now - RATE_WINDOW_S:
            times.popleft()
        return times

    def _sent(self, channel: str, write: bool = False) -> None:
        """Record a control frame (0x151/0x155-0x157/0x159) sent on `channel`."""
        now = time.monotonic()
        with self._lock:
            self._last_sent[channel] = now
            if write:
                self._recent_writes(channel, now).append(now)

    def _command_hz(self, channel: str, now: float) -> float:
        with self._lock:
            return len(self._recent_writes(channel, now)) / RATE_WINDOW_S

    # -- state -----------------------------------------------------------------------------------
    def _raw(self, joints_mdeg: Sequence[list[int]], grippers_um: Sequence[int]) -> np.ndarray:
        raw = np.zeros(DOF)
        for s in range(2):
            base = s * (ARM_JOINTS + 1)
            raw[base:base + ARM_JOINTS] = [pc.mdeg_to_rad(v) for v in joints_mdeg[s]]
            raw[base + ARM_JOINTS] = pc.um_to_m(grippers_um[s])
        return self.calibration.raw_to_layout(raw)

    def read(self) -> ArmState:
        """Both arms' state; feedback_age is the older arm's time since its last joint frame."""
        if not self._sdk:
            raise RuntimeError("piper: read() before connect()")
        now = time.monotonic()
        joints, grippers, efforts, faults, enabled, ages = [], [], np.zeros(DOF), [], True, []
        for s, (side, ch) in enumerate(zip(SIDES, self.channels)):
            sdk = self._sdk[ch]
            js = sdk.GetArmJointMsgs()
            ages.append(self._feedback_age(ch, js.time_stamp, now))
            joints.append(_joint_list(js.joint_state))
            g = sdk.GetArmGripperMsgs().gripper_state
            grippers.append(g.grippers_angle)
            efforts[s * (ARM_JOINTS + 1) + ARM_JOINTS] = g.grippers_effort / 1000.0
            st = sdk.GetArmStatus().arm_status
            faults += [f"{side}: {f}" for f in pc.status_faults(int(st.arm_status), int(st.err_code))]
            faults += [f"{side}: {f}" for f in pc.gripper_faults(int(g.status_code))]
            enabled = enabled and all(sdk.GetArmEnableStatus())
            self._watch_control_frames(ch, sdk, now)
        return ArmState(self._raw(joints, grippers), efforts=efforts,
                        enabled=enabled and not self._estopped, faults=faults,
                        feedback_age=max(ages))

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
        """Per arm: 0x151 (CAN control, MOVE J, speed), 0x155-0x157 joints, 0x159 gripper.

        Dropped during an emergency stop and during enable()'s leader check (a listening window
        in which this driver must be silent on the bus).
        """
        if self._estopped or self._listening:
            return
        raw = self.calibration.layout_to_raw(np.asarray(positions, dtype=np.float64))
        with self._tx_lock:
            for s, ch in enumerate(self.channels):
                sdk = self._sdk[ch]
                base = s * (ARM_JOINTS + 1)
                mdeg = [pc.rad_to_mdeg(q) for q in raw[base:base + ARM_JOINTS]]
                # MotionCtrl_2 (0x151): ctrl_mode 0x01 "CAN command control mode", move_mode
                # 0x01 "MOVE J", move_spd_rate_ctrl 0-100 %, is_mit_mode 0x00 "Position-velocity
                # mode". The SDK's joint demo (demo/V2/piper_ctrl_joint.py) re-sends it with every
                # target: an arm that dropped to standby (e.g. after a fault reset) then resumes.
                sdk.MotionCtrl_2(pc.CTRL_MODE_CAN, pc.MOVE_J, self.speed_percent, pc.MIT_OFF)
                # JointCtrl (0x155-0x157): joint angles "in 0.001°" (its docstring also asks
                # for the joint control mode first: the 0x151 above).
                sdk.JointCtrl(*mdeg)
                # GripperCtrl (0x159): stroke in 0.001 mm, effort 0.001 N*m (0-5000), gripper_code
                # 0x01 "Enable", set_zero 0x00 "Invalid value" (no zeroing).
                sdk.GripperCtrl(max(0, pc.m_to_um(raw[base + ARM_JOINTS])), self.gripper_effort_mnm,
                                pc.GRIPPER_ENABLE, 0)
                self._sent(ch, write=True)

    def _estopped_channels(self) -> list[str]:
        """Follower channels whose arm is in hardware emergency stop (ours, or 0x2A1 status 0x01)."""
        if self._estopped:
            return list(self.channels)
        return [ch for ch in self.channels
                if int(self._sdk[ch].GetArmStatus().arm_status.arm_status) == pc.ARM_STATUS_ESTOP]

    def _leaders_on_follower_bus(self) -> dict[str, str]:
        """Listen `leader_listen` s with our writes held back; {channel: why} where a leader acts."""
        self._listening = True
        try:
            with self._tx_lock:                      # a write() in progress finishes first
                pass
            with self._lock:
                last = max((self._last_sent.get(ch, float("-inf")) for ch in self.channels))
            wait = last + OWN_ECHO_S - time.monotonic()
            if wait > 0:                             # let our own echoes arrive before listening
                time.sleep(wait)
            start = time.monotonic()
            before = {ch: _ctrl_stamps(self._sdk[ch]) for ch in self.channels}
            time.sleep(self.leader_listen)
            found = {}
            for ch in self.channels:
                sdk = self._sdk[ch]
                with self._lock:
                    last_sent = self._last_sent.get(ch)
                if pc.foreign_frames(_ctrl_stamps(sdk) != before[ch], start, last_sent, OWN_ECHO_S):
                    found[ch] = (f"control frames 0x151/0x155-0x157/0x159 that this driver did not "
                                 f"send arrived within {self.leader_listen:.2f} s")
                elif int(sdk.GetArmStatus().arm_status.ctrl_mode) == pc.CTRL_MODE_LINKAGE_TEACHING_INPUT:
                    found[ch] = "an arm reports ctrl_mode 0x06 (linkage teaching input: a leader)"
            return found
        finally:
            self._listening = False

    def enable(self) -> None:
        """Checks, then 0x471 enable all until every motor reports enabled (0x261-0x266 bit 6),
        then 0x151 CAN control / MOVE J and 0x159 gripper enable.

        Refused (RuntimeError, nothing sent) while an arm is in hardware emergency stop: leaving it
        is release_emergency_stop()'s job, because it cuts motor power. Refused when a leader arm
        is active on a follower channel (see the module docstring).
        """
        self._require_connected("enable()")
        if self._estopped_channels():
            raise RuntimeError(ESTOP_REFUSAL)
        leaders = self._leaders_on_follower_bus()
        if leaders:
            raise RuntimeError(pc.leader_refusal(leaders))
        deadline = time.monotonic() + self.enable_timeout
        pending = list(self._sides())
        while pending:
            # EnablePiper(): EnableArm(7) = 0x471 motor 7 ("all motors"), enable_flag 0x02
            # ("Enable"); returns whether every motor already reported enabled. The stop demo's
            # "re-enable twice" is this loop: it repeats until all six report enabled.
            pending = [(side, sdk) for side, sdk in pending if not sdk.EnablePiper()]
            if not pending:
                break
            if time.monotonic() > deadline:
                detail = {side: sdk.GetArmEnableStatus() for side, sdk in pending}
                raise RuntimeError(f"piper: motors not enabled after {self.enable_timeout:.1f} s "
                                   f"(per-motor enable flags {detail})")
            time.sleep(0.01)
        state = self.read()
        with self._tx_lock:
            for s, ch in enumerate(self.channels):
                sdk = self._sdk[ch]
                # MotionCtrl_2 (0x151) and GripperCtrl (0x159): see write().
                sdk.MotionCtrl_2(pc.CTRL_MODE_CAN, pc.MOVE_J, self.speed_percent, pc.MIT_OFF)
                g = self.calibration.gripper.to_raw(state.positions[s * (ARM_JOINTS + 1) + ARM_JOINTS])
                sdk.GripperCtrl(max(0, pc.m_to_um(float(g))), self.gripper_effort_mnm,
                                pc.GRIPPER_ENABLE, 0)
                self._sent(ch)
        self._enabled = True

    def disable(self) -> None:
        """0x471 disable all motors and 0x159 gripper disable (the arm goes limp)."""
        with self._tx_lock:
            for ch in self.channels:
                sdk = self._sdk[ch]
                # DisableArm (0x471): motor_num 7 (all motors), enable_flag 0x01 ("Disable").
                sdk.DisableArm(pc.ALL_MOTORS, pc.MOTOR_DISABLE)
                # GripperCtrl (0x159): gripper_code 0x00 "Disabled".
                sdk.GripperCtrl(0, 0, pc.GRIPPER_DISABLE, 0)
                self._sent(ch)
        self._enabled = False

    def emergency_stop(self) -> None:
        """0x150 byte 0 = 0x01 on both arms; writes are dropped until release_emergency_stop().

        MotionCtrl_1 / EmergencyStop docstrings: 0x01 "quick emergency stop"; demo/V2/README.MD
        (piper_ctrl_stop.py): the arm stops "and descend[s] slowly". Both arms are always sent
        the frame, even if one send fails.

        The SDK encodes every command in one shared message object (C_PiperInterface_V2.tx_msg),
        so a frame sent while write() runs on another thread could be garbled: wait briefly for
        the write in progress, but never long: after 50 ms send regardless.
        """
        self._estopped = True
        locked = self._tx_lock.acquire(timeout=0.05)
        errors = []
        try:
            for side, sdk in self._sides():
                try:
                    sdk.MotionCtrl_1(pc.ESTOP_STOP, 0, 0)
                except Exception as exc:  # noqa: BLE001 - the other arm must still be stopped
                    errors.append(f"{side}: {exc}")
        finally:
            if locked:
                self._tx_lock.release()
        if errors:
            raise RuntimeError(f"piper: emergency stop frame (0x150) not sent on {errors}")

    def release_emergency_stop(self) -> None:
        """Leave the hardware emergency stop: 0x150 byte 0 = 0x02 to each arm in emergency stop.

        piper_sdk documents this frame (ResetPiper) as "The robot will immediately lose power and
        fall down, clearing all errors and internal flags": the arms must be supported first.
        Only arms in emergency stop get it (a powered arm holding position would drop); nothing is
        sent when none is. Afterwards the motors are off: enable() powers them again.
        Raises RuntimeError if an arm still reports emergency stop after enable_timeout.
        """
        self._require_connected("release_emergency_stop()")
        channels = self._estopped_channels()
        if not channels:
            log.info("piper: release_emergency_stop: no arm is in emergency stop; nothing sent")
            return
        log.warning("piper: releasing the hardware emergency stop on %s with 0x150 byte 0 = 0x02 "
                    "(piper_sdk ResetPiper: 'the robot will immediately lose power and fall down'): "
                    "the arms lose power now; call enable to power them again", ", ".join(channels))
        with self._tx_lock:
            for ch in channels:
                # MotionCtrl_1 (0x150) emergency_stop 0x02 "Resume" = ResetPiper(), see above.
                self._sdk[ch].MotionCtrl_1(pc.ESTOP_RESUME, 0, 0)
        self._estopped = False
        self._enabled = False
        # Done when every released arm has sent RELEASE_CONFIRM_FRAMES fresh 0x2A1 frames in a
        # row without emergency stop: the status cached before the release (or still in flight
        # from before the arm read our frame) must not count.
        deadline = time.monotonic() + self.enable_timeout
        seen = {ch: (self._sdk[ch].GetArmStatus().time_stamp, 0) for ch in channels}
        while True:
            for ch in channels:
                st = self._sdk[ch].GetArmStatus()
                stamp, clear = seen[ch]
                if st.time_stamp != stamp:
                    stopped = int(st.arm_status.arm_status) == pc.ARM_STATUS_ESTOP
                    seen[ch] = (st.time_stamp, 0 if stopped else clear + 1)
            still = [ch for ch in channels if seen[ch][1] < RELEASE_CONFIRM_FRAMES]
            if not still:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"piper: {still} did not report leaving emergency stop (0x2A1 "
                                   f"arm_status 0x01 or no status) {self.enable_timeout:.1f} s "
                                   "after the release frame")
            time.sleep(0.005)

    def close(self) -> None:
        for ch, sdk in list(self._sdk.items()):
            try:
                sdk.DisconnectPort()
            except Exception as exc:  # noqa: BLE001 - closing must not raise twice
                log.warning("piper: closing %s: %s", ch, exc)
        self._sdk.clear()

    def diagnostics(self) -> list[BackendDiagnostic]:
        """Per arm: faults, joint feedback age and rate, command rate, e-stop, leader frames.

        ERROR: a fault, or no joint feedback for more than feedback_stale s. WARN: emergency stop,
        or control frames from another node (a leader arm) within the last second.
        """
        items = []
        now = time.monotonic()
        for side, ch in zip(SIDES, self.channels):
            sdk = self._sdk.get(ch)
            if sdk is None:
                items.append(BackendDiagnostic(2, f"piper/{side}", f"{ch}: not connected"))
                continue
            js = sdk.GetArmJointMsgs()
            age = self._feedback_age(ch, js.time_stamp, now)
            self._watch_control_frames(ch, sdk, now)
            st = sdk.GetArmStatus().arm_status
            g = sdk.GetArmGripperMsgs().gripper_state
            problems = pc.status_faults(int(st.arm_status), int(st.err_code)) + pc.gripper_faults(
                int(g.status_code))
            if age > self.feedback_stale:
                problems.insert(0, pc.feedback_lost_message(age, ch))
            with self._lock:
                foreign = self._foreign_at.get(ch)
            leader = foreign is not None and now - foreign < RATE_WINDOW_S
            warnings = (["emergency stop"] if self._estopped else []) + (
                [f"control frames from another node (a leader arm?) on {ch}: enable is refused"]
                if leader else [])
            level = 2 if problems else (1 if warnings else 0)
            items.append(BackendDiagnostic(level, f"piper/{side}", "; ".join(problems + warnings) or "ok", {
                "channel": ch,
                "ctrl_mode": pc.CTRL_MODES.get(int(st.ctrl_mode), str(st.ctrl_mode)),
                "arm_status": pc.ARM_STATUS.get(int(st.arm_status), str(st.arm_status)),
                "err_code": f"0x{int(st.err_code):04X}",
                "motors_enabled": str(sdk.GetArmEnableStatus()),
                # The SDK's rate of 0x2A5-0x2A7 (frames in its last 0.1 s window x 10), 0 when
                # feedback stopped; feedback_age_s says for how long.
                "joint_feedback_hz": float(js.Hz),
                "feedback_age_s": float(age),
                "command_hz": self._command_hz(ch, now),
                "foreign_control_frames": (f"{now - foreign:.1f} s ago" if foreign is not None
                                           else "none seen"),
            }))
        return items
