"""Message types for bags: a rosbags typestore that also knows motus_msgs (no rclpy needed).

Custom types are registered from their .msg text, so their RIHS01 type hashes are the ones
rosidl computes (checked against the live graph in test/test_recorder_node.py).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from rosbags.typesys.store import Typestore

from motus_ros.paths import SOURCE_ROOT

CUSTOM_PACKAGES = ("motus_msgs",)
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"


def interface_dir(package: str) -> Path:
    """Folder holding <package>/msg/*.msg: the install prefix first, then the source checkout."""
    prefixes = [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]
    for prefix in prefixes:
        candidate = Path(prefix) / "share" / package
        if prefix and (candidate / "msg").is_dir():
            return candidate
    source = SOURCE_ROOT / package
    if (source / "msg").is_dir():
        return source
    raise FileNotFoundError(f"message definitions of {package}: no share/{package}/msg under "
                            f"{prefixes} nor {source}/msg")


def custom_types(package: str) -> dict:
    """rosbags type definitions parsed from every <package>/msg/*.msg file."""
    folder = interface_dir(package) / "msg"
    types: dict = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    return types


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Kilted typestore plus motus_msgs."""
    store = get_typestore(Stores.ROS2_KILTED)
    for package in CUSTOM_PACKAGES:
        store.register(custom_types(package))
    return store


def normalize_type(msgtype: str) -> str:
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' -> 'sensor_msgs/msg/Image'."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type: got {msgtype!r}, expected 'package/msg/Name'")
    return "/".join(parts)


def is_known(msgtype: str) -> bool:
    return normalize_type(msgtype) in typestore().fielddefs


def msgdef_and_hash(msgtype: str) -> tuple[str, str]:
    """(concatenated .msg definition, RIHS01 hash) as rosbag2 stores them."""
    store = typestore()
    msgtype = normalize_type(msgtype)
    if msgtype not in store.fielddefs:
        raise KeyError(f"message type {msgtype!r} is unknown to the bag typestore; known "
                       f"custom packages: {list(CUSTOM_PACKAGES)}")
    msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    return msgdef, store.hash_rihs01(msgtype)


def deserialize(data: bytes | memoryview, msgtype: str):
    """CDR bytes -> rosbags message object (dataclass-like)."""
    return typestore().deserialize_cdr(data, normalize_type(msgtype))


def serialize(msg, msgtype: str) -> bytes:
    """rosbags message object -> CDR bytes (little endian), as rclpy would publish it."""
    return bytes(typestore().serialize_cdr(msg, normalize_type(msgtype)))
