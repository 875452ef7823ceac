"""Foxglove bridge: the graph's topics, live, over the Foxglove WebSocket protocol (foxglove-sdk).

Open https://app.foxglove.dev (or Foxglove desktop), "Open connection", Foxglove WebSocket,
ws://<address>:<port> (default ws://localhost:8765), then load config/foxglove_layout.json.

What it serves: every topic the graph has (or the `topics` list), discovered every
`discovery_period_s`, each as a channel with message encoding "cdr" and a "ros2msg" schema taken
from the installed message definitions (the recorder's typestore). Messages are forwarded as the
CDR bytes received (raw subscriptions, no re-serialisation). Images are the exception: a camera
stream is far more than a browser view needs, so sensor_msgs/Image topics are served as
sensor_msgs/CompressedImage on `<topic>/preview`: at most `image_rate_hz` per camera,
downscaled to `image_max_width`, JPEG at `image_quality`.

Why it cannot slow the control graph: it runs in its own process, subscribes best effort (a
reliable publisher never waits for a best-effort reader) except to latched state topics
(reliable + transient local, depth 1, sent on change), drops images above the preview rate
before decoding them, and the WebSocket server (Rust, in foxglove-sdk) sends on its own threads,
dropping a slow client's oldest messages instead of blocking the logger.

Latched topics (/arm/enabled, /sim/episode, ...) are sent once, on change; the bridge keeps the
last message of each and sends it again when a client subscribes, so a view opened late still
shows whether the arm is enabled.

Parameters: address (default 127.0.0.1: only this computer; 0.0.0.0 serves the network), port
(8765; 0 picks a free port, logged), topics, exclude_topics, image_max_width, image_quality,
image_rate_hz (live), discovery_period_s.
"""
from __future__ import annotations

import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from motus_ros.data import image_codec
from motus_ros.data import types as bag_types
from motus_ros.data.topics import ALL_TOPICS
from motus_ros.ros.run import run_node
from motus_ros.params import Param, declare_parameters

PREVIEW_SUFFIX = "/preview"

PARAMS = [
    Param("address", "127.0.0.1", "WebSocket bind address: 127.0.0.1 serves this computer only, "
          "0.0.0.0 every network interface"),
    Param("port", 8765, "WebSocket port (0: pick a free one and log it)", min=0, max=65535),
    Param("topics", [ALL_TOPICS], "topics to serve: '*' (every topic of the graph) or names"),
    Param("exclude_topics", ["/rosout", "/parameter_events"], "topics never served"),
    Param("image_max_width", 320, "previews of sensor_msgs/Image topics are downscaled to at most "
          "this width (pixels)", min=16, max=4096, live=True),
    Param("image_quality", 75, "JPEG quality of image previews (1-100)", min=1, max=100, live=True),
    Param("image_rate_hz", 5.0, "image previews per second per camera (Hz)", min=0.1, max=60.0,
          live=True),
    Param("discovery_period_s", 1.0, "seconds between looks for new topics", min=0.1, max=60.0),
]


def view_url(address: str, port: int) -> str:
    """The address a viewer on this computer opens (a bind to every interface includes localhost)."""
    host = "localhost" if address in ("127.0.0.1", "0.0.0.0") else address
    return f"ws://{host}:{port}"


def schema_for(msgtype: str):
    """The Foxglove schema of a ROS 2 type: its concatenated .msg text, encoding ros2msg."""
    import foxglove  # noqa: PLC0415 - imported with the node, not with the package

    msgdef, _ = bag_types.msgdef_and_hash(msgtype)
    return foxglove.Schema(name=bag_types.normalize_type(msgtype), encoding="ros2msg",
                           data=msgdef.encode())


class FoxgloveBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("foxglove_bridge", **kwargs)
        import foxglove  # noqa: PLC0415

        self.p = declare_parameters(self, PARAMS)
        self._foxglove = foxglove
        # Own context: channels of one bridge never leak into another (tests run several).
        self.fox_context = foxglove.Context()
        self.latched: dict[str, bytes] = {}             # latched topic -> its last message
        self._resend: set[str] = set()                   # latched topics a client just subscribed to
        self.server = foxglove.start_server(name="motus_ros", host=self.p["address"],
                                            port=self.p["port"], context=self.fox_context,
                                            server_listener=_SubscribeListener(self))
        self.port = self.server.port
        self.channels: dict[str, object] = {}         # ROS topic -> Foxglove channel
        self.subscriptions_by_topic: dict[str, object] = {}
        self.skipped: dict[str, str] = {}              # topic -> why it is not served
        self.forwarded = 0
        self.previews = 0
        self.preview_errors = 0
        self._last_preview: dict[str, float] = {}
        self._lock = threading.Lock()
        self._group = MutuallyExclusiveCallbackGroup()
        self.get_logger().info(f"Foxglove live view: {self.url} "
                               "(https://app.foxglove.dev, Open connection, Foxglove WebSocket)")
        self._discover()
        self.create_timer(self.p["discovery_period_s"], self._discover, callback_group=self._group)
        # Wall clock: a paused simulation must not hold back a new client's latched state.
        self.create_timer(0.1, self._resend_latched, callback_group=self._group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    @property
    def url(self) -> str:
        return view_url(self.p["address"], self.port)

    # -- discovery -------------------------------------------------------------------------------
    def _wanted(self, topic: str) -> bool:
        if topic in self.p["exclude_topics"]:
            return False
        return ALL_TOPICS in self.p["topics"] or topic in self.p["topics"]

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.subscriptions_by_topic or topic in self.skipped or not self._wanted(topic):
                continue
            if len(types) != 1:
                self._skip(topic, f"published with several types {types}")
                continue
            msgtype = bag_types.normalize_type(types[0])
            if not bag_types.is_known(msgtype):
                self._skip(topic, f"type {msgtype} has no installed definition")
                continue
            if topic.endswith(PREVIEW_SUFFIX):
                continue
            self._serve(topic, msgtype)

    def _skip(self, topic: str, why: str) -> None:
        self.skipped[topic] = why
        self.get_logger().warning(f"not serving {topic}: {why}")

    def _qos(self, topic: str) -> QoSProfile:
        infos = self.get_publishers_info_by_topic(topic)
        latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                      for i in infos)
        if latched:   # state sent on change: get the current value, it costs one message
            return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)

    def _serve(self, topic: str, msgtype: str) -> None:
        image = msgtype == bag_types.IMAGE_TYPE
        channel_topic = topic + PREVIEW_SUFFIX if image else topic
        channel_type = bag_types.COMPRESSED_IMAGE_TYPE if image else msgtype
        self.channels[topic] = self._foxglove.Channel(channel_topic, schema=schema_for(channel_type),
                                                      message_encoding="cdr", context=self.fox_context)
        qos = self._qos(topic)
        if image:
            callback = lambda data, t=topic: self._on_image(t, data)  # noqa: E731
        elif qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
            callback = lambda data, t=topic: self._forward(t, data, keep=True)  # noqa: E731
        else:
            callback = lambda data, t=topic: self._forward(t, data)  # noqa: E731
        self.subscriptions_by_topic[topic] = self.create_subscription(
            _message_class(msgtype), topic, callback, qos, raw=True, callback_group=self._group)

    # -- forwarding ------------------------------------------------------------------------------
    def _log_time_ns(self) -> int:
        return self.get_clock().now().nanoseconds or time.time_ns()

    def _forward(self, topic: str, data: bytes, keep: bool = False) -> None:
        data = bytes(data)
        if keep:
            with self._lock:
                self.latched[topic] = data
        self.channels[topic].log(data, log_time=self._log_time_ns())
        self.forwarded += 1

    def client_subscribed(self, topic: str) -> None:
        """Called from the server's thread: queue the topic's latched message, if any."""
        with self._lock:
            if topic in self.latched:
                self._resend.add(topic)

    def _resend_latched(self) -> None:
        with self._lock:
            pending = {topic: self.latched[topic] for topic in self._resend}
            self._resend.clear()
        for topic, data in pending.items():
            self.channels[topic].log(data, log_time=self._log_time_ns())

    def _on_image(self, topic: str, data: bytes) -> None:
        now = time.monotonic()
        if now - self._last_preview.get(topic, -1e9) < 1.0 / self.p["image_rate_hz"]:
            return            # dropped before decoding: the preview rate bounds the CPU spent
        self._last_preview[topic] = now
        try:
            preview = image_codec.compress_image_cdr(data, "jpeg", jpeg_quality=self.p["image_quality"],
                                                     max_width=self.p["image_max_width"])
        except ValueError as exc:
            self.preview_errors += 1
            self.get_logger().warning(f"{topic}: no preview ({exc})", throttle_duration_sec=10.0)
            return
        self.channels[topic].log(preview, log_time=self._log_time_ns())
        self.previews += 1

    def close(self) -> None:
        self.server.stop()


class _SubscribeListener:
    """foxglove ServerListener: tells the bridge which channel a client subscribed to."""

    def __init__(self, bridge: FoxgloveBridgeNode):
        self.bridge = bridge

    def on_subscribe(self, client, channel) -> None:
        self.bridge.client_subscribed(channel.topic)


def _message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name' (raw subscriptions still need the type)."""
    import importlib  # noqa: PLC0415

    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def main(args=None):
    return run_node(FoxgloveBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
