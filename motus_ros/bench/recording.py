"""`motus-ros bench recording`: sustained recording of three 640x480 cameras at 30 Hz plus joint
states at the driver rate, publisher and recorder in separate processes.

Prints JSON: messages published vs written per topic (must be equal), MB/s written, CPU use of
the recorder process, and as the in-run baseline the bag writer alone (no ROS) on the same data.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from motus_ros import layout

HELP = "sustained recording: 3 cameras 640x480 @ 30 Hz + joint states, published vs written, MB/s, CPU"
JOINT_TOPIC = layout.TOPICS["joint_states"]
CAMERA_TOPICS = [layout.camera_image_topic(c) for c in layout.CAMERAS]


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="motus-ros bench recording", description=HELP)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing (10)")
    parser.add_argument("--camera-rate", type=float, default=30.0, help="Hz per camera (30)")
    parser.add_argument("--joint-rate", type=float, default=200.0, help="joint state Hz (200)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--compression", choices=["none", "jpeg", "png"], default="none",
                        help="recorder image_compression parameter (none)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the bag (default: a temporary folder, deleted after)")
    parser.add_argument("--role", choices=["bench", "publisher"], default="bench",
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _frames(n: int, width: int, height: int):
    """n distinct uint8 RGB frames (moving gradients)."""
    import numpy as np
    y, x = np.mgrid[0:height, 0:width]
    return [np.stack([(x + 7 * i) % 256, (y + 3 * i) % 256, ((x + y) // 2 + 11 * i) % 256],
                     axis=-1).astype(np.uint8) for i in range(n)]


def run_publisher(args: argparse.Namespace) -> int:
    """Child process: publish for args.duration seconds at the requested rates, print counts."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    from motus_ros.ros.images import numpy_to_image

    rclpy.init()
    node = rclpy.create_node("bench_recording_publisher")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    cam_pubs = [node.create_publisher(Image, t, qos) for t in CAMERA_TOPICS]
    js_pub = node.create_publisher(JointState, JOINT_TOPIC, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    pubs = [*cam_pubs, js_pub]
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() < 1 for p in pubs):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "recorder did not subscribe within 30 s"}))
            return 1
        time.sleep(0.05)
    from rclpy.serialization import serialize_message
    images = [numpy_to_image(f, "rgb8") for f in _frames(30, args.width, args.height)]
    published = {t: 0 for t in [*CAMERA_TOPICS, JOINT_TOPIC]}
    sizes = {t: len(serialize_message(images[0])) for t in CAMERA_TOPICS}
    sizes[JOINT_TOPIC] = len(serialize_message(JointState(
        name=list(layout.JOINT_NAMES), position=[0.0] * layout.DOF, velocity=[0.0] * layout.DOF,
        effort=[0.0] * layout.DOF)))
    retries = 0

    def publish(pub, msg, topic):
        nonlocal retries
        for attempt in range(100):  # Fast DDS may refuse a reliable write at full rate; retry
            try:
                pub.publish(msg)
                published[topic] += 1
                return
            except Exception:  # noqa: BLE001 - rclpy raises RCLError
                retries += 1
                time.sleep(0.001 * (attempt + 1))
        raise RuntimeError(f"{topic}: publish failed 100 times")

    start = time.monotonic()
    next_cam, next_js = start, start
    cam_dt, js_dt = 1.0 / args.camera_rate, 1.0 / args.joint_rate
    frame = 0
    position = [0.0] * layout.DOF
    while True:
        now = time.monotonic()
        if now - start >= args.duration:
            break
        if now >= next_js:
            msg = JointState(name=list(layout.JOINT_NAMES), position=position,
                             velocity=[0.0] * layout.DOF, effort=[0.0] * layout.DOF)
            msg.header.stamp = node.get_clock().now().to_msg()
            publish(js_pub, msg, JOINT_TOPIC)
            position = [p + 0.001 for p in position]
            next_js += js_dt
        if now >= next_cam:
            stamp = node.get_clock().now().to_msg()
            for pub, topic in zip(cam_pubs, CAMERA_TOPICS):
                img = images[frame % len(images)]
                img.header.stamp = stamp
                publish(pub, img, topic)
            frame += 1
            next_cam += cam_dt
        time.sleep(max(0.0, min(next_js, next_cam) - time.monotonic()))
    elapsed = time.monotonic() - start
    acked = all(p.wait_for_all_acked(rclpy.duration.Duration(seconds=30)) for p in pubs)
    print(json.dumps({"published": published, "elapsed_s": elapsed, "acked": acked,
                      "publish_retries": retries,
                      "published_bytes": sum(published[t] * sizes[t] for t in published)}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _writer_baseline(args: argparse.Namespace, folder: Path, seconds: float = 2.0) -> float:
    """MB/s of BagWriter alone (no ROS transport) writing the same serialized images."""
    from rclpy.serialization import serialize_message

    from motus_ros.data.bag_writer import BagWriter
    from motus_ros.ros.images import numpy_to_image
    data = [serialize_message(numpy_to_image(f, "rgb8")) for f in _frames(8, args.width, args.height)]
    writer = BagWriter(folder / "baseline", flush_period_s=0.5, fsync=True).open()
    writer.add_topic(CAMERA_TOPICS[0], "sensor_msgs/msg/Image")
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        writer.write(CAMERA_TOPICS[0], i, data[i % len(data)])
        i += 1
    writer.close()
    elapsed = time.monotonic() - start
    return writer.bytes_written / elapsed / 1e6


def _bench_environment() -> dict[str, str]:
    """Environment for the recorder and publisher processes (and this one): LARGE_DATA transport
    for images, local discovery, a random domain so concurrent runs do not hear each other."""
    env = os.environ.copy()
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")  # see ENVIRONMENT.md: images
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    os.environ.update({k: env[k] for k in ("FASTDDS_BUILTIN_TRANSPORTS",
                                           "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    return env


def _start_recorder(args: argparse.Namespace, out: Path, env: dict) -> subprocess.Popen:
    """The real recorder node, recording the bench's camera and joint topics under out/episodes."""
    topics = [f"{t}:sensor_msgs/msg/Image" for t in CAMERA_TOPICS]
    topics.append(f"{JOINT_TOPIC}:sensor_msgs/msg/JointState")
    recorder_cmd = [sys.executable, "-m", "motus_ros.nodes.recorder_node", "--ros-args",
                    "-p", f"output_dir:={out / 'episodes'}", "-p", f"topics:={json.dumps(topics)}",
                    "-p", "min_free_mb:=256.0", "-p", "diagnostics_period_s:=0.2",
                    "-p", f"image_compression:={args.compression}", "-p", "qos_depth:=200"]
    return subprocess.Popen(recorder_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class _RecorderClient:
    """This process's node: the recorder's start/stop services and its `written` diagnostics count."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from motus_msgs.srv import StartEpisode, StopEpisode

        self.node = node
        self.written_total = 0
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.start_cli = node.create_client(StartEpisode, layout.SERVICES["start_episode"])
        self.stop_cli = node.create_client(StopEpisode, layout.SERVICES["stop_episode"])

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("recorder"):
                for kv in status.values:
                    if kv.key == "written":
                        self.written_total = int(kv.value)

    def start(self) -> None:
        import rclpy
        from motus_msgs.srv import StartEpisode

        if not self.start_cli.wait_for_service(timeout_sec=30):
            raise RuntimeError("recorder service did not appear within 30 s")
        future = self.start_cli.call_async(StartEpisode.Request(task="bench recording"))
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=10)
        if not future.done() or not future.result().success:
            raise RuntimeError(f"start_episode failed: {future.result()}")

    def drain(self, expected: int, timeout_s: float = 60.0) -> bool:
        """Spin until the recorder reports `expected` messages written; False on timeout."""
        import rclpy

        deadline = time.monotonic() + timeout_s
        while self.written_total < expected and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)  # the writer drains its queue
        return self.written_total >= expected

    def stop(self):
        import rclpy
        from motus_msgs.srv import StopEpisode

        future = self.stop_cli.call_async(StopEpisode.Request(keep=True))
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=120)
        stop = future.result()
        if stop is None or not stop.success:
            raise RuntimeError(f"stop_episode failed: {stop}")
        return stop


def _start_publisher(args: argparse.Namespace, env: dict) -> subprocess.Popen:
    """The publisher role (cameras + joint states for args.duration) in its own process."""
    pub_args = [sys.executable, "-m", "motus_ros.bench.recording", "--role", "publisher",
                "--duration", str(args.duration), "--camera-rate", str(args.camera_rate),
                "--joint-rate", str(args.joint_rate), "--width", str(args.width),
                "--height", str(args.height)]
    return subprocess.Popen(pub_args, env=env, stdout=subprocess.PIPE, text=True)


def _wait_publisher(publisher: subprocess.Popen, node) -> tuple[dict, Any]:
    """Spin `node` until the publisher ends; returns (its JSON result, its last CPU times)."""
    import psutil
    import rclpy

    pub_proc = psutil.Process(publisher.pid)
    pub_cpu = pub_proc.cpu_times()
    while publisher.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.1)
        try:
            pub_cpu = pub_proc.cpu_times()
        except psutil.Error:
            pass
    pub_result = json.loads(publisher.stdout.read().strip().splitlines()[-1])
    if "error" in pub_result:
        raise RuntimeError(pub_result["error"])
    return pub_result, pub_cpu


def _result(args, pub_result: dict, pub_cpu, meta: dict, bag_bytes: int, recorder_cpu: float,
            drained: bool, baseline: float) -> dict:
    """The benchmark's JSON: published vs written per topic, throughput, CPU, the writer-only baseline."""
    published = pub_result["published"]
    written = meta["message_counts"]
    by_source = {t: written.get(t, written.get(f"{t}/compressed", 0)) for t in published}
    return {
        "benchmark": "recording",
        "duration_s": round(pub_result["elapsed_s"], 3),
        "cameras": len(CAMERA_TOPICS), "image": f"{args.width}x{args.height} rgb8",
        "camera_rate_hz": args.camera_rate, "joint_rate_hz": args.joint_rate,
        "image_compression": args.compression,
        "published": published, "written": by_source,
        "published_total": sum(published.values()), "written_total": sum(by_source.values()),
        "equal": by_source == published, "dropped": meta["dropped"],
        "writer_error": meta.get("writer_error"), "publisher_acked": pub_result["acked"],
        "drain_timed_out": not drained,
        "publish_retries": pub_result["publish_retries"],
        "bag_mb": round(bag_bytes / 1e6, 1),
        "published_mb_per_s": round(pub_result["published_bytes"] / 1e6 / pub_result["elapsed_s"], 1),
        "mb_per_s": round(meta["bytes_written"] / 1e6 / pub_result["elapsed_s"], 1),
        "recorder_cpu_percent": round(100 * recorder_cpu, 1),
        "publisher_cpu_percent": round(100 * (pub_cpu.user + pub_cpu.system) / pub_result["elapsed_s"], 1),
        "baseline_writer_only_mb_per_s": round(baseline, 1),
        "cpu_cores": os.cpu_count(),
    }


def run_bench(args: argparse.Namespace) -> int:
    """Recorder node + publisher process: record for args.duration, then compare and print JSON."""
    import psutil
    import rclpy

    env = _bench_environment()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="motus_bench_recording_")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    recorder = _start_recorder(args, out, env)
    publisher = None
    rclpy.init()
    node = rclpy.create_node("bench_recording")
    try:
        client = _RecorderClient(node)
        client.start()
        proc = psutil.Process(recorder.pid)
        cpu0, wall0 = proc.cpu_times(), time.monotonic()
        publisher = _start_publisher(args, env)
        pub_result, pub_cpu = _wait_publisher(publisher, node)
        drained = client.drain(sum(pub_result["published"].values()))
        cpu1, wall1 = proc.cpu_times(), time.monotonic()
        stop = client.stop()
        meta = json.loads((Path(stop.path) / "episode.json").read_text())
        bag_bytes = sum(f.stat().st_size for f in Path(stop.path).iterdir())
        recorder_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)
        result = _result(args, pub_result, pub_cpu, meta, bag_bytes, recorder_cpu, drained,
                         _writer_baseline(args, out))
        print(json.dumps(result, indent=2))
        return 0 if result["equal"] else 1
    except Exception as exc:  # noqa: BLE001 - one line for the user, non-zero exit
        print(json.dumps({"benchmark": "recording", "error": str(exc)}))
        return 1
    finally:
        for child in (publisher, recorder):
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
        node.destroy_node()
        rclpy.try_shutdown()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str]) -> int:
    args = _args(argv)
    return run_publisher(args) if args.role == "publisher" else run_bench(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
