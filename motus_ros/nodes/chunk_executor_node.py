"""Chunk executor: streams ActionChunks to the arm driver as JointState commands at the control rate.

Drops rows that are already in the past (given the chunk's observation stamp), blends
overlapping chunks (replace | temporal_ensemble | rtc), limits every tick's change to a maximum
step, and publishes per-chunk statistics on /motus/execution_stats and /diagnostics. Timers run
on the node clock, so with use_sim_time the executor follows the simulation's /clock.

Faults it handles: a chunk stamped in the future beyond max_future_stamp_s is rejected and
counted (it would otherwise lock out every later chunk as out of order); when no chunk arrived
for policy_timeout_s it stops following the plan, holds the last command and reports ERROR; the
plan is dropped on /chunk_executor/reset, when the driver stops executing commands (/arm/enabled
false: disable, soft stop, e-stop) and at every new sim episode (/sim/episode).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, UInt32
from std_srvs.srv import Trigger

from motus_msgs.msg import ActionChunk, ChunkExecutionStats, InferenceMode
from motus_ros.diagnostics import DiagnosticsPublisher, status
from motus_ros.execution.chunks import (ACT_ENSEMBLE_DECAY, STRATEGIES, ChunkError, ChunkScheduler,
                                        limit_step, make_chunk)
from motus_ros.layout import CONTROL_RATE_HZ, DOF, GRIPPER_INDICES, JOINT_NAMES, SERVICES, TOPICS
from motus_ros.nodes._run import run_node
from motus_ros.params import Param, declare_parameters
from motus_ros.qos import LATCHED

PARAMS = [
    Param("control_rate_hz", CONTROL_RATE_HZ, "command rate (Hz)", min=1.0, max=1000.0),
    Param("strategy", "rtc", "blending of overlapping chunks", choices=STRATEGIES),
    Param("ensemble_decay", ACT_ENSEMBLE_DECAY,
          "temporal_ensemble: m in w_i = exp(-m i), i = 0 oldest (ACT: 0.01)", min=0.0, max=10.0),
    Param("rtc_freeze_margin_steps", 1,
          "rtc: rows after now that keep the old plan (steps executing while the chunk is applied)",
          min=0, max=100),
    Param("rtc_blend_steps", 0, "rtc: rows of soft blending after the frozen ones (0 = whole overlap)",
          min=0, max=1000),
    Param("lookahead", 0.0, "rows due before now + lookahead are dropped as past (s)", min=0.0, max=5.0),
    Param("max_joint_step", 0.1, "largest change of an arm joint per tick (rad)", min=1e-4, max=3.2),
    Param("max_gripper_step", 0.1, "largest change of a gripper per tick (gripper unit)",
          min=1e-6, max=10.0),
    Param("hold_when_exhausted", True, "keep commanding the last target when the plan ran out"),
    Param("max_future_stamp_s", 0.5, "chunks stamped later than now + this are rejected as a clock "
          "error (s)", min=0.0, max=60.0),
    Param("policy_timeout_s", 1.0, "no chunk for this long: stop following the plan, hold the last "
          "command, report ERROR (s, node clock)", min=0.05, max=60.0),
    Param("diagnostics_period", 1.0, "period of /diagnostics (s)", min=0.05, max=60.0),
]
CONTROL_MODES = (InferenceMode.VLA, InferenceMode.JOINT)


class ChunkExecutorNode(Node):

    def __init__(self, **kwargs):
        super().__init__("chunk_executor", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.scheduler = ChunkScheduler(self.p["strategy"], self.p["ensemble_decay"],
                                        self.p["rtc_freeze_margin_steps"], self.p["rtc_blend_steps"],
                                        self.p["lookahead"],
                                        max_future_stamp=self.p["max_future_stamp_s"])
        self.max_step = np.full(DOF, self.p["max_joint_step"])
        self.max_step[list(GRIPPER_INDICES)] = self.p["max_gripper_step"]
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
        self.create_service(Trigger, SERVICES["executor_reset"], self._srv_reset, callback_group=group)
        self.create_timer(1.0 / self.p["control_rate_hz"], self._tick, callback_group=group)
        self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics, callback_group=group)
        self.measured: np.ndarray | None = None
        self.last_command: np.ndarray | None = None
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.commands = 0
        self.starved_ticks = 0
        self.last_stats: ChunkExecutionStats | None = None
        self.max_discontinuity = 0.0
        self.arm_executing: bool | None = None   # from /arm/enabled; None: no driver heard yet
        self.sim_episode: int | None = None
        self.last_chunk_time: float | None = None   # node time of the newest accepted chunk
        self.policy_silent = False
        self.policy_timeouts = 0
        self.resets = 0

    def reset(self, why: str) -> None:
        """Drop the plan and the last command: the next chunk starts from the measured state."""
        self.scheduler.reset()
        self.last_command = None
        self.last_chunk_time = None
        self.policy_silent = False
        self.resets += 1
        self.get_logger().info(f"plan dropped: {why}")

    def _on_arm_enabled(self, msg: Bool) -> None:
        if self.arm_executing and not msg.data:
            self.reset("the arm driver stopped executing commands (disable, soft stop or e-stop)")
        self.arm_executing = bool(msg.data)

    def _on_sim_episode(self, msg: UInt32) -> None:
        if self.sim_episode is not None and msg.data != self.sim_episode:
            self.reset(f"new sim episode {msg.data}")
        self.sim_episode = int(msg.data)

    def _srv_reset(self, request, response):
        self.reset(f"requested on {SERVICES['executor_reset']}")
        response.success, response.message = True, "plan dropped; waiting for the next chunk"
        return response

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_state(self, msg: JointState) -> None:
        if list(msg.name) == list(JOINT_NAMES) and len(msg.position) == DOF:
            self.measured = np.asarray(msg.position, dtype=np.float64)

    def _reject(self, reason: str, text: str) -> None:
        self.rejected[reason] += 1
        self.get_logger().warning(f"rejected chunk ({reason}): {text}", throttle_duration_sec=1.0)

    def _on_chunk(self, msg: ActionChunk) -> None:
        if msg.mode.mode not in CONTROL_MODES:
            self._reject("not_a_control_mode", f"chunk {msg.chunk_id}: mode {msg.mode.mode} does not "
                         f"command the arm (expected VLA={InferenceMode.VLA} or JOINT={InferenceMode.JOINT})")
            return
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        try:
            chunk = make_chunk(msg.joint_names, msg.control_period, msg.horizon, msg.positions,
                               stamp, msg.chunk_id)
        except ChunkError as exc:
            self._reject(exc.reason, f"chunk {msg.chunk_id}: {exc}")
            return
        now = self._now()
        stats = self.scheduler.add(chunk, now)
        if not stats.accepted:
            detail = {"future_stamp": f"more than max_future_stamp_s "
                                      f"{self.p['max_future_stamp_s']:g} s ahead (clock error?)",
                      "out_of_order": "older than the newest accepted chunk"}.get(
                stats.reason, f"{stats.dropped_steps} of {chunk.horizon} rows in the past")
            self._reject(stats.reason, f"chunk {msg.chunk_id}: stamp {stamp:.3f} s, now {now:.3f} s: "
                                       + detail)
        else:
            self.accepted += 1
            self.last_chunk_time = now
            if self.policy_silent:
                self.policy_silent = False
                self.get_logger().info(f"chunks are back (chunk {msg.chunk_id}): following the plan")
            self.max_discontinuity = max(self.max_discontinuity, stats.blend_discontinuity)
        out = ChunkExecutionStats(chunk_id=stats.chunk_id, latency=float(stats.latency),
                                  dropped_steps=stats.dropped_steps, used_steps=stats.used_steps,
                                  blend_discontinuity=float(stats.blend_discontinuity),
                                  strategy=self.p["strategy"])
        out.header.stamp = self.get_clock().now().to_msg()
        self.last_stats = out
        self.stats_pub.publish(out)

    def _tick(self) -> None:
        now = self._now()
        if not self.scheduler.has_plan or self.arm_executing is False:
            return
        if self._policy_timed_out(now):
            if self.last_command is not None:   # hold: do not move further along a stale plan
                self._publish_command(self.last_command)
            return
        if self.scheduler.exhausted(now):
            self.starved_ticks += 1
            if not self.p["hold_when_exhausted"]:
                return
        target = self.scheduler.target(now)
        if target is None:
            return
        previous = self.last_command if self.last_command is not None else self.measured
        command = limit_step(previous, target, self.max_step)
        self.last_command = command
        self._publish_command(command)

    def _publish_command(self, command: np.ndarray) -> None:
        msg = JointState(name=list(JOINT_NAMES), position=[float(v) for v in command])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.cmd_pub.publish(msg)
        self.commands += 1

    def _policy_timed_out(self, now: float) -> bool:
        """True (and reported once) when the newest chunk is older than policy_timeout_s."""
        if self.last_chunk_time is None:
            return False
        if now < self.last_chunk_time:   # the clock went back (sim restart): start counting again
            self.last_chunk_time = now
        silent = now - self.last_chunk_time > self.p["policy_timeout_s"]
        if silent and not self.policy_silent:
            self.policy_timeouts += 1
            self.get_logger().error(
                f"no chunk from the policy for {now - self.last_chunk_time:.2f} s (> policy_timeout_s "
                f"{self.p['policy_timeout_s']:.2f} s): holding the last command")
        self.policy_silent = silent
        return silent

    def _publish_diagnostics(self) -> None:
        values = {"strategy": self.p["strategy"], "chunks_accepted": self.accepted,
                  "commands": self.commands, "starved_ticks": self.starved_ticks,
                  "policy_timeouts": self.policy_timeouts, "resets": self.resets,
                  "arm_executing": "unknown" if self.arm_executing is None else self.arm_executing,
                  "max_blend_discontinuity_rad": self.max_discontinuity,
                  **{f"rejected_{k}": v for k, v in sorted(self.rejected.items())}}
        if self.last_stats is not None:
            values.update(last_chunk_id=self.last_stats.chunk_id,
                          last_latency_s=self.last_stats.latency,
                          last_dropped_steps=self.last_stats.dropped_steps)
        if self.scheduler.latency_estimate is not None:
            values["latency_estimate_s"] = self.scheduler.latency_estimate
        level, message = 0, "ok"
        if not self.scheduler.has_plan:
            level, message = 0, "waiting for the first chunk"
        elif self.scheduler.exhausted(self._now()):
            level, message = 1, "plan exhausted: holding the last target"
        if self.rejected:
            level, message = 1, f"{sum(self.rejected.values())} chunks rejected"
        if self.arm_executing is False:
            level, message = 0, "arm not executing commands: plan dropped, waiting"
        elif self.policy_silent:
            age = self._now() - self.last_chunk_time
            level, message = 2, f"no chunk from the policy for {age:.1f} s: holding the last command"
        self.diag.publish(status("chunk_executor", level, message, values))


def main(args=None):
    return run_node(lambda: ChunkExecutorNode(), args)


if __name__ == "__main__":
    main()
