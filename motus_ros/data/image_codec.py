"""sensor_msgs/Image CDR -> sensor_msgs/CompressedImage CDR (JPEG or PNG via OpenCV), and back.

Pure (rosbags typestore + OpenCV, no rclpy). The `format` field follows image_transport's
compressed plugin: "<source encoding>; <jpeg|png> compressed <stored encoding>".
"""
from __future__ import annotations

import cv2
import numpy as np

from motus_ros.data import types as bag_types

COMPRESSIONS = ("none", "jpeg", "png")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def compressed_topic(topic: str) -> str:
    """image_transport naming: /camera/image_raw -> /camera/image_raw/compressed."""
    return topic.rstrip("/") + "/compressed"


def image_array(msg) -> np.ndarray:
    """rosbags sensor_msgs/Image -> HxWxC uint8 array in its own channel order."""
    if msg.encoding not in _CHANNELS:
        raise ValueError(f"Image.encoding: got {msg.encoding!r}, expected one of {sorted(_CHANNELS)}")
    channels = _CHANNELS[msg.encoding]
    row = msg.width * channels
    data = np.asarray(msg.data, dtype=np.uint8)
    if msg.step < row or data.size < msg.step * msg.height:
        raise ValueError(f"Image data: {data.size} bytes, step {msg.step}, expected at least "
                         f"{row * msg.height} for {msg.width}x{msg.height} {msg.encoding}")
    return data[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :row].reshape(
        msg.height, msg.width, channels)


def compress_image_cdr(data: bytes | memoryview, compression: str, jpeg_quality: int = 90,
                       png_level: int = 3, max_width: int | None = None) -> bytes:
    """Serialized Image -> serialized CompressedImage (same header); with max_width, wider images
    are first downscaled to that width (aspect kept; area averaging, for a live view)."""
    if compression not in ("jpeg", "png"):
        raise ValueError(f"compression: got {compression!r}, expected 'jpeg' or 'png'")
    store = bag_types.typestore()
    msg = store.deserialize_cdr(bytes(data), bag_types.IMAGE_TYPE)
    img = image_array(msg)
    if msg.encoding == "rgb8":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    if max_width is not None and img.shape[1] > max_width:
        height = max(1, round(img.shape[0] * max_width / img.shape[1]))
        img = cv2.resize(img, (int(max_width), height), interpolation=cv2.INTER_AREA)
    stored = "mono8" if msg.encoding == "mono8" else "bgr8"
    if compression == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:
        raise ValueError(f"OpenCV could not {compression}-encode a {msg.width}x{msg.height} "
                         f"{msg.encoding} image")
    cls = store.types[bag_types.COMPRESSED_IMAGE_TYPE]
    out = cls(header=msg.header, format=f"{msg.encoding}; {compression} compressed {stored}",
              data=np.asarray(buf, dtype=np.uint8).reshape(-1))
    return bag_types.serialize(out, bag_types.COMPRESSED_IMAGE_TYPE)


def decode_compressed(msg) -> np.ndarray:
    """rosbags CompressedImage -> HxWx3 uint8 RGB array."""
    img = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"CompressedImage ({msg.format!r}): OpenCV could not decode "
                         f"{len(msg.data)} bytes")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_to_rgb(msg) -> np.ndarray:
    """rosbags Image (rgb8/bgr8/mono8) -> HxWx3 uint8 RGB array."""
    img = image_array(msg)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(img[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)
