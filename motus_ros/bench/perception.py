"""`motus-ros bench perception`: camera streams between processes and camera-to-chunk latency.

1. streams: a child process publishes three WxH rgb8 camera streams at `rate` Hz (sensor-data QoS,
   as camera_node does) for `duration` seconds; this process receives them and reports, per
   stream, messages received/sent and latency (receive wall time - header stamp) p50/p99.
   Run with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA and, as the baseline in the same run, with Fast
   DDS's default transports (`--no-baseline` skips it).
2. policy: (if motus_ros.policy.runtime exists) a child publishes the cameras and joint states, a
   policy_node child runs the tiny preset, and this process measures chunk arrival time minus the
   chunk's observation stamp (camera stamp to chunk), p50/p99, plus the node's inference_latency.
Prints one JSON object. Uses its own ROS_DOMAIN_ID (localhost only) unless --domain is given.

Remote policy (two machines): `--transport udp` sets FASTDDS_BUILTIN_TRANSPORTS=UDPv4, so shared
memory is off and every byte crosses the UDP stack as it would between hosts; `--compression
jpeg` publishes sensor_msgs/CompressedImage (OpenCV's libjpeg-turbo) on <camera topic>/compressed
instead of raw rgb8, and the receiver decodes every frame. The streams part then also reports
bandwidth, frames lost, encode/decode CPU time per frame and the codec's PSNR on the frames sent,
which are MuJoCo renders of the simulated cell (what the cameras see), not random noise.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

from motus_ros.stamps import to_seconds

HELP = "three 640x480 camera streams at 30 Hz between processes; camera-stamp-to-chunk latency"
CAMERAS = ("high", "left_wrist", "right_wrist")


def _percentiles(values) -> dict:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    arr = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3)}


def _qos(kind: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: PLC0415

    if kind == "sensor":
        return qos_profile_sensor_data
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _wall() -> float:
    return time.time()


def _image_topic(camera: str, compressed: bool) -> str:
    from motus_ros.layout import camera_image_topic  # noqa: PLC0415

    return camera_image_topic(camera) + ("/compressed" if compressed else "")


def scene_frames(height: int, width: int) -> dict:
    """One RGB render per camera of the simulated transfer-cube cell, mid-reach (what the robot's
    cameras see: the codec's cost and quality depend on the content)."""
    from motus_ros.sim.world import SimWorld  # noqa: PLC0415

    world = SimWorld("transfer_cube", image_size=(height, width), seed=0)
    try:
        world.reset(seed=0)
        targets = world.ctrl_targets()
        for _ in range(25):        # move a little so wrist cameras look at the arm, not the sky
            world.step(targets + 0.02)
        return {c: world.render(c) for c in CAMERAS}
    finally:
        world.close()


def jpeg_psnr(rgb: np.ndarray, quality: int) -> float:
    """PSNR (dB, peak 255) of a JPEG round trip of one frame, through the codec the cameras use."""
    from motus_ros.data.image_codec import decode_array, encode_array  # noqa: PLC0415
    from motus_ros.training.evaluation import psnr  # noqa: PLC0415

    fmt, data = encode_array(rgb, "rgb8", "jpeg", quality)
    return psnr(decode_array(data, fmt), rgb)


# -- child: publishes cameras (and optionally joint states) -------------------------------------
def run_publisher(args) -> int:
    import rclpy  # noqa: PLC0415
    from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: PLC0415

    from motus_ros.layout import JOINT_NAMES, TOPICS  # noqa: PLC0415
    from motus_ros.ros.images import numpy_to_compressed  # noqa: PLC0415
    from motus_ros.stamps import to_time_msg  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node("bench_camera_publisher")
    jpeg = args.compression == "jpeg"
    msg_type = CompressedImage if jpeg else Image
    pubs = {c: node.create_publisher(msg_type, _image_topic(c, jpeg), _qos(args.qos)) for c in CAMERAS}
    state_pub = node.create_publisher(JointState, TOPICS["joint_states"], 10) if args.joint_states else None
    frames = scene_frames(args.height, args.width)
    codec = {"psnr_db": {c: round(jpeg_psnr(frames[c], args.jpeg_quality), 2) for c in CAMERAS}} if jpeg else {}
    deadline = time.monotonic() + args.match_timeout
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
        time.sleep(0.05)
    time.sleep(0.5)  # let discovery of the reverse direction settle
    msgs = {c: Image(height=args.height, width=args.width, encoding="rgb8", step=args.width * 3,
                     data=frames[c].tobytes()) for c in CAMERAS}
    sent = {c: 0 for c in CAMERAS}
    sent_bytes = 0
    encode_s: list[float] = []
    period = 1.0 / args.rate
    start = time.monotonic()
    n = 0
    # Independent cameras are not phase-locked: by default the streams are spread over the period.
    slots = len(CAMERAS) if args.stagger else 1
    while True:
        due = start + n * period / slots
        if due - start >= args.duration:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = to_time_msg(_wall())
        for cam in ([CAMERAS[n % slots]] if slots > 1 else CAMERAS):
            if jpeg:   # a camera driver encodes every frame it sends: so does the bench
                t0 = time.perf_counter()
                msg = numpy_to_compressed(frames[cam], "rgb8", args.jpeg_quality)
                encode_s.append(time.perf_counter() - t0)
            else:
                msg = msgs[cam]
            msg.header.stamp = stamp
            try:
                pubs[cam].publish(msg)
                sent[cam] += 1
                sent_bytes += len(msg.data)
            except Exception:  # noqa: BLE001 - counted as not sent
                pass
        if state_pub is not None and n % slots == 0:
            state = JointState(name=list(JOINT_NAMES), position=[0.0] * len(JOINT_NAMES))
            state.header.stamp = stamp
            state_pub.publish(state)
        n += 1
    if jpeg:
        codec["encode_per_frame"] = _percentiles(encode_s)
    print(json.dumps({"sent": sent, "sent_bytes": sent_bytes, "codec": codec}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _child(role_args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "motus_ros.bench.perception", *role_args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


LARGE_DATA = "LARGE_DATA"


def _env(domain: int, large_data: bool) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    if large_data:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = LARGE_DATA
    else:
        env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    return env


# -- parent: streams -----------------------------------------------------------------------------
def _stream_args(args) -> list[str]:
    return ["--qos", args.qos, "--streams", str(args.streams), "--stagger", str(args.stagger),
            "--duration", str(args.duration), "--match-timeout", str(args.match_timeout),
            "--compression", args.compression, "--jpeg-quality", str(args.jpeg_quality),
            "--transport", args.transport]


def measure_streams(args, large_data: bool) -> dict:
    """Run the publisher child and a subscriber in a grandchild-free subprocess of our own env."""
    env = _env(args.domain, large_data)
    receiver = _child(["--role", "receiver", *_stream_args(args)], env)
    publisher = _child(["--role", "publisher", *_stream_args(args), "--rate", str(args.rate),
                        "--width", str(args.width), "--height", str(args.height)], env)
    limit = args.duration + args.match_timeout + 30
    pub_out, pub_err = publisher.communicate(timeout=limit)
    rec_out, rec_err = receiver.communicate(timeout=limit)
    try:
        published = json.loads(pub_out.strip().splitlines()[-1])
        sent = published["sent"]
        received = json.loads(rec_out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError, KeyError):
        return {"error": f"stream children failed: publisher {pub_err[-400:]!r} receiver {rec_err[-400:]!r}"}
    streams = {}
    for cam in CAMERAS:
        lat = received["latency_s"].get(cam, [])
        streams[cam] = {"sent": sent[cam], "received": len(lat),
                        "received_fraction": round(len(lat) / sent[cam], 4) if sent[cam] else None,
                        **_percentiles(lat)}
    total_sent, total_received = sum(sent.values()), sum(len(v) for v in received["latency_s"].values())
    return {"transports": LARGE_DATA if large_data else "default", "qos": args.qos,
            "compression": args.compression, "streams": streams,
            "frames_lost": total_sent - total_received,
            "bandwidth_MB_s": round(received["received_bytes"] / args.duration / 1e6, 3),
            "sent_MB_s": round(published["sent_bytes"] / args.duration / 1e6, 3),
            "decode_per_frame": received["decode_per_frame"], **published["codec"]}


def run_receiver(args) -> int:
    """Child: subscribes to the camera topics (raw bytes, so every byte is counted), decodes each
    message as a consumer must, prints receive-minus-stamp latencies, bytes and decode times."""
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
    from rclpy.serialization import deserialize_message  # noqa: PLC0415
    from sensor_msgs.msg import CompressedImage, Image  # noqa: PLC0415

    from motus_ros.ros.images import compressed_to_numpy, image_to_numpy  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node("bench_camera_receiver")
    jpeg = args.compression == "jpeg"
    msg_type = CompressedImage if jpeg else Image
    latency = {c: [] for c in CAMERAS}
    decode_s: list[float] = []
    received_bytes = [0]

    def on_image(cam, data):
        arrived = _wall()
        received_bytes[0] += len(data)
        t0 = time.perf_counter()
        msg = deserialize_message(data, msg_type)
        compressed_to_numpy(msg) if jpeg else image_to_numpy(msg)
        decode_s.append(time.perf_counter() - t0)
        latency[cam].append(arrived - to_seconds(msg.header.stamp))
    for cam in CAMERAS:
        node.create_subscription(msg_type, _image_topic(cam, jpeg), lambda m, c=cam: on_image(c, m),
                                 _qos(args.qos), raw=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.duration + args.match_timeout + 3.0
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    print(json.dumps({"latency_s": latency, "received_bytes": received_bytes[0],
                      "decode_per_frame": _percentiles(decode_s)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# -- parent: policy ------------------------------------------------------------------------------
def measure_policy(args) -> dict:
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    from motus_msgs.msg import ActionChunk  # noqa: PLC0415

    env = _env(args.domain, True)
    transport = "compressed" if args.compression == "jpeg" else "raw"
    policy = subprocess.Popen(
        [sys.executable, "-m", "motus_ros.nodes.policy_node", "--ros-args",
         "-p", "preset:=tiny", "-p", "instruction:=benchmark", "-p", f"steps:={args.steps}",
         "-p", "max_observation_age_s:=0.5", "-p", "tick_rate_hz:=30.0", "-p", f"image_transport:={transport}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    total = args.policy_timeout + args.policy_duration
    cams = _child(["--role", "publisher", "--stagger", str(args.stagger), "--duration", str(total), "--rate", str(args.rate),
                   "--width", str(args.width), "--height", str(args.height), "--joint-states",
                   "--match-timeout", str(args.match_timeout), "--compression", args.compression,
                   "--jpeg-quality", str(args.jpeg_quality), "--transport", args.transport], env)
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                      FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA)
    context = rclpy.Context()
    rclpy.init(context=context)
    latencies, node_latencies = [], []
    first_at = None
    try:
        node = rclpy.create_node("bench_chunk_receiver", context=context)

        def on_chunk(msg):
            latencies.append(_wall() - to_seconds(msg.header.stamp))
            node_latencies.append(msg.inference_latency)
        node.create_subscription(ActionChunk, "/motus/action_chunk", on_chunk, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        start = time.monotonic()
        while time.monotonic() - start < total:
            executor.spin_once(timeout_sec=0.05)
            if latencies and first_at is None:
                first_at = time.monotonic()
            if first_at is not None and time.monotonic() - first_at > args.policy_duration:
                break
            if policy.poll() is not None:
                break
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        for proc in (policy, cams):
            if proc.poll() is None:
                proc.terminate()
        err = ""
        try:
            _, err = policy.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            policy.kill()
        cams.communicate(timeout=20)
    if not latencies:
        return {"error": f"no chunk within {args.policy_timeout:g} s; policy stderr: {err[-600:]!r}"}
    return {"preset": "tiny", "steps": args.steps, "chunks": len(latencies), "image_transport": transport,
            "first_chunk_after_s": round(first_at - start, 2),
            "camera_stamp_to_chunk": _percentiles(latencies),
            "node_inference_latency": _percentiles(node_latencies)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="motus-ros bench perception", description=HELP)
    parser.add_argument("--role", choices=("bench", "publisher", "receiver"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of streaming (default 5)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz, default 30)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--domain", type=int, default=120 + os.getpid() % 100,
                        help="ROS_DOMAIN_ID to run on (default: one of 120..219)")
    parser.add_argument("--match-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--joint-states", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=3, choices=(1, 2, 3),
                        help="number of camera streams (default 3)")
    parser.add_argument("--stagger", type=int, default=1, choices=(0, 1),
                        help="1: spread the streams over the frame period (independent cameras); "
                             "0: publish them back to back")
    parser.add_argument("--qos", choices=("sensor", "reliable"), default="reliable",
                        help="camera QoS: reliable (camera_node's default, motus_ros/ros/qos.py) or "
                             "sensor-data (best effort, depth 5)")
    parser.add_argument("--transports", default="LARGE_DATA",
                        help="FASTDDS_BUILTIN_TRANSPORTS value of the measured run (default LARGE_DATA; "
                             "options as LARGE_DATA?max_msg_size=1MB&sockets_size=16MB)")
    parser.add_argument("--transport", choices=("shm", "udp"), default="shm",
                        help="shm: --transports as given (LARGE_DATA: shared memory between local "
                             "processes); udp: UDPv4 only, every byte through the network stack as "
                             "between two hosts")
    parser.add_argument("--compression", choices=("none", "jpeg"), default="none",
                        help="camera payload: raw rgb8 Image, or JPEG CompressedImage on "
                             "<topic>/compressed")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the default-transports baseline run")
    parser.add_argument("--no-policy", action="store_true", help="skip the policy latency part")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps of the tiny preset")
    parser.add_argument("--policy-timeout", type=float, default=120.0,
                        help="seconds to wait for the first chunk (model load)")
    parser.add_argument("--policy-duration", type=float, default=15.0,
                        help="seconds of chunks measured after the first")
    args = parser.parse_args(argv)
    global LARGE_DATA, CAMERAS  # noqa: PLW0603 - settings the child processes get
    LARGE_DATA = "UDPv4" if args.transport == "udp" else args.transports
    if not 1 <= args.jpeg_quality <= 100:
        parser.error(f"--jpeg-quality: got {args.jpeg_quality}, expected 1..100")
    CAMERAS = CAMERAS[:args.streams]
    if args.role == "publisher":
        return run_publisher(args)
    if args.role == "receiver":
        return run_receiver(args)
    result = {"benchmark": "perception", "qos": args.qos, "transport": args.transport,
              "compression": args.compression, "width": args.width, "height": args.height,
              "rate_hz": args.rate, "duration_s": args.duration, "domain": args.domain,
              "streams": measure_streams(args, True)}
    if not args.no_baseline:
        result["streams_default_transports_baseline"] = measure_streams(args, False)
    if not args.no_policy:
        if importlib.util.find_spec("motus_ros.policy.runtime") is None:
            result["policy"] = {"skipped": "motus_ros/policy/runtime.py not available"}
        else:
            result["policy"] = measure_policy(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
