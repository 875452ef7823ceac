"""Observation assembly for the nodes that run Motus: camera and joint-state subscriptions feeding
an ObservationSync, and one observation dict per inference (or, images_at(), the camera frames at
a past time, for the world model's predicted-vs-real check).

Cameras are read as sensor_msgs/Image on their image topics (image_transport "raw") or as
sensor_msgs/CompressedImage (JPEG) on image_transport's `<image topic>/compressed` ("compressed").
Subscriptions only store messages (decoding, JPEG included, happens once per inference, in
assemble()), so the callbacks stay cheap at 3 x 30 Hz. A frame that cannot be decoded makes that
assemble() refuse the observation with a reason naming the camera (logged, throttled), never an
exception in the node. Parameters and model loading: _model_node.py; message conversions:
messages.py.
"""
from __future__ import annotations

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from motus_ros.ros.images import compressed_to_numpy, image_to_numpy
from motus_ros.layout import IMAGE_TRANSPORTS, TOPICS, camera_transport_topic
from motus_ros.policy.sync import STATE, ObservationSync, SyncResult, state_vector
from motus_ros.ros.qos import image_qos
from motus_ros.stamps import to_seconds


class ObservationInput:
    """Subscribes the cameras and the joint state of a node and feeds an ObservationSync."""

    def __init__(self, node, cameras, tolerance_s: float, max_age_s: float,
                 joint_states_topic: str = TOPICS["joint_states"],
                 image_reliability: str = "reliable", image_transport: str = "raw"):
        if image_transport not in IMAGE_TRANSPORTS:
            raise ValueError(f"image_transport: got {image_transport!r}, expected one of "
                             f"{list(IMAGE_TRANSPORTS)}")
        self.node = node
        self.image_transport = image_transport
        self.sync = ObservationSync(cameras, tolerance_s, max_age_s)
        self.bad_state = ""
        self.bad_images = 0            # observations refused because a frame did not decode
        self.image_topics = {cam: camera_transport_topic(cam, image_transport) for cam in cameras}
        msg_type = CompressedImage if image_transport == "compressed" else Image
        self._decode = compressed_to_numpy if image_transport == "compressed" else image_to_numpy
        self._subs = [
            node.create_subscription(msg_type, topic,
                                     lambda msg, cam=cam: self._on_image(cam, msg),
                                     image_qos(image_reliability))
            for cam, topic in self.image_topics.items()]
        # Best effort matches any publisher; only the newest states matter to the sync.
        self._subs.append(node.create_subscription(JointState, joint_states_topic,
                                                   self._on_state, qos_profile_sensor_data))

    def set_limits(self, tolerance_s: float | None = None, max_age_s: float | None = None) -> None:
        """Change the sync tolerance or the oldest usable observation (s) from the next assemble()."""
        if tolerance_s is not None:
            self.sync.tolerance_s = float(tolerance_s)
        if max_age_s is not None:
            self.sync.max_age_s = float(max_age_s)

    def _on_image(self, camera: str, msg) -> None:
        self.sync.add(camera, to_seconds(msg.header.stamp), msg)

    def _on_state(self, msg: JointState) -> None:
        try:
            positions = state_vector(msg.name, msg.position)
        except ValueError as exc:
            self.bad_state = str(exc)
            return
        self.bad_state = ""
        self.sync.add(STATE, to_seconds(msg.header.stamp), positions)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def assemble(self, at: float | None = None, require_new: bool = True):
        """(SyncResult, observation dict or None) with images decoded to RGB uint8 (JPEG decoded
        here, once per call). A frame that does not decode gives (result not ok, None) with a
        reason naming the camera and its topic."""
        result: SyncResult = self.sync.assemble(self.now(), at=at, require_new=require_new)
        if not result.ok:
            if self.bad_state and "joint state" in result.reason:
                result.reason += f" (joint states rejected: {self.bad_state})"
            return result, None
        result, images = self._decoded(result)
        if images is None:
            return result, None
        return result, {"images": images, "state": result.samples[STATE].copy()}

    def images_at(self, at: float):
        """(SyncResult, {camera: RGB uint8 image} or None): the camera frames nearest time `at` (s),
        decoded, once every camera has reached it (ObservationSync.cameras_at); what the world
        model's predictions are compared with."""
        result = self.sync.cameras_at(at)
        if not result.ok:
            return result, None
        return self._decoded(result)

    def _decoded(self, result: SyncResult):
        """(result, {camera: RGB uint8}) or, when a frame does not decode, (result not ok naming
        the camera and its topic, None)."""
        images = {}
        for cam in self.sync.cameras:
            try:
                images[cam] = self._decode(result.samples[cam], "rgb8")
            except ValueError as exc:   # a corrupt or foreign frame: skip this observation
                self.bad_images += 1
                reason = (f"camera {cam}: undecodable frame on {self.image_topics[cam]} "
                          f"(image_transport {self.image_transport}): {exc}")
                self.node.get_logger().warning(reason, throttle_duration_sec=5.0)
                return SyncResult(False, reason, stamp=result.stamp, stamps=result.stamps), None
        return result, images
