"""Arm driver: one backend (mock | piper | arx | sim) behind the safety filter.

Publishes the 14 named joints on /puppet/joint_states at the driver rate, takes JointState
commands on /motus/joint_command, offers enable / disable / emergency-stop Trigger services and
/diagnostics. Every command is validated (names, sizes, NaN/inf: rejected, counted, logged),
interpolated to the driver rate, clamped into the limits and step-limited per tick before it
reaches the backend; a watchdog holds the last safe position when commands go stale.
"""
from __future__ import annotations

import threading

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from motus_ros.diagnostics import DiagnosticsPublisher, status
from motus_ros.execution.interpolation import INTERPOLATION_MODES, CommandInterpolator
from motus_ros.execution.safety import (LIMIT_MODES, CommandRejected, SafetyFilter, Watchdog,
                                        max_step_from_limits)
from motus_ros.hardware.calibration import load_calibration
from motus_ros.hardware.interface import ArmBackend
from motus_ros.hardware.registry import BACKENDS, backend_class
from motus_ros.layout import ARM_JOINTS, JOINT_NAMES, LEFT_SLICE, RIGHT_SLICE, SERVICES, TOPICS
from motus_ros.nodes._run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters

PARAMS = [
    Param("backend", "mock", "arm backend", choices=tuple(BACKENDS)),
    Param("calibration", "mock", "joint calibration: robot name under calibration/ or a joints.yaml path"),
    Param("rate_hz", 100.0, "driver tick rate: read, command, publish (Hz)", min=1.0, max=1000.0),
    Param("command_timeout", 0.5, "watchdog: hold position when the newest command is older (s)",
          min=0.01, max=60.0),
    Param("max_velocity_scale", 1.0, "fraction of the calibrated max velocity allowed per tick "
          "(step limit = max_velocity x scale / rate_hz)", min=0.01, max=1.0),
    Param("limit_mode", "clip", "commands outside the joint limits: clip into them or reject",
          choices=LIMIT_MODES),
    Param("interpolation", "linear", "upsampling of commands to the driver rate",
          choices=INTERPOLATION_MODES),
    Param("command_period", 1.0 / 30.0, "nominal command period for interpolation (s)",
          min=0.001, max=1.0),
    Param("autostart", True, "configure and activate at start-up (else stay unconfigured)"),
    Param("auto_enable", True, "enable the motors on activation"),
    Param("disable_on_shutdown", False, "disable the motors after holding position on shutdown"),
    Param("publish_agilex_topics", False,
          "also publish per-arm JointState on /puppet/joint_left|right (Agilex cobot_magic names)"),
    Param("read_leaders", False, "publish the leader arms on /master/joint_states (piper only)"),
    Param("diagnostics_period", 1.0, "period of /diagnostics (s)", min=0.05, max=60.0),
    # piper
    Param("can_channels", ["can_left", "can_right"], "piper: follower CAN channels [left, right]"),
    Param("leader_can_channels", ["can_left", "can_right"], "piper: leader CAN channels [left, right]"),
    Param("can_bustype", "socketcan", "piper: python-can interface (socketcan; virtual for tests)"),
    Param("piper_speed_percent", 100, "piper: MOVE J speed percentage (0x151 byte 2)", min=1, max=100),
    Param("gripper_effort", 1.0, "piper: gripper effort (N*m)", min=0.0, max=5.0),
    Param("enable_timeout", 5.0, "piper: time allowed for every motor to report enabled (s)",
          min=0.1, max=60.0),
    # arx
    Param("arx_interfaces", ["can0", "can1"], "arx: CAN interfaces [left, right]"),
    Param("arx_model", "X5", "arx: robot model for arx5-interface", choices=("X5", "L5")),
    # mock
    Param("mock_time_constant", 0.0, "mock: first-order lag of state behind command (s)",
          min=0.0, max=10.0),
]

STATE_HISTORY = 100  # joint-state publishers' keep-last depth (see __init__)
AGILEX_JOINT_NAMES = [f"joint{i}" for i in range(ARM_JOINTS + 1)]   # cobot_magic: joint0..joint6


def make_backend(node: Node, p: dict, calibration) -> ArmBackend:
    """Instantiate the chosen backend from the node's parameters."""
    cls = backend_class(p["backend"])
    name = p["backend"]
    if hasattr(cls, "from_node"):           # backends with their own parameters (sim)
        return cls.from_node(node, calibration=calibration)
    if name == "mock":
        return cls(calibration=calibration, time_constant=p["mock_time_constant"])
    if name == "piper":
        return cls(calibration=calibration, channels=p["can_channels"], bustype=p["can_bustype"],
                   leader_channels=p["leader_can_channels"] if p["read_leaders"] else (),
                   speed_percent=p["piper_speed_percent"], gripper_effort=p["gripper_effort"],
                   enable_timeout=p["enable_timeout"])
    if name == "arx":
        return cls(calibration=calibration, interfaces=p["arx_interfaces"], model=p["arx_model"])
    return cls(calibration=calibration)


class ArmDriverNode(Node):
    """Lifecycle-shaped driver: configure (connect), activate (enable, tick), cleanup (close)."""

    def __init__(self, backend: ArmBackend | None = None, **kwargs):
        super().__init__("arm_driver", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        for key in ("can_channels", "leader_can_channels", "arx_interfaces"):
            if len(self.p[key]) != 2:
                raise ParameterError(f"parameter '{key}': got {self.p[key]}, expected two entries [left, right]")
        self.calibration = load_calibration(self.p["calibration"])
        self._injected_backend = backend
        self.backend: ArmBackend | None = None
        self._group = MutuallyExclusiveCallbackGroup()
        self._lock = threading.RLock()
        # Reliable keep-last: a deep history lets a lagging subscriber (the recorder on a busy
        # machine) catch up instead of losing states; 100 is 0.5 s at 200 Hz.
        self.state_pub = self.create_publisher(JointState, TOPICS["joint_states"], STATE_HISTORY)
        self.leader_pub = None
        self.agilex_pubs = {}
        if self.p["publish_agilex_topics"]:
            self.agilex_pubs = {s: self.create_publisher(JointState, f"/puppet/joint_{s}",
                                                            STATE_HISTORY)
                                for s in ("left", "right")}
        self.create_subscription(JointState, TOPICS["joint_command"], self._on_command, 10,
                                 callback_group=self._group)
        self.create_service(Trigger, SERVICES["enable"], self._srv_enable, callback_group=self._group)
        self.create_service(Trigger, SERVICES["disable"], self._srv_disable, callback_group=self._group)
        self.create_service(Trigger, SERVICES["emergency_stop"], self._srv_estop,
                            callback_group=self._group)
        self.diag = DiagnosticsPublisher(self)
        self.safety: SafetyFilter | None = None
        self.watchdog = Watchdog(self.p["command_timeout"])
        self.interp = CommandInterpolator(self.p["interpolation"], self.p["command_period"],
                                          max(self.p["command_period"], 0.2))
        self.enabled = False
        self.estopped = False
        self.ignored_commands = 0
        self._holding = False
        self.read_errors = 0
        self.ticks = 0
        self.last_state = None
        self.last_error = ""
        self._tick_timer = None
        self._diag_timer = None
        if self.p["autostart"]:
            self.configure()
            self.activate()

    # -- lifecycle -------------------------------------------------------------------------------
    def configure(self) -> None:
        """Create and connect the backend; the safety filter starts from the measured state."""
        self.backend = self._injected_backend or make_backend(self, self.p, self.calibration)
        limits = self.backend.limits
        max_step = max_step_from_limits(limits, self.p["rate_hz"], self.p["max_velocity_scale"])
        self.safety = SafetyFilter(limits, max_step, self.p["limit_mode"], on_reject=self._log_reject)
        self.backend.connect()
        self.backend.attach(self)
        state = self.backend.read()
        self.last_state = state
        self.safety.reset(state.positions)
        self.interp.reset(None)
        if self.p["read_leaders"] and callable(getattr(self.backend, "read_leader", None)):
            self.leader_pub = self.create_publisher(JointState, TOPICS["leader_joint_states"],
                                                    STATE_HISTORY)
            if self.p["publish_agilex_topics"]:
                for s in ("left", "right"):
                    self.agilex_pubs[f"master_{s}"] = self.create_publisher(
                        JointState, f"/master/joint_{s}", STATE_HISTORY)
        self.get_logger().info(
            f"connected backend '{self.p['backend']}' (calibration {self.calibration.source}); "
            f"driver {self.p['rate_hz']:.0f} Hz, watchdog {self.p['command_timeout']:.2f} s")

    def activate(self) -> None:
        if self.p["auto_enable"]:
            self._enable()
        self._tick_timer = self.create_timer(1.0 / self.p["rate_hz"], self._tick,
                                             callback_group=self._group)
        self._diag_timer = self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics,
                                             callback_group=self._group)

    def deactivate(self) -> None:
        for timer in (self._tick_timer, self._diag_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._tick_timer = self._diag_timer = None

    def cleanup(self) -> None:
        """Hold position, optionally disable, release the device."""
        with self._lock:
            if self.backend is None:
                return
            try:
                if self.enabled and not self.estopped and self.safety is not None:
                    self.backend.write(self.safety.hold())
                if self.p["disable_on_shutdown"] and self.enabled:
                    self.backend.disable()
            except Exception as exc:  # noqa: BLE001 - shutting down: report and go on closing
                self.get_logger().error(f"clean stop failed: {exc}")
            finally:
                self.backend.close()
                self.backend = None
                self.enabled = False

    def close(self) -> None:
        self.deactivate()
        self.cleanup()

    # -- helpers ---------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _log_reject(self, reason: str, message: str) -> None:
        self.get_logger().warn(f"rejected command ({reason}): {message}",
                               throttle_duration_sec=1.0)

    def _restart_from_measured(self) -> None:
        state = self.backend.read()
        self.last_state = state
        self.safety.reset(state.positions)
        self.interp.reset(None)
        self.watchdog.clear()
        self._holding = False

    def _enable(self) -> None:
        self.backend.enable()
        self.estopped = False
        self.enabled = True
        self._restart_from_measured()

    # -- callbacks -------------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        with self._lock:
            if self.safety is None or not self.enabled or self.estopped:
                self.ignored_commands += 1
                return
            try:
                q = self.safety.validate(msg.name, msg.position)
            except CommandRejected:
                return
            now = self._now()
            self.watchdog.feed(now)
            self._holding = False
            self.interp.push(now, q)

    def _tick(self) -> None:
        with self._lock:
            if self.backend is None:
                return
            self.ticks += 1
            now_msg = self.get_clock().now().to_msg()
            try:
                state = self.backend.read()
                self.last_state = state
            except Exception as exc:  # noqa: BLE001 - keep ticking, report in diagnostics
                self.read_errors += 1
                self.last_error = str(exc)
                self.get_logger().error(f"backend read failed: {exc}", throttle_duration_sec=1.0)
                state = None
            if state is not None and state.stamp is not None:
                now_msg = Time(seconds=state.stamp).to_msg()  # the backend's clock (sim time)
            if state is not None:
                self._publish_state(state.positions, state.velocities, state.efforts, now_msg)
            if self.leader_pub is not None:
                leader = self.backend.read_leader()
                if leader is not None:
                    self._publish_leader(leader, now_msg)
            if not self.enabled or self.estopped:
                return
            now = self._now()
            if self.watchdog.check(now) and not self._holding:
                self._holding = True
                self.get_logger().warn(
                    f"watchdog: no command for {self.watchdog.age(now):.2f} s "
                    f"(> {self.watchdog.timeout:.2f} s), holding position")
                self.interp.reset(self.safety.hold())
            target = self.interp.sample(now)
            if target is None:
                return
            out = self.safety.step(target).position
            try:
                self.backend.write(out)
            except Exception as exc:  # noqa: BLE001
                self.last_error = str(exc)
                self.get_logger().error(f"backend write failed: {exc}", throttle_duration_sec=1.0)

    def _publish_state(self, positions, velocities, efforts, stamp) -> None:
        msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in positions])
        msg.header.stamp = stamp
        if velocities is not None:
            msg.velocity = [float(v) for v in velocities]
        if efforts is not None:
            msg.effort = [float(v) for v in efforts]
        self.state_pub.publish(msg)
        for side, sl in (("left", LEFT_SLICE), ("right", RIGHT_SLICE)):
            pub = self.agilex_pubs.get(side)
            if pub is not None:
                arm = JointState(name=AGILEX_JOINT_NAMES, position=[float(v) for v in positions[sl]])
                arm.header.stamp = stamp
                pub.publish(arm)

    def _publish_leader(self, positions, stamp) -> None:
        msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in positions])
        msg.header.stamp = stamp
        self.leader_pub.publish(msg)
        for side, sl in (("left", LEFT_SLICE), ("right", RIGHT_SLICE)):
            pub = self.agilex_pubs.get(f"master_{side}")
            if pub is not None:
                arm = JointState(name=AGILEX_JOINT_NAMES, position=[float(v) for v in positions[sl]])
                arm.header.stamp = stamp
                pub.publish(arm)

    def _service(self, response, action, ok_text: str):
        with self._lock:
            if self.backend is None:
                response.success, response.message = False, "backend not configured"
                return response
            try:
                action()
                response.success, response.message = True, ok_text
            except Exception as exc:  # noqa: BLE001 - report to the caller
                response.success, response.message = False, f"{type(exc).__name__}: {exc}"
                self.get_logger().error(response.message)
        return response

    def _srv_enable(self, request, response):
        return self._service(response, self._enable, "enabled")

    def _srv_disable(self, request, response):
        def action():
            if self.enabled and not self.estopped:
                self.backend.write(self.safety.hold())
            self.backend.disable()
            self.enabled = False
            self.watchdog.clear()
        return self._service(response, action, "disabled")

    def _srv_estop(self, request, response):
        def action():
            self.backend.emergency_stop()
            self.estopped = True
            self.watchdog.clear()
            self.interp.reset(None)
            self.get_logger().warn("EMERGENCY STOP: commands ignored until /arm/enable")
        return self._service(response, action, "emergency stop; call enable to resume")

    def _publish_diagnostics(self) -> None:
        with self._lock:
            if self.safety is None:
                return
            counts = self.safety.summary()
            rejected = sum(counts[k] for k in ("wrong_size", "wrong_names", "non_finite", "out_of_limits"))
            level, message = 0, "ok"
            if self.estopped:
                level, message = 2, "emergency stop"
            elif self.read_errors and self.last_error:
                level, message = 2, f"backend error: {self.last_error}"
            elif self.watchdog.tripped:
                level, message = 1, "watchdog: commands stale, holding position"
            elif not self.enabled:
                level, message = 1, "disabled"
            elif rejected:
                level, message = 1, f"{rejected} commands rejected"
            values = {**counts, "ignored_commands": self.ignored_commands,
                      "watchdog_trips": self.watchdog.trips, "enabled": self.enabled,
                      "read_errors": self.read_errors, "ticks": self.ticks,
                      "backend": self.p["backend"]}
            items = [status("arm_driver: safety", level, message, values)]
            for d in self.backend.diagnostics() if self.backend is not None else []:
                items.append(status(f"arm_driver: {d.name}", d.level, d.message, d.values))
        self.diag.publish(*items)


def main(args=None):
    return run_node(lambda: ArmDriverNode(), args)


if __name__ == "__main__":
    main()
