"""The Foxglove bridge speaks the Foxglove WebSocket protocol: a client lists the channels,
subscribes to a camera preview and the action chunks, and decodes what it receives (issue 16).

The protocol's subprotocol name was `foxglove.websocket.v1` (the ws-protocol spec); foxglove-sdk
servers negotiate its successor name `foxglove.sdk.v1` (same ops: serverInfo, advertise,
subscribe, binary message data with opcode 1). The client offers both, as Foxglove's app does.
"""
from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool

from motus_msgs.msg import ActionChunk
from motus_ros import layout
from motus_ros.ros import qos
from motus_ros.ros.images import numpy_to_image
from ros_harness import wait_until

pytest.importorskip("foxglove")
from websockets.sync.client import connect  # noqa: E402

from motus_ros.nodes.foxglove_bridge_node import PREVIEW_SUFFIX, FoxgloveBridgeNode  # noqa: E402

CAMERA = layout.camera_image_topic("high")
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
MESSAGE_DATA = 0x01   # binary opcode of a message sent to a subscription


class FoxgloveClient:
    """The client side of foxglove.websocket.v1, just enough to subscribe and decode."""

    def __init__(self, url: str):
        self.ws = connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=10)
        self.channels: dict[str, dict] = {}
        self.server_info: dict | None = None

    def _receive(self, timeout: float):
        frame = self.ws.recv(timeout=timeout)
        if isinstance(frame, str):
            op = json.loads(frame)
            if op["op"] == "serverInfo":
                self.server_info = op
            elif op["op"] == "advertise":
                self.channels.update({c["topic"]: c for c in op["channels"]})
            return None
        return frame

    def wait_channels(self, topics: list[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(t in self.channels for t in topics):
            left = deadline - time.monotonic()
            assert left > 0, f"channels {[t for t in topics if t not in self.channels]} never advertised; " \
                             f"got {sorted(self.channels)}"
            try:
                self._receive(left)
            except TimeoutError:
                pass

    def subscribe(self, topics: list[str]) -> dict[int, str]:
        subs = {i + 1: topic for i, topic in enumerate(topics)}
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": sid, "channelId": self.channels[topic]["id"]} for sid, topic in subs.items()]}))
        return subs

    def receive_messages(self, subs: dict[int, str], got: dict[str, list], timeout: float) -> None:
        """Append (log_time, payload) per topic into `got` for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self._receive(left)
            except TimeoutError:
                return
            if frame is not None and frame[0] == MESSAGE_DATA:
                sid, log_time = struct.unpack_from("<IQ", frame, 1)
                got.setdefault(subs[sid], []).append((log_time, frame[13:]))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def bridge(ros):
    node = ros.add(FoxgloveBridgeNode(parameter_overrides=_overrides(port=0, discovery_period_s=0.2,
                                                                     image_rate_hz=20.0)))
    yield node
    node.close()


def _overrides(**values):
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in values.items()]


def _chunk(chunk_id: int) -> ActionChunk:
    msg = ActionChunk()
    msg.joint_names = list(layout.JOINT_NAMES)
    msg.control_period = 1 / 30
    msg.horizon = 2
    msg.positions = [0.01 * i + chunk_id for i in range(2 * layout.DOF)]
    msg.chunk_id = chunk_id
    return msg


def test_client_lists_subscribes_and_decodes_camera_and_chunks(ros, bridge):
    enabled = ros.node.create_publisher(Bool, layout.TOPICS["arm_enabled"], qos.LATCHED)
    enabled.publish(Bool(data=True))          # latched before anyone subscribes
    camera = ros.node.create_publisher(type(numpy_to_image(np.zeros((2, 2, 3), np.uint8))), CAMERA, 5)
    chunks = ros.node.create_publisher(ActionChunk, layout.TOPICS["action_chunk"], 10)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 320:] = (200, 30, 30)             # right half red: survives downscaling and JPEG
    client = FoxgloveClient(bridge.url)
    try:
        preview = CAMERA + PREVIEW_SUFFIX
        wanted = [preview, layout.TOPICS["action_chunk"], layout.TOPICS["arm_enabled"]]

        def publish_all():
            camera.publish(numpy_to_image(frame))
            chunks.publish(_chunk(7))

        wait_until(lambda: publish_all() or all(t in bridge.channels or t == preview for t in wanted[1:])
                   and CAMERA in bridge.channels, 15.0, "the bridge to discover the topics", interval=0.1)
        client.wait_channels(wanted)
        assert client.server_info is not None and client.ws.subprotocol in SUBPROTOCOLS
        image_channel = client.channels[preview]
        assert image_channel["encoding"] == "cdr" and image_channel["schemaEncoding"] == "ros2msg"
        assert image_channel["schemaName"] == "sensor_msgs/msg/CompressedImage"
        chunk_channel = client.channels[layout.TOPICS["action_chunk"]]
        assert chunk_channel["schemaName"] == "motus_msgs/msg/ActionChunk"
        assert "float64 control_period" in chunk_channel["schema"]
        assert CAMERA not in client.channels        # raw images are never sent to the view

        subs = client.subscribe(wanted)
        received: dict[str, list] = {}
        stop = time.monotonic() + 15.0
        while not all(received.get(t) for t in wanted) and time.monotonic() < stop:
            publish_all()
            client.receive_messages(subs, received, timeout=0.1)
        assert all(received.get(t) for t in wanted), \
            f"within 15 s got { {t: len(received.get(t, [])) for t in wanted} } messages"
        _, data = received[preview][0]
        image = deserialize_message(data, CompressedImage)
        decoded = cv2.imdecode(np.frombuffer(bytes(image.data), np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (240, 320, 3)           # downscaled to image_max_width
        assert decoded[120, 300, 2] > 150 and decoded[120, 20, 2] < 50   # red right half (BGR)
        _, data = received[layout.TOPICS["action_chunk"]][0]
        chunk = deserialize_message(data, ActionChunk)
        assert chunk.chunk_id == 7 and list(chunk.joint_names) == list(layout.JOINT_NAMES)
        assert np.allclose(chunk.positions, _chunk(7).positions)
        _, data = received[layout.TOPICS["arm_enabled"]][0]
        assert deserialize_message(data, Bool).data is True
    finally:
        client.close()
        for pub in (enabled, camera, chunks):
            ros.node.destroy_publisher(pub)


def test_preview_settings_are_live_and_ports_are_validated(ros, bridge):
    from rclpy.parameter import Parameter

    assert bridge.set_parameters([Parameter("image_max_width", value=160)])[0].successful
    assert bridge.p["image_max_width"] == 160
    assert not bridge.set_parameters([Parameter("port", value=9000)])[0].successful   # read-only
    refused = bridge.set_parameters([Parameter("image_quality", value=0)])[0]
    assert not refused.successful and bridge.p["image_quality"] == 75


def test_shipped_layout_shows_topics_the_graph_publishes():
    """Every image panel of config/foxglove_layout.json shows the preview of an image topic the
    graph publishes, and every panel is placed in the layout tree."""
    from motus_ros import paths
    from motus_ros.nodes.policy_node import PREDICTED_IMAGE_TOPIC
    from motus_ros.nodes.world_model_node import WM_STRIP_TOPIC

    doc = json.loads((paths.config_dir() / "foxglove_layout.json").read_text())
    images = {layout.camera_image_topic(c) for c in layout.CAMERAS} | {PREDICTED_IMAGE_TOPIC, WM_STRIP_TOPIC}
    shown = [cfg["imageMode"]["imageTopic"] for key, cfg in doc["configById"].items() if key.startswith("Image!")]
    assert shown and all(t.endswith(PREVIEW_SUFFIX) and t[:-len(PREVIEW_SUFFIX)] in images for t in shown)

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(doc["layout"])) == sorted(doc["configById"])


def test_demo_prints_the_bridge_address_of_graphs_that_have_one():
    from motus_ros.commands.demo import live_view_url
    from motus_ros.graph.spec import load_graph

    assert live_view_url(load_graph("sim")) == "ws://localhost:8765"
    assert live_view_url(load_graph("mock")) is None
