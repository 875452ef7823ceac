"""A fake Piper arm on python-can's in-process `virtual` bus, for tests and benchmarks.

It plays the arm's side of the protocol (piper_can.py): sends feedback frames (status 0x2A1,
joints 0x2A5-0x2A7, gripper 0x2A8, motor enable flags 0x261-0x266) at `rate_hz`, records every
frame it receives with a monotonic timestamp, applies 0x471 enable/disable to its enable flags,
0x150 to its emergency-stop status (0x01 stop; 0x02 resume, which like the real arm also drops
motor power) and, with `follow=True`, moves its feedback to each joint and gripper target it
receives.

Faults to inject: `mute = True` stops all feedback (a powered-off arm or a broken cable) while
frames are still received; `as_leader=True` plays a leader arm in linkage teaching mode (control
frames 0x151, 0x155-0x157, 0x159 only); `leader_on_bus=True` adds such a leader on the same channel
(Agilex's master/slave wiring), reachable as `.leader` (`arm.leader.mute = True` powers it off).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import can

from motus_ros.hardware import piper_can as pc

LOW_SPEED_DIVIDER = 10


@dataclass
class Frame:
    """A received command frame: arbitration id, payload, receive time (time.monotonic)."""

    arbitration_id: int
    data: bytes
    t: float


class FakePiperArm:
    """Fake arm answering on `channel` of the virtual bus; use a fresh channel name per test."""

    def __init__(self, channel: str, joints_rad=(0.0,) * 6, gripper_m: float = 0.0,
                 rate_hz: float = 200.0, enabled: bool = False, follow: bool = False,
                 as_leader: bool = False, leader_on_bus: bool = False, leader_joints_rad=None):
        self.channel = channel
        self.joints = list(joints_rad)
        self.gripper = float(gripper_m)
        self.enabled = enabled
        self.follow = follow
        self.as_leader = as_leader     # send control frames (0x151, 0x155-0x157, 0x159) like a leader arm
        self.mute = False              # True: send nothing (feedback loss), keep receiving
        self.arm_status = 0
        self.err_code = 0
        self.gripper_status = pc.FOC_ENABLED_BIT
        self.ctrl_mode = pc.CTRL_MODE_STANDBY
        self.period = 1.0 / rate_hz
        self.frames: list[Frame] = []
        self._cycle = 0
        self._enable_changed = True
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._bus = can.Bus(channel=channel, interface="virtual")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-piper-{channel}", daemon=True)
        self._thread.start()
        # A leader arm on the same bus: its own handle, so that this arm receives its frames
        # (and follows them when follow=True and enabled, as a real follower in linkage mode).
        leader_joints = joints_rad if leader_joints_rad is None else leader_joints_rad
        self.leader = (FakePiperArm(channel, joints_rad=leader_joints, gripper_m=gripper_m,
                                    rate_hz=rate_hz, as_leader=True) if leader_on_bus else None)

    # -- test helpers ----------------------------------------------------------------------------
    def received(self, arbitration_id: int | None = None) -> list[Frame]:
        with self._lock:
            return [f for f in self.frames if arbitration_id is None or f.arbitration_id == arbitration_id]

    def clear(self) -> None:
        with self._lock:
            self.frames.clear()

    def wait_for(self, arbitration_id: int, count: int = 1, timeout: float = 5.0) -> list[Frame]:
        """Block until `count` frames with this id arrived; AssertionError naming it otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [f for f in self.frames if f.arbitration_id == arbitration_id]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"fake piper {self.channel}: {len(got)} of {count} frames "
                                         f"0x{arbitration_id:03X} after {timeout:.1f} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        if self.leader is not None:
            self.leader.close()
        self._stop.set()
        self._thread.join(timeout=2)
        self._bus.shutdown()

    # -- protocol --------------------------------------------------------------------------------
    def _feedback(self) -> list[tuple[int, bytes]]:
        if self.mute:
            return []
        if self.as_leader:
            # A leader in linkage teaching mode commands the follower: mode, joints, gripper
            # (the SDK's GetArmModeCtrl/GetArmJointCtrl/GetArmGripperCtrl: "sent by the main arm").
            return [pc.motion_ctrl_2_frame(), *pc.joint_ctrl_frames(self.joints),
                    pc.gripper_ctrl_frame(self.gripper)]
        frames = [pc.status_frame(self.ctrl_mode, self.arm_status, self.err_code),
                  *pc.joint_feedback_frames(self.joints),
                  pc.gripper_feedback_frame(self.gripper, 0, self.gripper_status)]
        # Driver-info frames (enable flags) at a tenth of the rate: they are slow status, and
        # sending them every cycle only loads the single-process virtual bus.
        self._cycle += 1
        if self._cycle % LOW_SPEED_DIVIDER == 1 or self._enable_changed:
            self._enable_changed = False
            frames += [pc.low_speed_frame(m, self.enabled) for m in range(1, 7)]
        return frames

    def _apply(self, msg: can.Message) -> None:
        data = bytes(msg.data)
        aid = msg.arbitration_id
        if aid == pc.MOTOR_ENABLE_DISABLE:
            self.enabled = data[1] == pc.MOTOR_ENABLE
            self._enable_changed = True
        elif aid == pc.MOTION_CTRL_1:
            if data[0] == pc.ESTOP_STOP:
                self.arm_status = 0x01
            elif data[0] == pc.ESTOP_RESUME:
                self.arm_status, self.enabled, self._enable_changed = 0x00, False, True
        elif aid == pc.MOTION_CTRL_2:
            self.ctrl_mode = data[0]
        elif self.follow and aid in pc.JOINT_CTRL_IDS and self.enabled and self.arm_status != 0x01:
            k = pc.JOINT_CTRL_IDS.index(aid)
            a, b = pc.decode_i32_pair(data)
            self.joints[2 * k], self.joints[2 * k + 1] = pc.mdeg_to_rad(a), pc.mdeg_to_rad(b)
        elif self.follow and aid == pc.GRIPPER_CTRL and self.enabled and self.arm_status != 0x01:
            self.gripper = pc.um_to_m(int.from_bytes(data[0:4], "big", signed=True))

    def _run(self) -> None:
        next_feedback = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_feedback - time.monotonic())
            msg = self._bus.recv(timeout=timeout)
            if msg is not None:
                with self._cond:
                    self.frames.append(Frame(msg.arbitration_id, bytes(msg.data), time.monotonic()))
                    self._apply(msg)
                    self._cond.notify_all()
            if time.monotonic() >= next_feedback:
                next_feedback += self.period
                with self._lock:
                    frames = self._feedback()
                for aid, data in frames:
                    try:
                        self._bus.send(can.Message(arbitration_id=aid, data=data, is_extended_id=False))
                    except can.CanError:
                        return
