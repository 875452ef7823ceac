"""Chunk executor: streams ActionChunks to the arm driver as JointState commands at the control rate.

A thin ROS shell around motus_ros.execution.executor.ChunkExecutor (the core `motus-ros eval
--in-process` runs too): it drops rows already in the past (given the chunk's observation stamp),
blends overlapping chunks (replace | temporal_ensemble | rtc), limits every tick's change to a
maximum step, and publishes per-chunk statistics on /motus/execution_stats and /diagnostics. Timers
run on the node clock, so with use_sim_time the executor follows the simulation's /clock. Joint
states are read by name in any order (other joints ignored); refused ones are counted.

Faults it handles: a chunk stamped in the future beyond max_future_stamp_s is rejected and
counted (it would otherwise lock out every later chunk as out of order); when no chunk arrived
for policy_timeout_s it stops following the plan, holds the last command and reports ERROR; the
plan is dropped on /chunk_executor/reset, when the driver stops executing commands (/arm/enabled
false: disable, soft stop, e-stop) and at every new sim episode (/sim/episode), and chunks observed
before that moment (for an episode: before its /sim/episode_start stamp) are then refused (counted
as chunks_before_reset), so an episode starts from chunks of its own scene without waiting for the
old plan to run out.

Parameters: control_rate_hz and diagnostics_period are read-only; the others are live
(`ros2 param set /chunk_executor strategy replace` takes effect from the next chunk).
"""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header, UInt32
from std_srvs.srv import Trigger

from motus_msgs.msg import ActionChunk, ChunkExecutionStats, InferenceMode
from motus_ros.ros.diagnostics import DiagnosticsPublisher, status
from motus_ros.execution.chunks import STRATEGIES, ChunkError, make_chunk
from motus_ros.execution.executor import ChunkExecutor, ExecutorSettings
from motus_ros.layout import JOINT_NAMES, SERVICES, TOPICS, LayoutError
from motus_ros.ros.run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.policy.sync import state_vector
from motus_ros.ros.qos import LATCHED
from motus_ros.stamps import to_seconds

_D = ExecutorSettings()   # defaults, shared with the in-process eval
PARAMS = [
    # read-only: the timer rate (the step limits are per tick of it) and the diagnostics period
    Param("control_rate_hz", _D.control_rate_hz, "command rate (Hz)", min=1.0, max=1000.0),
    Param("diagnostics_period", 1.0, "period of /diagnostics (s)", min=0.05, max=60.0),
    # live: applied from the next chunk (blending) or the next tick (limits, timeouts)
    Param("strategy", _D.strategy, "blending of overlapping chunks", choices=STRATEGIES, live=True),
    Param("ensemble_decay", _D.ensemble_decay,
          "temporal_ensemble: m in w_i = exp(-m i), i = 0 oldest (ACT: 0.01)", min=0.0, max=10.0,
          live=True),
    Param("rtc_freeze_margin_steps", _D.rtc_freeze_margin_steps,
          "rtc: rows after now that keep the old plan (steps executing while the chunk is applied)",
          min=0, max=100, live=True),
    Param("rtc_blend_steps", _D.rtc_blend_steps,
          "rtc: rows of soft blending after the frozen ones (0 = whole overlap)", min=0, max=1000,
          live=True),
    Param("lookahead", _D.lookahead, "rows due before now + lookahead are dropped as past (s)",
          min=0.0, max=5.0, live=True),
    Param("max_joint_step", _D.max_joint_step, "largest change of an arm joint per tick (rad)",
          min=1e-4, max=3.2, live=True),
    Param("max_gripper_step", _D.max_gripper_step, "largest change of a gripper per tick (gripper unit)",
          min=1e-6, max=10.0, live=True),
    Param("hold_when_exhausted", _D.hold_when_exhausted,
          "keep commanding the last target when the plan ran out", live=True),
    Param("max_future_stamp_s", _D.max_future_stamp_s, "chunks stamped later than now + this are "
          "rejected as a clock error (s)", min=0.0, max=60.0, live=True),
    Param("policy_timeout_s", _D.policy_timeout_s, "no chunk for this long: stop following the plan, "
          "hold the last command, report ERROR (s, node clock)", min=0.05, max=60.0, live=True),
]
CONTROL_MODES = (InferenceMode.VLA, InferenceMode.JOINT)


def _check_settings(values: dict) -> None:
    """Refuse parameter values the executor cannot run with (ParameterError naming the field)."""
    try:
        ExecutorSettings.from_params(values)
    except ValueError as exc:
        raise ParameterError(f"parameter {exc}") from exc


class ChunkExecutorNode(Node):

    def __init__(self, **kwargs):
        super().__init__("chunk_executor", **kwargs)
        # Parameter sets arrive on the parameter services' callback group, concurrently with the
        # callbacks below under a multi-threaded executor: one lock keeps the core consistent.
        self._lock = threading.Lock()
        self.p = declare_parameters(self, PARAMS, on_change=self._apply_params, check=_check_settings)
        self.core = ChunkExecutor(ExecutorSettings.from_params(self.p), on_event=self._on_event)
        group = MutuallyExclusiveCallbackGroup()
        self.cmd_pub = self.create_publisher(JointState, TOPICS["joint_command"], 10)
        self.stats_pub = self.create_publisher(ChunkExecutionStats, TOPICS["execution_stats"], 10)
        self.diag = DiagnosticsPublisher(self)
        self.create_subscription(ActionChunk, TOPICS["action_chunk"], self._on_chunk, 10,
                                 callback_group=group)
        self.create_subscription(JointState, TOPICS["joint_states"], self._on_state, 10,
                                 callback_group=group)
        self.create_subscription(Bool, TOPICS["arm_enabled"], self._on_arm_enabled, LATCHED,
                                 callback_group=group)
        self.create_subscription(UInt32, TOPICS["sim_episode"], self._on_sim_episode, LATCHED,
                                 callback_group=group)
        self.create_subscription(Header, TOPICS["episode_start"], self._on_episode_start, LATCHED,
                                 callback_group=group)
        self.create_service(Trigger, SERVICES["executor_reset"], self._srv_reset, callback_group=group)
        self.create_timer(1.0 / self.p["control_rate_hz"], self._tick, callback_group=group)
        self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics, callback_group=group)
        self.measured: np.ndarray | None = None
        self.episode_start: float | None = None   # /sim/episode_start (s): the newest episode's start
        self.states_rejected: Counter[str] = Counter()

    def _apply_params(self, changed: dict) -> None:
        with self._lock:
            self.core.configure(**changed)   # only live parameters get here, validated
        self.get_logger().info("applied " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))

    def _on_event(self, kind: str, text: str) -> None:
        # Two call sites: rclpy caches a call site's severity and raises if one site logs at two.
        if kind == "policy_timeout":
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)

    def reset(self, why: str) -> None:
        """Drop the plan and the last command: the next chunk starts from the measured state."""
        with self._lock:
            self.core.reset(self._now())
        self.get_logger().info(f"plan dropped: {why}")

    def _on_arm_enabled(self, msg: Bool) -> None:
        with self._lock:
            dropped = self.core.arm_enabled(msg.data, self._now())
        if dropped:
            self.get_logger().info("plan dropped: the arm driver stopped executing commands "
                                   "(disable, soft stop or e-stop)")

    def _on_sim_episode(self, msg: UInt32) -> None:
        with self._lock:
            dropped = self.core.episode(msg.data, self._now(), self.episode_start)
        if dropped:
            self.get_logger().info(f"plan dropped: new sim episode {msg.data}")

    def _on_episode_start(self, msg: Header) -> None:
        self.episode_start = to_seconds(msg.stamp)

    def _srv_reset(self, request, response):
        self.reset(f"requested on {SERVICES['executor_reset']}")
        response.success, response.message = True, "plan dropped; waiting for the next chunk"
        return response

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_state(self, msg: JointState) -> None:
        # Any order, other joints ignored (as the policy reads states); refused states are counted.
        try:
            self.measured = state_vector(msg.name, msg.position)
        except LayoutError as exc:
            self.states_rejected[exc.reason] += 1
            self.get_logger().warning(f"ignored joint state ({exc.reason}): {exc}", throttle_duration_sec=1.0)

    def _reject(self, reason: str, text: str) -> None:
        self.get_logger().warning(f"rejected chunk ({reason}): {text}", throttle_duration_sec=1.0)

    def _on_chunk(self, msg: ActionChunk) -> None:
        if msg.mode.mode not in CONTROL_MODES:
            with self._lock:
                self.core.reject("not_a_control_mode")
            self._reject("not_a_control_mode", f"chunk {msg.chunk_id}: mode {msg.mode.mode} does not "
                         f"command the arm (expected VLA={InferenceMode.VLA} or JOINT={InferenceMode.JOINT})")
            return
        stamp = to_seconds(msg.header.stamp)
        try:
            chunk = make_chunk(msg.joint_names, msg.control_period, msg.horizon, msg.positions,
                               stamp, msg.chunk_id)
        except ChunkError as exc:
            with self._lock:
                self.core.reject(exc.reason)
            self._reject(exc.reason, f"chunk {msg.chunk_id}: {exc}")
            return
        now = self._now()
        with self._lock:
            stats = self.core.add(chunk, now)
            max_future = self.core.settings.max_future_stamp_s
        if stats.reason == "before_reset":
            self.get_logger().info(f"ignored chunk {msg.chunk_id}: observed at {stamp:.3f} s, before the "
                                   "last reset (it belongs to the dropped plan)", throttle_duration_sec=1.0)
        elif not stats.accepted:
            detail = {"future_stamp": f"more than max_future_stamp_s {max_future:g} s ahead (clock error?)",
                      "out_of_order": "older than the newest accepted chunk"}.get(
                stats.reason, f"{stats.dropped_steps} of {chunk.horizon} rows in the past")
            self._reject(stats.reason, f"chunk {msg.chunk_id}: stamp {stamp:.3f} s, now {now:.3f} s: "
                                       + detail)
        out = ChunkExecutionStats(chunk_id=stats.chunk_id, latency=float(stats.latency),
                                  dropped_steps=stats.dropped_steps, used_steps=stats.used_steps,
                                  blend_discontinuity=float(stats.blend_discontinuity),
                                  strategy=stats.strategy)
        out.header.stamp = self.get_clock().now().to_msg()
        self.stats_pub.publish(out)

    def _tick(self) -> None:
        with self._lock:
            command = self.core.tick(self._now(), self.measured)
        if command is None:
            return
        msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in command])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.cmd_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            level, message, values = self.core.status(self._now())
        values.update({f"rejected_states_{k}": v for k, v in sorted(self.states_rejected.items())})
        self.diag.publish(status("chunk_executor", level, message, values))


def main(args=None):
    return run_node(lambda: ChunkExecutorNode(), args)


if __name__ == "__main__":
    main()
