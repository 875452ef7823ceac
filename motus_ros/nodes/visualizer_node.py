"""Visualizer: action chunks and joint states -> RViz markers and a joint plot image.

Publishes on /motus/markers (visualization_msgs/MarkerArray, frame `world`): the predicted
gripper paths of the latest chunk (line strips, from forward kinematics of the robot's arms, see
motus_ros/viz/kinematics.py), the executed gripper paths of the last `history_s` seconds, and
spheres at the current gripper positions. On /motus/viz/joint_plot (sensor_msgs/Image) a plot of
predicted vs executed joints, at `plot_rate_hz` (0 disables it: matplotlib costs CPU).
Every parameter but `robot` is live (the arm bases rebuild the kinematics at once).
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from motus_msgs.msg import ActionChunk
from motus_ros import robots
from motus_ros.ros.images import numpy_to_image
from motus_ros.layout import TOPICS
from motus_ros.ros.run import run_node
from motus_ros.nodes.messages import chunk_actions
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.policy.sync import state_vector
from motus_ros.stamps import to_seconds
from motus_ros.viz.kinematics import make_kinematics

PLOT_TOPIC = "/motus/viz/joint_plot"
COLORS = {"left": (0.2, 0.5, 1.0), "right": (1.0, 0.35, 0.2)}

PARAMS = [
    Param("robot", "sim", "robot whose arm kinematics draw the paths (motus_ros/robots.py)",
          choices=robots.with_kinematics()),
    Param("left_base_xyz", [0.0, 0.3, 0.0], "left arm base position in world (m; real robots only)",
          live=True),
    Param("right_base_xyz", [0.0, -0.3, 0.0], "right arm base position in world (m; real robots only)",
          live=True),
    Param("frame_id", "world", "frame of the markers", live=True),
    Param("marker_rate_hz", 10.0, "marker publishing rate (Hz)", min=0.1, max=100.0, live=True),
    Param("plot_rate_hz", 1.0, "joint plot image rate (Hz); 0 disables", min=0.0, max=30.0, live=True),
    Param("history_s", 3.0, "seconds of executed trajectory shown", min=0.1, max=600.0, live=True),
    Param("line_width", 0.005, "marker line width (m)", min=0.0001, max=1.0, live=True),
]


def check_bases(values: dict) -> None:
    """ParameterError unless both arm bases are [x, y, z]."""
    for key in ("left_base_xyz", "right_base_xyz"):
        if len(values[key]) != 3:
            raise ParameterError(f"parameter '{key}': got {list(values[key])}, expected [x, y, z]")


class VisualizerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("visualizer", **kwargs)
        # Held while a parameter change is applied and while markers are built: a marker never
        # mixes a new frame_id with the old kinematics.
        self._settings_lock = threading.RLock()
        self.params = p = declare_parameters(self, PARAMS, on_change=self._on_params,
                                             check=check_bases, lock=self._settings_lock)
        self.kinematics = self._make_kinematics()
        self._lock = threading.Lock()
        self._chunk: tuple[float, float, np.ndarray] | None = None  # stamp, period, (H, 14)
        self._history: deque = deque()  # (stamp s, (14,) positions)
        self.marker_pub = self.create_publisher(MarkerArray, TOPICS["markers"], 2)
        self.plot_pub = self.create_publisher(Image, PLOT_TOPIC, 1)
        self.create_subscription(ActionChunk, TOPICS["action_chunk"], self._on_chunk, 10)
        self.create_subscription(JointState, TOPICS["joint_states"], self._on_state,
                                 qos_profile_sensor_data)
        self._marker_timer = self.create_timer(1.0 / p["marker_rate_hz"], self.publish_markers)
        self._plot_timer = self.create_timer(1.0 / (p["plot_rate_hz"] or 1.0), self.publish_plot)
        if p["plot_rate_hz"] == 0:
            self._plot_timer.cancel()

    def _make_kinematics(self):
        p = self.params
        return make_kinematics(robots.get(p["robot"]).kinematics,
                               {"left": p["left_base_xyz"], "right": p["right_base_xyz"]})

    def _on_params(self, changed: dict) -> None:
        # frame_id, history_s and line_width are read where they are used.
        if "left_base_xyz" in changed or "right_base_xyz" in changed:
            self.kinematics = self._make_kinematics()
        if "marker_rate_hz" in changed:
            self._marker_timer.timer_period_ns = int(1e9 / changed["marker_rate_hz"])
        if "plot_rate_hz" in changed:
            rate = changed["plot_rate_hz"]
            if rate == 0:
                self._plot_timer.cancel()
            else:
                self._plot_timer.timer_period_ns = int(1e9 / rate)
                self._plot_timer.reset()

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            rows = chunk_actions(msg)
        except ValueError as exc:
            self.get_logger().warning(f"chunk {msg.chunk_id} not shown: {exc}")
            return
        with self._lock:
            self._chunk = (to_seconds(msg.header.stamp), msg.control_period, rows)

    def _on_state(self, msg: JointState) -> None:
        try:
            q = state_vector(msg.name, msg.position)
        except ValueError:
            return
        t = to_seconds(msg.header.stamp)
        with self._lock:
            if self._history and t < self._history[-1][0]:
                self._history.clear()
            self._history.append((t, q))
            while self._history and t - self._history[0][0] > self.params["history_s"]:
                self._history.popleft()

    def _snapshot(self):
        with self._lock:
            return self._chunk, list(self._history)

    def _strip(self, ns: str, mid: int, points: np.ndarray, color, alpha: float) -> Marker:
        m = Marker(ns=ns, id=mid, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.header.frame_id = self.params["frame_id"]
        m.header.stamp = self.get_clock().now().to_msg()
        m.pose.orientation.w = 1.0
        m.scale.x = self.params["line_width"]
        m.color = ColorRGBA(r=color[0], g=color[1], b=color[2], a=alpha)
        m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
        m.lifetime = Duration(sec=2)
        return m

    def build_markers(self) -> MarkerArray:
        with self._settings_lock:
            return self._build_markers()

    def _build_markers(self) -> MarkerArray:
        chunk, history = self._snapshot()
        markers = []
        if chunk is not None:
            paths = self.kinematics.gripper_positions(chunk[2])  # (H, 2, 3)
            for i, side in enumerate(("left", "right")):
                markers.append(self._strip("predicted_path", i, paths[:, i], COLORS[side], 1.0))
        if len(history) >= 2:
            step = max(1, len(history) // 100)  # at most ~100 points per strip
            q = np.stack([h[1] for h in history[::step]] + [history[-1][1]])
            paths = self.kinematics.gripper_positions(q)
            for i, side in enumerate(("left", "right")):
                markers.append(self._strip("executed_path", i, paths[:, i],
                                           tuple(0.5 * c for c in COLORS[side]), 0.8))
                sphere = Marker(ns="gripper", id=i, type=Marker.SPHERE, action=Marker.ADD)
                sphere.header = markers[-1].header
                sphere.pose.position = Point(x=float(paths[-1, i, 0]), y=float(paths[-1, i, 1]),
                                             z=float(paths[-1, i, 2]))
                sphere.pose.orientation.w = 1.0
                sphere.scale.x = sphere.scale.y = sphere.scale.z = 0.02
                sphere.color = ColorRGBA(r=COLORS[side][0], g=COLORS[side][1], b=COLORS[side][2], a=1.0)
                sphere.lifetime = Duration(sec=2)
                markers.append(sphere)
        return MarkerArray(markers=markers)

    def publish_markers(self) -> None:
        array = self.build_markers()
        if array.markers:
            self.marker_pub.publish(array)

    def plot_image(self) -> np.ndarray | None:
        from motus_ros.viz.plot import joint_plot  # noqa: PLC0415 - matplotlib import is slow

        chunk, history = self._snapshot()
        if chunk is None and not history:
            return None
        now = history[-1][0] if history else chunk[0]
        pred_t = pred = exec_t = executed = None
        if chunk is not None:
            stamp, period, rows = chunk
            pred_t = stamp - now + period * np.arange(1, len(rows) + 1)
            pred = rows
        if history:
            exec_t = np.array([h[0] for h in history]) - now
            executed = np.stack([h[1] for h in history])
        return joint_plot(pred_t, pred, exec_t, executed)

    def publish_plot(self) -> None:
        image = self.plot_image()
        if image is not None:
            self.plot_pub.publish(numpy_to_image(image, stamp=self.get_clock().now().to_msg()))


def main(args=None):
    return run_node(lambda: VisualizerNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
