"""Images from a rosbag2 folder (MCAP or sqlite3), read with the pure-Python `rosbags` package.

Reads sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) and sensor_msgs/CompressedImage (JPEG/PNG)
from one topic, paced by the recorded receive times: frame i is due at
start + (t_i - t_0) / rate. `restamp=True` (default) stamps frames on publication, so a graph that
refuses old observations accepts replayed ones; `restamp=False` keeps the recorded header stamps.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from motus_ros.cameras.base import CameraBackend, CameraError, CameraFrame, EndOfStream
from motus_ros.stamps import to_seconds

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def decode_image(msg, msgtype: str) -> np.ndarray:
    """A deserialized (rosbags) Image or CompressedImage -> HxWx3 uint8 RGB."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        import cv2  # noqa: PLC0415

        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CameraError(f"CompressedImage format {msg.format!r}: cannot decode")
        return np.ascontiguousarray(bgr[:, :, ::-1])
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}.get(msg.encoding)
    if channels is None:
        raise CameraError(f"Image.encoding: got {msg.encoding!r}, expected one of "
                          "['bgr8', 'bgra8', 'mono8', 'rgb8', 'rgba8']")
    row = msg.width * channels
    data = np.asarray(msg.data, dtype=np.uint8)
    if msg.step < row or data.size < msg.step * msg.height:
        raise CameraError(f"Image data: {data.size} bytes, step {msg.step}, expected at least "
                          f"{row * msg.height} for {msg.width}x{msg.height} {msg.encoding}")
    img = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    img = img.reshape(msg.height, msg.width, channels)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif msg.encoding.startswith("bgr"):
        img = img[:, :, 2::-1]
    else:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


class ReplayBackend(CameraBackend):
    """Frames of one image topic of a rosbag2 folder, paced by the recorded times."""

    def __init__(self, bag: str, topic: str, loop: bool = True, rate: float = 1.0,
                 restamp: bool = True):
        self.bag = Path(bag)
        self.topic = topic
        self.loop = bool(loop)
        if rate <= 0:
            raise CameraError(f"replay rate: got {rate}, expected > 0")
        self.rate = float(rate)
        self.restamp = bool(restamp)
        self.description = f"replay:{self.bag.name}:{topic}"
        self._reader = None
        self._iter = None
        self._connection = None
        self._t0_bag = None
        self._t0_wall = None

    def open(self) -> None:
        from rosbags.highlevel import AnyReader  # noqa: PLC0415

        if not self.bag.exists():
            raise CameraError(f"{self.description}: bag folder {self.bag} not found")
        try:
            reader = AnyReader([self.bag])
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several reader errors
            raise CameraError(f"{self.description}: cannot read bag {self.bag}: {exc}") from exc
        conns = [c for c in reader.connections if c.topic == self.topic]
        if not conns:
            topics = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
            reader.close()
            raise CameraError(f"{self.description}: topic {self.topic!r} not in bag; image topics "
                              f"there: {topics}")
        if conns[0].msgtype not in IMAGE_TYPES:
            reader.close()
            raise CameraError(f"{self.description}: topic type {conns[0].msgtype}, expected one of "
                              f"{list(IMAGE_TYPES)}")
        self._reader, self._connection = reader, conns
        self._restart()

    def _restart(self) -> None:
        self._iter = self._reader.messages(connections=self._connection)
        self._t0_bag = None
        self._t0_wall = time.monotonic()

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        if self._reader is None:
            raise CameraError(f"{self.description}: read() before open()")
        item = next(self._iter, None)
        if item is None:
            if not self.loop:
                raise EndOfStream(f"{self.description}: end of bag")
            self._restart()
            item = next(self._iter, None)
            if item is None:
                raise CameraError(f"{self.description}: topic has no messages")
        connection, t_ns, raw = item
        msg = self._reader.deserialize(raw, connection.msgtype)
        image = decode_image(msg, connection.msgtype)
        if self._t0_bag is None:
            self._t0_bag = t_ns
        due = self._t0_wall + (t_ns - self._t0_bag) * 1e-9 / self.rate
        stamp = None
        if not self.restamp:
            stamp = to_seconds(msg.header.stamp)
        return CameraFrame(image=image, stamp=stamp, due=due, info={"bag_time_ns": t_ns})

    def close(self) -> None:
        reader, self._reader = self._reader, None
        self._iter = None
        if reader is not None:
            reader.close()
