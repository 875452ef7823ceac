"""CameraPublisher: Image and/or CompressedImage (JPEG) + CameraInfo of one camera, fixed frame ids.

`transport` (PUBLISH_TRANSPORTS) chooses what goes out: raw (sensor_msgs/Image on the image
topic), compressed (sensor_msgs/CompressedImage, JPEG at `jpeg_quality`, on image_transport's
`<image topic>/compressed`) or both. All carry the same stamp and frame id as the CameraInfo.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from motus_ros.cameras.base import CameraIntrinsics
from motus_ros.ros.images import numpy_to_compressed, numpy_to_image
from motus_ros.layout import camera_image_topic, camera_info_topic, compressed_topic
from motus_ros.ros.qos import image_qos

PUBLISH_TRANSPORTS = ("raw", "compressed", "both")


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
    """Publishes one camera's Image and/or CompressedImage and CameraInfo (same stamp and frame
    id) on its topics. jpeg_quality may be changed between frames (a live parameter)."""

    def __init__(self, node, camera: str, intrinsics: CameraIntrinsics | None = None,
                 frame_id: str | None = None, image_topic: str | None = None,
                 info_topic: str | None = None, qos=None, transport: str = "raw",
                 jpeg_quality: int = 90):
        if transport not in PUBLISH_TRANSPORTS:
            raise ValueError(f"image_transport: got {transport!r}, expected one of "
                             f"{list(PUBLISH_TRANSPORTS)}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality: got {jpeg_quality!r}, expected 1..100")
        self.camera = camera
        self.intrinsics = intrinsics
        self.frame_id = frame_id or default_frame_id(camera)
        self.image_topic = image_topic or camera_image_topic(camera)
        self.compressed_topic = compressed_topic(self.image_topic)
        self.info_topic = info_topic or camera_info_topic(camera)
        self.transport = transport
        self.jpeg_quality = int(jpeg_quality)
        qos = qos or image_qos()  # reliable by default: see motus_ros/ros/qos.py
        self._node = node
        self._image_pub = (node.create_publisher(Image, self.image_topic, qos)
                           if transport in ("raw", "both") else None)
        self._compressed_pub = (node.create_publisher(CompressedImage, self.compressed_topic, qos)
                                if transport in ("compressed", "both") else None)
        self._info_pub = node.create_publisher(CameraInfo, self.info_topic, qos)
        self._info_cache: tuple | None = None
        self.published = 0

    def destroy(self) -> None:
        """Remove the publishers from the node (a reconfigured camera node makes new ones)."""
        for pub in (self._image_pub, self._compressed_pub, self._info_pub):
            if pub is not None:
                self._node.destroy_publisher(pub)

    def set_intrinsics(self, intrinsics: CameraIntrinsics | None) -> None:
        self.intrinsics = intrinsics
        self._info_cache = None

    def publish(self, image: np.ndarray, stamp) -> Image | CompressedImage:
        """Publish an HxWx3 uint8 RGB frame with `stamp` (builtin_interfaces/Time); returns the
        Image (the CompressedImage when only that is published).

        Runs in the caller's thread: the camera's reader thread (camera node) or the simulation's
        render thread (sim node). The JPEG encoding happens here, once per frame, whatever the
        number of subscribers, and never on the ROS executor."""
        height, width = int(image.shape[0]), int(image.shape[1])
        key = (width, height)
        if self._info_cache is None or self._info_cache[0] != key:
            intr = self.intrinsics
            if intr is not None and (intr.width, intr.height) != key:
                intr = intr.scaled(*key)
            self._info_cache = (key, camera_info(intr, width, height, frame_id=self.frame_id))
        info = self._info_cache[1]
        info.header.stamp = stamp
        msg = None
        if self._image_pub is not None:
            msg = numpy_to_image(image, "rgb8", stamp=stamp, frame_id=self.frame_id)
            self._image_pub.publish(msg)
        if self._compressed_pub is not None:
            compressed = numpy_to_compressed(image, "rgb8", self.jpeg_quality, stamp=stamp,
                                             frame_id=self.frame_id)   # the one JPEG encode
            self._compressed_pub.publish(compressed)
            msg = compressed if msg is None else msg
        self._info_pub.publish(info)
        self.published += 1
        return msg
