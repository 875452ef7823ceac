"""Teleop expert node: the scripted expert of the simulated tasks plays the leader arms.

It waits for the simulation's object poses (/sim/object_poses, published by the sim arm backend),
plans one scripted episode from them (motus_ros.sim.scripted_expert) and publishes the 14 leader
joint targets as sensor_msgs/JointState on /master/joint_states at `rate_hz` of simulated time
(run it with use_sim_time). The sim teleop graph remaps the driver's command topic to
/master/joint_states, so the follower arms mirror this leader as on a real Aloha and the recording
path is the one of real teleoperation. A new episode of the sim (/sim/episode, sent on every
/sim/reset) restarts the expert; after the script ends it keeps publishing its last targets and
sends True once on ~/episode_done. Live parameters: rate_hz, episode_steps (from the next
episode's plan) and diagnostics_period_s; the task and topics are read-only.
"""
from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, UInt32

from motus_ros.ros.diagnostics import OK, WARN, DiagnosticsPublisher, status
from motus_ros.layout import CONTROL_RATE_HZ, JOINT_NAMES, TOPICS
from motus_ros.ros.run import run_node
from motus_ros.params import Param, declare_parameters
from motus_ros.ros.qos import LATCHED
from motus_ros.sim.scripted_expert import EPISODE_STEPS, ScriptedExpert
from motus_ros.sim.world import TASKS

PARAMS = [
    Param("task", "transfer_cube", "task the expert performs (must match the sim's sim_task)",
          choices=tuple(TASKS)),
    Param("rate_hz", CONTROL_RATE_HZ, "leader joint state rate, in simulated time (Hz)",
          min=1.0, max=500.0, live=True),
    Param("episode_steps", EPISODE_STEPS, "length of the script in 0.02 s control steps (a change "
          "applies from the next episode)", min=1, max=100000, live=True),
    Param("object_poses_topic", "/sim/object_poses", "object poses from the simulation"),
    Param("episode_topic", TOPICS["sim_episode"], "episode number from the simulation (restarts the expert)"),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics reports", min=0.05, max=600.0,
          live=True),
]


class TeleopExpertNode(Node):
    """Publishes the scripted expert's joint targets as leader joint states."""

    def __init__(self, **kwargs):
        super().__init__("teleop_expert", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_params)
        self.objects = TASKS[self.p["task"]].objects
        self._lock = threading.Lock()
        self.expert: ScriptedExpert | None = None
        self.t0_ns = 0
        self.episode: int | None = None
        self._need_plan = True
        self._done_sent = False
        self.published = 0
        self.episodes_started = 0
        self.last_error = ""
        # Deep keep-last history so a lagging recorder catches up instead of losing states.
        self.leader_pub = self.create_publisher(JointState, TOPICS["leader_joint_states"], 100)
        self.done_pub = self.create_publisher(Bool, "~/episode_done", 10)
        self.create_subscription(UInt32, self.p["episode_topic"], self._on_episode, LATCHED)
        self.create_subscription(PoseArray, self.p["object_poses_topic"], self._on_poses, 10)
        self.diag = DiagnosticsPublisher(self)
        self._tick_timer = self.create_timer(1.0 / self.p["rate_hz"], self._tick)
        self._diag_timer = self.create_timer(self.p["diagnostics_period_s"], self._publish_diagnostics)

    def _on_params(self, changed: dict) -> None:
        # episode_steps is read when the next episode is planned.
        if "rate_hz" in changed:
            self._tick_timer.timer_period_ns = int(1e9 / changed["rate_hz"])
        if "diagnostics_period_s" in changed:
            self._diag_timer.timer_period_ns = int(changed["diagnostics_period_s"] * 1e9)

    def _on_episode(self, msg: UInt32) -> None:
        with self._lock:
            if self.episode is None and self.expert is not None:
                self.episode = int(msg.data)  # already planned from this episode's poses
                return
            if msg.data != self.episode:
                self.episode = int(msg.data)
                self._need_plan = True  # plan from the next object poses of this episode

    def _on_poses(self, msg: PoseArray) -> None:
        with self._lock:
            if not self._need_plan:
                return
            self._need_plan = False
        if len(msg.poses) != len(self.objects):
            self.last_error = (f"{self.p['object_poses_topic']}: got {len(msg.poses)} poses, expected "
                               f"{len(self.objects)} {list(self.objects)} for task {self.p['task']}")
            self.get_logger().error(self.last_error, throttle_duration_sec=5.0)
            with self._lock:
                self._need_plan = True
            return
        poses = {name: np.array([p.position.x, p.position.y, p.position.z, p.orientation.w,
                                 p.orientation.x, p.orientation.y, p.orientation.z])
                 for name, p in zip(self.objects, msg.poses)}
        expert = ScriptedExpert(self.p["task"], poses, self.p["episode_steps"])
        with self._lock:
            self.expert = expert
            # Start the script now (after planning): the arms wait at the start pose meanwhile.
            self.t0_ns = self.get_clock().now().nanoseconds
            self._done_sent = False
            self.episodes_started += 1
        where = ", ".join(f"{k} ({v[0]:.3f}, {v[1]:.3f})" for k, v in poses.items())
        self.get_logger().info(f"episode {self.episode}: scripted {self.p['task']} from {where}")

    def _tick(self) -> None:
        with self._lock:
            expert, t0 = self.expert, self.t0_ns
        if expert is None:
            return
        now = self.get_clock().now()
        t = (now.nanoseconds - t0) * 1e-9
        msg = JointState()
        msg.header.stamp = now.to_msg()
        msg.name = list(JOINT_NAMES)
        msg.position = [float(v) for v in expert.action_at(max(t, 0.0))]
        self.leader_pub.publish(msg)
        self.published += 1
        if expert.done(t) and not self._done_sent:
            self._done_sent = True
            self.done_pub.publish(Bool(data=True))

    def _publish_diagnostics(self) -> None:
        with self._lock:
            planned = self.expert is not None
        level = WARN if self.last_error or not planned else OK
        message = self.last_error or ("publishing" if planned else "waiting for object poses")
        self.diag.publish(status("teleop_expert", level, message, {
            "task": self.p["task"], "episode": self.episode if self.episode is not None else -1,
            "episodes_started": self.episodes_started, "published": self.published}))

    def close(self) -> None:
        """Nothing to release (no devices)."""


def main(args=None):
    return run_node(lambda: TeleopExpertNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
