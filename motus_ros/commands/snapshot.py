"""`motus-ros snapshot --out PNG [--duration s]`: a PNG of what the robot sees and expects.

Listens to the running graph for a short while, then writes one image: the current camera views,
the latest predicted future frames (Joint-mode policy, else the world model), the world model's
latest predicted-vs-real comparison (/motus/wm/predicted_future/comparison, real frames above
predicted; its running PSNR from /diagnostics in the title) when there is one, and a plot of the
latest predicted chunk against the executed joint positions. For people without RViz; headless
(matplotlib Agg).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

HELP = ("write a PNG of the camera views, predicted future frames, predicted vs real frames and "
        "predicted vs executed joints")
WM_STATUS = "world_model_node"       # the world model's /diagnostics status name
COMPARISON_HEIGHT_IN = 3.0           # inches added to the figure for the comparison row
LABEL_ABOVE_IN = 0.46                # the future row's label, inches above the row (over the titles)


def compose_snapshot(out: str | Path, cameras: dict[str, np.ndarray], future: np.ndarray | None,
                     future_label: str, predicted: tuple | None, executed: tuple | None,
                     comparison: np.ndarray | None = None, comparison_title: str = "") -> Path:
    """Write the PNG. predicted/executed: (times_s relative to now (N,), positions (N, 14)).
    comparison: the world model's real-above-predicted image (a row of its own when given)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.gridspec import GridSpec  # noqa: PLC0415

    from motus_ros.viz.plot import draw_comparison, draw_joint_axes  # noqa: PLC0415

    n_future = 0 if future is None else min(len(future), 8)
    extra = 0.0 if comparison is None else COMPARISON_HEIGHT_IN
    fig = Figure(figsize=(16, 11 + extra), dpi=80)
    FigureCanvasAgg(fig)
    ratios = [1.3, 1.0, 0.8, 0.8] if comparison is None else [1.3, 1.0, 1.3, 0.8, 0.8]
    grid = GridSpec(len(ratios), 56, figure=fig, height_ratios=ratios, hspace=0.45)
    joints_row = len(ratios) - 2
    for i, name in enumerate(("high", "left_wrist", "right_wrist")):
        ax = fig.add_subplot(grid[0, i * 18:(i + 1) * 18])
        if name in cameras:
            ax.imshow(cameras[name])
        else:
            ax.text(0.5, 0.5, "no frame", ha="center", va="center")
        ax.set_title(f"camera {name}", fontsize=9)
        ax.axis("off")
    for i in range(max(n_future, 1)):
        ax = fig.add_subplot(grid[1, i * 7:(i + 1) * 7])
        if n_future:
            ax.imshow(future[i])
            ax.set_title(f"+{0.2 * (i + 1):.1f} s", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no predicted frames", ha="center", va="center")
        ax.axis("off")
    if n_future:
        # Just above the frame titles, wherever the grid put this row.
        top = grid[1, :].get_position(fig).y1 + LABEL_ABOVE_IN / fig.get_figheight()
        fig.text(0.5, top, f"predicted future ({future_label})", ha="center", fontsize=10)
    if comparison is not None:
        title = "world model: real (top) vs predicted (bottom)"
        draw_comparison(fig.add_subplot(grid[2, 2:54]), comparison,
                        f"{title}\n{comparison_title}" if comparison_title else title)
    axes = [fig.add_subplot(grid[joints_row + j // 7, (j % 7) * 8:(j % 7) * 8 + 7])
            for j in range(14)]
    draw_joint_axes(axes, *(predicted or (None, None)), *(executed or (None, None)))
    axes[0].legend(fontsize=6, loc="best")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


class _Listener:
    """Collects the latest camera frames, futures, chunk and joint-state history."""

    def __init__(self, node, joint_states_topic: str):
        from rclpy.qos import qos_profile_sensor_data  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from sensor_msgs.msg import Image, JointState  # noqa: PLC0415

        from motus_msgs.msg import ActionChunk, PredictedFuture  # noqa: PLC0415
        from motus_ros.layout import CAMERAS, TOPICS, camera_image_topic  # noqa: PLC0415
        from motus_ros.nodes.messages import PREDICTION_QOS  # noqa: PLC0415
        from motus_ros.ros.qos import image_qos  # noqa: PLC0415

        self.lock = threading.Lock()
        self.images, self.futures, self.chunk, self.states = {}, {}, None, []
        self.comparison, self.wm_values = None, {}
        self.topics = [camera_image_topic(c) for c in CAMERAS] + [
            TOPICS["predicted_future"], TOPICS["wm_future"], TOPICS["wm_comparison"],
            TOPICS["action_chunk"], joint_states_topic]
        for cam in CAMERAS:
            node.create_subscription(Image, camera_image_topic(cam),
                                     lambda m, c=cam: self._set(self.images, c, m), image_qos())
        for key in ("predicted_future", "wm_future"):
            node.create_subscription(PredictedFuture, TOPICS[key],
                                     lambda m, k=key: self._set(self.futures, k, m),
                                     PREDICTION_QOS)
        # Latched like the futures: the last comparison arrives even when it is minutes old.
        node.create_subscription(Image, TOPICS["wm_comparison"], self._on_comparison, PREDICTION_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        node.create_subscription(ActionChunk, TOPICS["action_chunk"], self._on_chunk, 10)
        node.create_subscription(JointState, joint_states_topic, self._on_state,
                                 qos_profile_sensor_data)

    def _set(self, table, key, msg):
        with self.lock:
            table[key] = msg

    def _on_chunk(self, msg):
        with self.lock:
            self.chunk = msg

    def _on_state(self, msg):
        with self.lock:
            self.states.append(msg)

    def _on_comparison(self, msg):
        with self.lock:
            self.comparison = msg

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name == WM_STATUS:
                with self.lock:
                    self.wm_values = {kv.key: kv.value for kv in status.values}

    def anything(self) -> bool:
        with self.lock:
            return bool(self.images or self.futures or self.chunk or self.states
                        or self.comparison is not None)


def _collect(args) -> _Listener:
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("motus_snapshot", context=context)
        listener = _Listener(node, args.joint_states)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return listener


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="motus-ros snapshot", description=HELP)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds to listen before writing (default 3)")
    parser.add_argument("--joint-states", default="/puppet/joint_states",
                        help="executed joint states topic (default /puppet/joint_states)")
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error(f"--duration: got {args.duration}, expected > 0 seconds")

    from motus_ros.ros.images import image_to_numpy  # noqa: PLC0415
    from motus_ros.nodes.messages import chunk_actions  # noqa: PLC0415
    from motus_ros.stamps import to_seconds  # noqa: PLC0415
    from motus_ros.policy.sync import state_vector  # noqa: PLC0415
    from motus_ros.viz.prediction_check import psnr_summary  # noqa: PLC0415

    got = _collect(args)
    if not got.anything():
        print(f"motus-ros snapshot: error: nothing arrived within {args.duration:g} s on "
              f"{', '.join(got.topics)}; is the graph running on this ROS_DOMAIN_ID?",
              file=sys.stderr)
        return 1
    cameras = {name: image_to_numpy(msg) for name, msg in got.images.items()}
    future_msg = got.futures.get("predicted_future") or got.futures.get("wm_future")
    future = label = None
    if future_msg is not None:
        future = np.stack([image_to_numpy(f) for f in future_msg.frames]) if future_msg.frames else None
        label = "policy, Joint mode" if future_msg is got.futures.get("predicted_future") else "world model"
    executed_rows, executed_t = [], []
    for msg in got.states:
        try:
            executed_rows.append(state_vector(msg.name, msg.position))
            executed_t.append(to_seconds(msg.header.stamp))
        except ValueError:
            continue
    now = executed_t[-1] if executed_t else None
    executed = predicted = None
    if executed_rows:
        executed = (np.asarray(executed_t) - now, np.stack(executed_rows))
    if got.chunk is not None:
        rows = chunk_actions(got.chunk)
        t0 = to_seconds(got.chunk.header.stamp)
        now = t0 if now is None else now
        predicted = (t0 - now + got.chunk.control_period * np.arange(1, len(rows) + 1), rows)
    comparison = None if got.comparison is None else image_to_numpy(got.comparison)
    path = compose_snapshot(args.out, cameras, future, label or "", predicted, executed,
                            comparison, psnr_summary(got.wm_values))
    print(f"wrote {path}: {len(cameras)} camera(s), "
          f"{0 if future is None else len(future)} predicted frame(s), "
          f"{'a' if comparison is not None else 'no'} predicted-vs-real comparison, "
          f"{'a' if predicted else 'no'} chunk, {len(executed_rows)} joint state(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
