"""Arm driver: one backend (mock | piper | arx | sim) behind the safety filter.

Publishes the 14 named joints on /puppet/joint_states at the driver rate, takes JointState
commands on /motus/joint_command, offers enable / disable / soft-stop / emergency-stop /
release-emergency-stop Trigger services, /arm/enabled (latched Bool: commands are executed) and
/diagnostics. Every command is validated (names, sizes, NaN/inf: rejected, counted, logged),
interpolated to the driver rate, clamped into the limits, velocity- and acceleration-limited per
tick before it reaches the backend; a watchdog holds the last safe position when commands go
stale. No callback lets an exception out: one bad message or a failing device call is counted
and reported, and the driver keeps publishing and serving.

Stops, from mildest:
- watchdog (commands stale): hold position while powered; the next valid command resumes;
- soft stop (/arm/soft_stop; also on feedback loss): hold position while powered, commands
  ignored until /arm/enable;
- emergency stop (/arm/emergency_stop): the backend's hardware stop; commands ignored, and
  /arm/enable is refused until /arm/release_emergency_stop, an explicit, logged operator action
  (on Piper arms the release cuts motor power: support the arms first).
"""
from __future__ import annotations

import threading

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from motus_ros.ros.diagnostics import DiagnosticsPublisher, status
from motus_ros.execution.interpolation import INTERPOLATION_MODES, CommandInterpolator
from motus_ros.execution.safety import (LIMIT_MODES, CommandRejected, SafetyFilter, Watchdog,
                                        max_step_change_from_limits, max_step_from_limits)
from motus_ros.hardware.calibration import load_calibration
from motus_ros.hardware.interface import ArmBackend
from motus_ros.hardware.registry import BACKENDS, backend_class
from motus_ros.layout import ARM_JOINTS, JOINT_NAMES, LEFT_SLICE, RIGHT_SLICE, SERVICES, TOPICS
from motus_ros.ros.managed import AUTOSTART, ManagedNode
from motus_ros.ros.run import run_node
from motus_ros.params import Param, declare_parameters
from motus_ros.ros.qos import LATCHED
from motus_ros.stamps import to_ns, to_time_msg

# The chosen backend's own options (its PARAMS: CAN channels, SDK model, ...) are declared too.
PARAMS = [
    Param("backend", "mock", "arm backend", choices=tuple(BACKENDS)),
    Param("calibration", "mock", "joint calibration: robot name under calibration/ or a joints.yaml path"),
    Param("rate_hz", 100.0, "driver tick rate: read, command, publish (Hz)", min=1.0, max=1000.0),
    Param("command_timeout", 0.5, "watchdog: hold position when the newest command is older (s)",
          min=0.01, max=60.0, live=True),
    Param("max_velocity_scale", 1.0, "fraction of the calibrated max velocity allowed per tick "
          "(step limit = max_velocity x scale / rate_hz)", min=0.01, max=1.0, live=True),
    Param("accel_time", 0.1, "acceleration limit: seconds to reach the allowed max velocity from "
          "rest (a_max = max_velocity x max_velocity_scale / accel_time); 0 = no limit (s)",
          min=0.0, max=10.0, live=True),
    Param("feedback_timeout", 0.25, "joint feedback older than this is lost: stop publishing "
          "joint states, soft-stop, report ERROR (s; backends that report feedback age)",
          min=0.01, max=10.0),
    Param("limit_mode", "clip", "commands outside the joint limits: clip into them or reject",
          choices=LIMIT_MODES, live=True),
    Param("interpolation", "linear", "upsampling of commands to the driver rate (a change holds "
          "position until the next command)", choices=INTERPOLATION_MODES, live=True),
    Param("command_period", 1.0 / 30.0, "nominal command period for interpolation (s)",
          min=0.001, max=1.0, live=True),
    AUTOSTART,
    Param("auto_enable", True, "enable the motors on activation (read at each activation)", live=True),
    Param("disable_on_shutdown", False, "disable the motors after holding position on cleanup "
          "(read at each cleanup)", live=True),
    Param("publish_agilex_topics", False,
          "also publish per-arm JointState on /puppet/joint_left|right (Agilex cobot_magic names)"),
    Param("read_leaders", False, "publish the leader arms on /master/joint_states (piper only)"),
    Param("diagnostics_period", 1.0, "period of /diagnostics (s)", min=0.05, max=60.0, live=True),
]

STATE_HISTORY = 100  # joint-state publishers' keep-last depth (see __init__)
RATE_WARN_FRACTION = 0.9   # achieved tick rate below this fraction of rate_hz: WARN
LIMIT_PARAMS = ("max_velocity_scale", "accel_time")   # live: the safety filter's step limits
INTERP_PARAMS = ("interpolation", "command_period")   # live: a new interpolator

AGILEX_JOINT_NAMES = [f"joint{i}" for i in range(ARM_JOINTS + 1)]   # cobot_magic: joint0..joint6


class ArmDriverNode(ManagedNode):
    """Managed driver: configure connects the backend, activate enables and ticks, deactivate
    holds, cleanup releases. `backend` (an instance) replaces building one from the parameters."""

    def __init__(self, backend: ArmBackend | None = None, **kwargs):
        super().__init__("arm_driver", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._apply)
        self.backend_class = backend_class(self.p["backend"])
        # Read-only, so merging them into the live dict loses no update.
        self.p.update(declare_parameters(self, self.backend_class.PARAMS,
                                         check=self.backend_class.check_params))
        self.calibration = load_calibration(self.p["calibration"])
        self._injected_backend = backend
        self.backend: ArmBackend | None = None
        self._group = MutuallyExclusiveCallbackGroup()
        self._lock = threading.RLock()
        # Reliable keep-last: a deep history lets a lagging subscriber (the recorder on a busy
        # machine) catch up instead of losing states; 100 is 0.5 s at 200 Hz.
        self.state_pub = self.create_publisher(JointState, TOPICS["joint_states"], STATE_HISTORY)
        self.leader_pubs: dict = {}      # created on configure when the backend reads leaders
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
        self.create_service(Trigger, SERVICES["soft_stop"], self._srv_soft_stop,
                            callback_group=self._group)
        self.create_service(Trigger, SERVICES["release_emergency_stop"], self._srv_release_estop,
                            callback_group=self._group)
        # Latched: a node that starts later (the executor) still learns the state.
        self.enabled_pub = self.create_publisher(Bool, TOPICS["arm_enabled"], LATCHED)
        self._published_enabled: bool | None = None
        self.diag = DiagnosticsPublisher(self)
        self.safety: SafetyFilter | None = None
        self.watchdog = Watchdog(self.p["command_timeout"])
        self.interp = self._make_interpolator()
        self.active = False               # lifecycle state active: commands are executed
        self.enabled = False
        self.estopped = False
        self.soft_stopped = ""            # reason of the active soft stop ("" = none)
        self.ignored_commands = 0
        self._holding = False
        self.read_errors = 0
        self.write_errors = 0
        self.callback_errors = 0
        self.ticks = 0
        self.last_state = None
        self.last_error = ""
        self.feedback_lost = False
        self.feedback_losses = 0
        self.stale_states_dropped = 0
        self.states_published = 0
        self._last_state_stamp_ns: int | None = None
        self._rate_window: tuple[float, int] | None = None   # (node time s, ticks) at window start
        self.achieved_rate_hz: float | None = None
        self._tick_timer = None
        self._diag_timer = None
        self.start(self.p["autostart"])

    # -- lifecycle -------------------------------------------------------------------------------
    def configure(self) -> None:
        """Create and connect the backend; the safety filter starts from the measured state.
        No command reaches the arm before activate()."""
        backend = self._injected_backend or self.backend_class.from_params(self.p, self.calibration)
        limits = backend.limits
        with self._lock:
            self.safety = SafetyFilter(limits, self._max_step(limits), self.p["limit_mode"],
                                       on_reject=self._log_reject,
                                       max_step_change=self._max_step_change(limits))
            self.backend = backend     # set first: a failed connect is undone by cleanup()
            backend.connect()
            state = backend.read()
            self.last_state = state
            self.safety.reset(state.positions)
            self.interp.reset(None)
        if self.p["read_leaders"] and callable(getattr(backend, "read_leader", None)):
            self.leader_pubs = {"": self.create_publisher(JointState, TOPICS["leader_joint_states"],
                                                          STATE_HISTORY)}
            if self.p["publish_agilex_topics"]:
                for s in ("left", "right"):
                    self.leader_pubs[s] = self.create_publisher(JointState, f"/master/joint_{s}",
                                                                STATE_HISTORY)
        self.get_logger().info(
            f"connected backend '{self.p['backend']}' (calibration {self.calibration.source}); "
            f"driver {self.p['rate_hz']:.0f} Hz, watchdog {self.p['command_timeout']:.2f} s")

    def activate(self) -> None:
        """Enable the motors (auto_enable), then read, command and report on timers."""
        with self._lock:
            self.active = True
            if self.p["auto_enable"]:
                self._enable()
            self._announce_enabled()
        self._tick_timer = self.create_timer(1.0 / self.p["rate_hz"], self._tick,
                                             callback_group=self._group)
        self._start_diagnostics()

    def deactivate(self) -> None:
        """Stop the timers and hold the last safe position; commands are ignored until activate."""
        for timer in (self._tick_timer, self._diag_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._tick_timer = self._diag_timer = None
        with self._lock:
            was_executing = self.executing
            self.active = False
            self.watchdog.clear()
            if self.safety is not None:
                self.interp.reset(None)
            if was_executing:
                try:
                    self.backend.write(self.safety.hold())
                except Exception as exc:  # noqa: BLE001 - still inactive; report it
                    self.write_errors += 1
                    self.last_error = str(exc)
                    self.get_logger().error(f"holding position on deactivate failed: {exc}")
            self._announce_enabled()

    def cleanup(self) -> None:
        """Hold position, optionally disable, release the device."""
        with self._lock:
            self.active = False
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
                self.safety = None
                self.enabled = False
                self._announce_enabled()
        for pub in self.leader_pubs.values():
            self.destroy_publisher(pub)
        self.leader_pubs = {}

    # -- live parameters -------------------------------------------------------------------------
    def _max_step(self, limits):
        return max_step_from_limits(limits, self.p["rate_hz"], self.p["max_velocity_scale"])

    def _max_step_change(self, limits):
        return max_step_change_from_limits(limits, self.p["rate_hz"], self.p["max_velocity_scale"],
                                           self.p["accel_time"])

    def _make_interpolator(self) -> CommandInterpolator:
        return CommandInterpolator(self.p["interpolation"], self.p["command_period"],
                                   max(self.p["command_period"], 0.2))

    def _apply(self, changed: dict) -> None:
        """Apply live parameters (already validated and stored in self.p)."""
        with self._lock:
            if "command_timeout" in changed:
                self.watchdog.timeout = float(changed["command_timeout"])
            if self.safety is not None:
                if any(k in changed for k in LIMIT_PARAMS):
                    self.safety.max_step = self._max_step(self.safety.limits)
                    self.safety.max_step_change = self._max_step_change(self.safety.limits)
                if "limit_mode" in changed:
                    self.safety.limit_mode = changed["limit_mode"]
            if any(k in changed for k in INTERP_PARAMS):
                # A new ramp from where the arm can stop: no jump, the next command resumes.
                self.interp = self._make_interpolator()
                if self.safety is not None and self.executing:
                    self.interp.reset(self.safety.stopping_point())
        if "diagnostics_period" in changed and self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._start_diagnostics()
        self.get_logger().info(f"parameters applied: {changed}")

    def _start_diagnostics(self) -> None:
        # Its own group: a slow backend that keeps the tick timer overdue must not starve the
        # health report that says so (shared state is guarded by self._lock).
        self._diag_timer = self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics,
                                             callback_group=MutuallyExclusiveCallbackGroup())

    # -- helpers ---------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _log_reject(self, reason: str, message: str) -> None:
        self.get_logger().warning(f"rejected command ({reason}): {message}",
                                  throttle_duration_sec=1.0)

    @property
    def executing(self) -> bool:
        """True when commands reach the arm: active, enabled, not e-stopped, not soft-stopped."""
        return self.active and self.enabled and not self.estopped and not self.soft_stopped

    def _announce_enabled(self, repeat: bool = False) -> None:
        """Publish /arm/enabled when it changed (the executor drops its plan on False), and with
        repeat=True also unchanged: a heartbeat every diagnostics period, so one lost message is
        corrected within a period (seen once in a soak: an e-stop the executor never heard)."""
        if not self.context.ok():   # shutting down after SIGINT/SIGTERM: nobody left to tell
            return
        if repeat or self.executing != self._published_enabled:
            self._published_enabled = self.executing
            self.enabled_pub.publish(Bool(data=self.executing))

    def _soft_stop(self, reason: str) -> None:
        """Hold the last safe position while powered; commands ignored until /arm/enable."""
        if self.soft_stopped or not self.enabled or self.estopped:
            return
        self.soft_stopped = reason
        self.interp.reset(self.safety.stopping_point())
        self.watchdog.clear()
        self.get_logger().error(f"soft stop ({reason}): holding position, commands ignored until "
                                f"{SERVICES['enable']}")
        self._announce_enabled()

    def _restart_from_measured(self) -> None:
        state = self.backend.read()
        self.last_state = state
        self.safety.reset(state.positions)
        self.interp.reset(None)
        self.watchdog.clear()
        self._holding = False

    def _enable(self) -> None:
        if self.estopped:
            raise RuntimeError(f"emergency stop is active: call {SERVICES['release_emergency_stop']} "
                               "first (an explicit operator action; on Piper arms it cuts motor "
                               "power, so support the arms)")
        if self.feedback_lost:
            raise RuntimeError("no joint feedback from the arms: cannot enable without a measured "
                               "position (check power and CAN)")
        self.backend.enable()
        self.enabled = True
        self.soft_stopped = ""
        self._restart_from_measured()
        self._announce_enabled()

    # -- callbacks -------------------------------------------------------------------------------
    def _guarded(self, what: str, callback, *args) -> None:
        """Run a callback; an unexpected exception is counted and logged, never kills the node."""
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - the driver must outlive any bad input
            self.callback_errors += 1
            self.last_error = f"{what}: {type(exc).__name__}: {exc}"
            self.get_logger().error(self.last_error, throttle_duration_sec=1.0)

    def _on_command(self, msg: JointState) -> None:
        self._guarded("command callback", self._handle_command, msg)

    def _handle_command(self, msg: JointState) -> None:
        with self._lock:
            if self.safety is None or not self.executing:
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
        self._guarded("tick", self._tick_once)

    def _tick_once(self) -> None:
        with self._lock:
            if self.backend is None:
                return
            self.ticks += 1
            now = self._now()
            self._measure_rate(now)
            now_msg = self.get_clock().now().to_msg()
            try:
                state = self.backend.read()
            except Exception as exc:  # noqa: BLE001 - keep ticking, report in diagnostics
                self.read_errors += 1
                self.last_error = str(exc)
                self.get_logger().error(f"backend read failed: {exc}", throttle_duration_sec=1.0)
                state = None
            if state is not None:
                self._check_feedback(state)
            if state is not None and not self.feedback_lost:
                self.last_state = state
                if state.stamp is not None:
                    # The backend's clock (sim time), rounded to the nanosecond it published.
                    now_msg = to_time_msg(state.stamp)
                self._publish_fresh_state(state, now_msg)
            if self.leader_pubs:
                leader = self.backend.read_leader()
                if leader is not None:
                    self._publish_leader(leader, now_msg)
            if not self.executing:
                return
            if self.watchdog.check(now) and not self._holding:
                self._holding = True
                self.get_logger().warning(
                    f"watchdog: no command for {self.watchdog.age(now):.2f} s "
                    f"(> {self.watchdog.timeout:.2f} s), holding position")
                self.interp.reset(self.safety.stopping_point())
            target = self.interp.sample(now)
            if target is None:
                return
            out = self.safety.step(target).position
            try:
                self.backend.write(out)
            except Exception as exc:  # noqa: BLE001
                self.write_errors += 1
                self.last_error = str(exc)
                self.get_logger().error(f"backend write failed: {exc}", throttle_duration_sec=1.0)

    def _measure_rate(self, now: float) -> None:
        """Achieved tick rate over windows of about one second of node time."""
        if self._rate_window is None or now < self._rate_window[0]:   # first tick, or clock reset
            self._rate_window = (now, self.ticks)
            return
        elapsed = now - self._rate_window[0]
        if elapsed >= 1.0:
            self.achieved_rate_hz = (self.ticks - self._rate_window[1]) / elapsed
            self._rate_window = (now, self.ticks)

    def _check_feedback(self, state) -> None:
        """Feedback older than feedback_timeout: lost (soft stop, no states); back: resume."""
        age = state.feedback_age
        lost = age is not None and age > self.p["feedback_timeout"]
        if lost and not self.feedback_lost:
            self.feedback_lost = True
            self.feedback_losses += 1
            self.last_error = (f"no joint feedback for {age:.2f} s (> feedback_timeout "
                               f"{self.p['feedback_timeout']:.2f} s)")
            self.get_logger().error(self.last_error + ": joint states withheld")
            self._soft_stop("joint feedback lost")
        elif not lost and self.feedback_lost:
            self.feedback_lost = False
            self.get_logger().warning(f"joint feedback is back: publishing states; call "
                                      f"{SERVICES['enable']} to resume commands")

    def _publish_fresh_state(self, state, stamp) -> None:
        """Publish a state once: a backend reading with the same stamp is not new data (a stamp
        that goes back is a clock reset, e.g. a new sim episode, and is published)."""
        stamp_ns = to_ns(stamp)
        if state.stamp is not None and stamp_ns == self._last_state_stamp_ns:
            self.stale_states_dropped += 1
            return
        self._last_state_stamp_ns = stamp_ns
        self.states_published += 1
        self._publish_state(state.positions, state.velocities, state.efforts, stamp)

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
        self.leader_pubs[""].publish(msg)
        for side, sl in (("left", LEFT_SLICE), ("right", RIGHT_SLICE)):
            pub = self.leader_pubs.get(side)
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
            try:
                if self.executing:
                    self.backend.write(self.safety.hold())
                self.backend.disable()
            finally:
                self.enabled = False
                self.watchdog.clear()
                self._announce_enabled()
        return self._service(response, action, "disabled")

    def _srv_soft_stop(self, request, response):
        def action():
            if self.estopped:
                raise RuntimeError("emergency stop is active (stronger than a soft stop)")
            if not self.enabled:
                raise RuntimeError("arms are disabled: nothing to hold")
            self._soft_stop("requested on " + SERVICES["soft_stop"])
        return self._service(response, action,
                             f"soft stop: holding position while powered; call {SERVICES['enable']} "
                             "to resume")

    def _srv_estop(self, request, response):
        def action():
            # Stopped in the driver first: even if the device call fails, nothing more is sent.
            self.estopped = True
            self.watchdog.clear()
            self.interp.reset(None)
            self._announce_enabled()
            self.get_logger().warning(f"EMERGENCY STOP: commands ignored; "
                                      f"{SERVICES['release_emergency_stop']} then "
                                      f"{SERVICES['enable']} to resume")
            self.backend.emergency_stop()
        return self._service(response, action,
                             f"emergency stop; call {SERVICES['release_emergency_stop']}, then "
                             f"{SERVICES['enable']} to resume")

    def _srv_release_estop(self, request, response):
        def action():
            # Also without a driver e-stop: an arm may report a hardware stop of its own (a stop
            # button, or stopped before the driver started); the backend releases only those.
            self.get_logger().warning(
                "releasing the emergency stop on operator request: the backend's release may cut "
                "motor power (Piper: the arms fall); motors stay off until /arm/enable")
            self.backend.release_emergency_stop()
            self.estopped = False
            self.enabled = False
            self.watchdog.clear()
            self._announce_enabled()
        return self._service(response, action,
                             f"emergency stop released; arms disabled until {SERVICES['enable']}")

    def _publish_diagnostics(self) -> None:
        self._guarded("diagnostics", self._publish_diagnostics_once)

    def _publish_diagnostics_once(self) -> None:
        with self._lock:
            self._announce_enabled(repeat=True)
            if self.safety is None:
                return
            counts = self.safety.summary()
            rejected = sum(counts[k] for k in ("wrong_size", "wrong_names", "non_finite", "out_of_limits"))
            level, message = 0, "ok"
            rate_low = (self.achieved_rate_hz is not None
                        and self.achieved_rate_hz < RATE_WARN_FRACTION * self.p["rate_hz"])
            if self.estopped:
                level, message = 2, "emergency stop"
            elif self.feedback_lost:
                level, message = 2, self.last_error
            elif self.read_errors and self.last_error:
                level, message = 2, f"backend error: {self.last_error}"
            elif self.soft_stopped:
                level, message = 2, f"soft stop ({self.soft_stopped}): holding position"
            elif self.watchdog.tripped:
                level, message = 1, "watchdog: commands stale, holding position"
            elif not self.enabled:
                level, message = 1, "disabled"
            elif rate_low:
                level, message = 1, (f"driver rate {self.achieved_rate_hz:.1f} Hz below "
                                     f"{RATE_WARN_FRACTION:.0%} of {self.p['rate_hz']:.0f} Hz")
            elif rejected:
                level, message = 1, f"{rejected} commands rejected"
            values = {**counts, "ignored_commands": self.ignored_commands,
                      "watchdog_trips": self.watchdog.trips, "enabled": self.enabled,
                      "emergency_stop": self.estopped, "soft_stop": self.soft_stopped or "no",
                      "read_errors": self.read_errors, "write_errors": self.write_errors,
                      "callback_errors": self.callback_errors, "ticks": self.ticks,
                      "rate_hz": self.p["rate_hz"],
                      "achieved_rate_hz": ("n/a" if self.achieved_rate_hz is None
                                           else round(self.achieved_rate_hz, 1)),
                      "feedback_losses": self.feedback_losses,
                      "states_published": self.states_published,
                      "stale_states_dropped": self.stale_states_dropped,
                      "backend": self.p["backend"]}
            items = [status("arm_driver: safety", level, message, values)]
            for d in self.backend.diagnostics() if self.backend is not None else []:
                items.append(status(f"arm_driver: {d.name}", d.level, d.message, d.values))
        self.diag.publish(*items)


def main(args=None):
    return run_node(lambda: ArmDriverNode(), args)


if __name__ == "__main__":
    main()
