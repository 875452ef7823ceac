"""numpy <-> sensor_msgs/Image and sensor_msgs/CompressedImage without cv_bridge (not on PyPI).

CompressedImage follows image_transport's compressed plugin (topic `<image topic>/compressed`,
format "rgb8; jpeg compressed bgr8"); the encoding, decoding and the format string are
motus_ros.data.image_codec's (OpenCV, libjpeg-turbo), shared with the recorder and the converter.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from motus_ros.data import image_codec
from motus_ros.data.image_codec import CHANNELS  # one table of the encodings the project reads


def _check_array(array: np.ndarray, encoding: str) -> None:
    if encoding not in CHANNELS:
        raise ValueError(f"encoding: got {encoding!r}, expected one of {sorted(CHANNELS)}")
    if array.dtype != np.uint8:
        raise ValueError(f"image dtype: got {array.dtype}, expected uint8")
    channels = CHANNELS[encoding]
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"image shape for {encoding}: got {array.shape}, expected "
                         f"{'HxWx3' if channels > 1 else 'HxW'}")


def numpy_to_image(array: np.ndarray, encoding: str = "rgb8", stamp=None, frame_id: str = "") -> Image:
    """HxWx3 (rgb8/bgr8) or HxW (mono8) uint8 array -> Image."""
    _check_array(array, encoding)
    channels = CHANNELS[encoding]
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
    """Image (rgb8, bgr8 or mono8) -> HxWx3 uint8 array in `want` order (rgb8 or bgr8); the
    checks and the decoding are image_codec's, shared with the recorder and the converter."""
    rgb = image_codec.image_to_rgb(msg)
    return rgb if want == "rgb8" else np.ascontiguousarray(rgb[:, :, ::-1])


def numpy_to_compressed(array: np.ndarray, encoding: str = "rgb8", quality: int = 90,
                        stamp=None, frame_id: str = "", compression: str = "jpeg") -> CompressedImage:
    """HxWx3 (rgb8/bgr8) or HxW (mono8) uint8 array -> CompressedImage (JPEG at `quality`
    1..100, or PNG), format e.g. "rgb8; jpeg compressed bgr8"."""
    _check_array(array, encoding)
    fmt, data = image_codec.encode_array(array, encoding, compression, jpeg_quality=quality)
    msg = CompressedImage()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.format = fmt
    msg.data = data.tobytes()
    return msg


def compressed_to_numpy(msg: CompressedImage, want: str = "rgb8") -> np.ndarray:
    """CompressedImage (JPEG/PNG) -> HxWx3 uint8 array in `want` order (rgb8 or bgr8), like
    image_to_numpy. ValueError naming CompressedImage.format or CompressedImage.data."""
    if want not in ("rgb8", "bgr8"):
        raise ValueError(f"want: got {want!r}, expected 'rgb8' or 'bgr8'")
    img = image_codec.decode_array(msg.data, msg.format)
    return img if want == "rgb8" else np.ascontiguousarray(img[:, :, ::-1])

