"""Images <-> JPEG/PNG with OpenCV, for sensor_msgs/CompressedImage; Image CDR -> CompressedImage CDR.

Pure (rosbags typestore + OpenCV, no rclpy): the recorder, the converter, the Foxglove bridge and
motus_ros.ros.images (rclpy messages) share encode_array / decode_array and the one
implementation of the `format` field, which follows image_transport's compressed plugin:
"<source encoding>; <jpeg|png> compressed <stored encoding>" (e.g. "rgb8; jpeg compressed bgr8").

Encoder: OpenCV's cv2.imencode / cv2.imdecode. The opencv-python(-headless) wheels the project
already depends on are built with libjpeg-turbo (cv2.getBuildInformation(): "JPEG:
build-libjpeg-turbo (ver 3.1.2-70)"): SIMD JPEG (a 640x480 frame at quality 90: ~1 ms to
encode, ~1.5 ms to decode, ~20 kB instead of 900 kB, on this project's 2-core machine), a
maintained, pinned binary wheel on every platform the project runs on, and no new dependency.
"""
from __future__ import annotations

import cv2
import numpy as np

from motus_ros.data import types as bag_types
from motus_ros.layout import compressed_topic  # noqa: F401 - image_transport naming, used from here

COMPRESSIONS = ("none", "jpeg", "png")
FORMATS = ("jpeg", "png")             # what a CompressedImage here carries
CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
FORMAT_FIELD = "CompressedImage.format"


def compressed_format(encoding: str, compression: str) -> str:
    """The `format` of an image of `encoding` stored as `compression` (image_transport's
    compressed plugin): OpenCV stores colour as bgr8, mono8 as mono8."""
    if encoding not in CHANNELS:
        raise ValueError(f"encoding: got {encoding!r}, expected one of {sorted(CHANNELS)}")
    if compression not in FORMATS:
        raise ValueError(f"compression: got {compression!r}, expected one of {list(FORMATS)}")
    stored = "mono8" if encoding == "mono8" else "bgr8"
    return f"{encoding}; {compression} compressed {stored}"


def parse_compressed_format(fmt: str, field: str = FORMAT_FIELD) -> tuple[str | None, str, str | None]:
    """`format` -> (source encoding, 'jpeg' | 'png', stored encoding); the encodings are None
    where the text does not give them (the old bare "jpeg" / "png"). ValueError naming `field`
    for anything else (another codec, compressedDepth, empty)."""
    text = str(fmt).strip()
    bare = text.lower()
    if bare in ("jpeg", "jpg", "png"):
        return None, "png" if bare == "png" else "jpeg", None
    source, sep, rest = text.partition(";")
    words = rest.split()
    if sep and source.strip() and 2 <= len(words) <= 3 and words[0].lower() in FORMATS \
            and words[1] == "compressed":
        return source.strip(), words[0].lower(), words[2] if len(words) == 3 else None
    raise ValueError(f"{field}: got {fmt!r}, expected '<encoding>; jpeg compressed <encoding>' "
                     "or '<encoding>; png compressed <encoding>' (image_transport's compressed "
                     "plugin, e.g. 'rgb8; jpeg compressed bgr8'), or 'jpeg' / 'png'")


def _uint8(data) -> np.ndarray:
    """Message bytes (bytes, array.array, list, numpy) as a 1-D uint8 array (no copy if possible)."""
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "typecode"):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def encode_array(img: np.ndarray, encoding: str, compression: str = "jpeg",
                 jpeg_quality: int = 90, png_level: int = 3) -> tuple[str, np.ndarray]:
    """HxWx3 (rgb8/bgr8) or HxW / HxWx1 (mono8) uint8 -> (format, encoded bytes as 1-D uint8)."""
    fmt = compressed_format(encoding, compression)
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality: got {jpeg_quality!r}, expected 1..100")
    if encoding == "rgb8":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    if compression == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:
        raise ValueError(f"OpenCV could not {compression}-encode a {img.shape} {encoding} image")
    return fmt, np.asarray(buf, dtype=np.uint8).reshape(-1)


def decode_array(data, fmt: str, field: str = "CompressedImage") -> np.ndarray:
    """JPEG/PNG bytes with their `format` -> HxWx3 uint8 RGB. ValueError naming `field`.format
    (unknown format) or `field`.data (not decodable)."""
    _source, compression, stored = parse_compressed_format(fmt, f"{field}.format")
    buf = _uint8(data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"{field}.data: OpenCV could not decode {buf.size} bytes as "
                         f"{compression} (format {fmt!r})")
    if stored == "rgb8":   # an encoder that handed OpenCV RGB: it comes back in that order
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_array(msg) -> np.ndarray:
    """rosbags sensor_msgs/Image -> HxWxC uint8 array in its own channel order."""
    if msg.encoding not in CHANNELS:
        raise ValueError(f"Image.encoding: got {msg.encoding!r}, expected one of {sorted(CHANNELS)}")
    channels = CHANNELS[msg.encoding]
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
    if compression not in FORMATS:
        raise ValueError(f"compression: got {compression!r}, expected 'jpeg' or 'png'")
    store = bag_types.typestore()
    msg = store.deserialize_cdr(bytes(data), bag_types.IMAGE_TYPE)
    img = image_array(msg)
    if max_width is not None and img.shape[1] > max_width:
        height = max(1, round(img.shape[0] * max_width / img.shape[1]))
        img = cv2.resize(img, (int(max_width), height), interpolation=cv2.INTER_AREA)
    fmt, buf = encode_array(img, msg.encoding, compression, jpeg_quality, png_level)
    cls = store.types[bag_types.COMPRESSED_IMAGE_TYPE]
    out = cls(header=msg.header, format=fmt, data=buf)
    return bag_types.serialize(out, bag_types.COMPRESSED_IMAGE_TYPE)


def decode_compressed(msg) -> np.ndarray:
    """rosbags (or rclpy) CompressedImage -> HxWx3 uint8 RGB array."""
    return decode_array(msg.data, msg.format)


def image_to_rgb(msg) -> np.ndarray:
    """rosbags Image (rgb8/bgr8/mono8) -> HxWx3 uint8 RGB array."""
    img = image_array(msg)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(img[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)
