"""CameraPublisher: Image + CameraInfo of one camera with sensor-data QoS and fixed frame ids."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from motus_ros.cameras.base import CameraIntrinsics
from motus_ros.ros.images import numpy_to_image
from motus_ros.layout import camera_image_topic, camera_info_topic
from motus_ros.ros.qos import image_qos


def camera_info(intr: CameraIntrinsics | None, width: int, height: int, stamp=None,
                frame_id: str = "") -> CameraInfo:
    """CameraInfo for a (rectified-as-is) pinhole camera; all-zero K when intrinsics are unknown."""
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(width), int(height)
    if intr is None:
        return msg  # K all zero: the ROS convention for "uncalibrated"
    msg.distortion_model = intr.distortion_model
    msg.d = [float(v) for v in intr.distortion]
    msg.k = intr.camera_matrix()
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def default_frame_id(camera: str) -> str:
    return f"camera_{camera}_color_optical_frame"


class CameraPublisher:
    """Publishes one camera's Image and CameraInfo (same stamp and frame id) on its topics."""

    def __init__(self, node, camera: str, intrinsics: CameraIntrinsics | None = None,
                 frame_id: str | None = None, image_topic: str | None = None,
                 info_topic: str | None = None, qos=None):
        self.camera = camera
        self.intrinsics = intrinsics
        self.frame_id = frame_id or default_frame_id(camera)
        self.image_topic = image_topic or camera_image_topic(camera)
        self.info_topic = info_topic or camera_info_topic(camera)
        qos = qos or image_qos()  # reliable by default: see motus_ros/ros/qos.py
        self._node = node
        self._image_pub = node.create_publisher(Image, self.image_topic, qos)
        self._info_pub = node.create_publisher(CameraInfo, self.info_topic, qos)
        self._info_cache: tuple | None = None
        self.published = 0

    def destroy(self) -> None:
        """Remove the two publishers from the node (a reconfigured camera node makes new ones)."""
        self._node.destroy_publisher(self._image_pub)
        self._node.destroy_publisher(self._info_pub)

    def set_intrinsics(self, intrinsics: CameraIntrinsics | None) -> None:
        self.intrinsics = intrinsics
        self._info_cache = None

    def publish(self, image: np.ndarray, stamp) -> Image:
        """Publish an HxWx3 uint8 RGB frame with `stamp` (builtin_interfaces/Time)."""
        msg = numpy_to_image(image, "rgb8", stamp=stamp, frame_id=self.frame_id)
        key = (msg.width, msg.height)
        if self._info_cache is None or self._info_cache[0] != key:
            intr = self.intrinsics
            if intr is not None and (intr.width, intr.height) != key:
                intr = intr.scaled(*key)
            self._info_cache = (key, camera_info(intr, msg.width, msg.height, frame_id=self.frame_id))
        info = self._info_cache[1]
        info.header.stamp = stamp
        self._image_pub.publish(msg)
        self._info_pub.publish(info)
        self.published += 1
        return msg
