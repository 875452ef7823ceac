"""numpy <-> sensor_msgs/Image without cv_bridge (not available from PyPI)."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def numpy_to_image(array: np.ndarray, encoding: str = "rgb8", stamp=None, frame_id: str = "") -> Image:
    """HxWx3 (rgb8/bgr8) or HxW (mono8) uint8 array -> Image."""
    if encoding not in _CHANNELS:
        raise ValueError(f"encoding: got {encoding!r}, expected one of {sorted(_CHANNELS)}")
    if array.dtype != np.uint8:
        raise ValueError(f"image dtype: got {array.dtype}, expected uint8")
    channels = _CHANNELS[encoding]
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"image shape for {encoding}: got {array.shape}, expected "
                         f"{'HxWx3' if channels > 1 else 'HxW'}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def image_to_numpy(msg: Image, want: str = "rgb8") -> np.ndarray:
    """Image (rgb8, bgr8 or mono8) -> HxWx3 uint8 array in `want` order (rgb8 or bgr8)."""
    if msg.encoding not in _CHANNELS:
        raise ValueError(f"Image.encoding: got {msg.encoding!r}, expected one of {sorted(_CHANNELS)}")
    channels = _CHANNELS[msg.encoding]
    row = msg.width * channels
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"Image data: {len(msg.data)} bytes, step {msg.step}, expected at least "
                         f"{row * msg.height} for {msg.width}x{msg.height} {msg.encoding}")
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)[:, :row]
    if channels == 1:
        return np.repeat(buf.reshape(msg.height, msg.width, 1), 3, axis=2)
    img = buf.reshape(msg.height, msg.width, 3)
    if msg.encoding != want:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)
