"""Parsing of the recorder's topic list and QoS adaptation to publishers (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from motus_ros import layout
from motus_ros.data.types import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, normalize_type

ALL_TOPICS = "*"


@dataclass(frozen=True)
class TopicSpec:
    """A topic to record; msgtype None means "take the type from the ROS graph"."""

    topic: str
    msgtype: str | None = None


def parse_topic_spec(text: str, field: str = "topics") -> TopicSpec:
    """'/topic:pkg/msg/Type', '/topic' or '*' -> TopicSpec (errors name the field and value)."""
    text = text.strip()
    if text == ALL_TOPICS:
        return TopicSpec(ALL_TOPICS)
    topic, sep, msgtype = text.partition(":")
    if not topic.startswith("/") or " " in topic:
        raise ValueError(f"{field}: got {text!r}, expected '/topic:package/msg/Type', '/topic' "
                         f"or '*'")
    if not sep:
        return TopicSpec(topic)
    try:
        return TopicSpec(topic, normalize_type(msgtype))
    except ValueError as exc:
        raise ValueError(f"{field}: got {text!r}: {exc}") from None


def parse_topic_specs(items: list[str], field: str = "topics") -> list[TopicSpec]:
    specs = [parse_topic_spec(item, field) for item in items if item.strip()]
    seen: dict[str, TopicSpec] = {}
    for spec in specs:
        if spec.topic in seen and seen[spec.topic] != spec:
            raise ValueError(f"{field}: topic {spec.topic} listed twice with different types")
        seen[spec.topic] = spec
    return list(seen.values())


def apply_image_transport(specs: list[TopicSpec], transport: str,
                          field: str = "image_transport") -> list[TopicSpec]:
    """The specs a recorder reading cameras over `transport` (layout.IMAGE_TRANSPORTS) records.

    raw: unchanged. compressed: every entry typed sensor_msgs/msg/Image becomes image_transport's
    `<topic>/compressed` typed sensor_msgs/msg/CompressedImage, recorded as received (no
    re-encoding). Untyped entries and '*' are left as they are (their type comes from the graph).
    """
    if transport not in layout.IMAGE_TRANSPORTS:
        raise ValueError(f"{field}: got {transport!r}, expected one of {list(layout.IMAGE_TRANSPORTS)}")
    if transport == "raw":
        return list(specs)
    out: dict[str, TopicSpec] = {}
    for spec in specs:
        if spec.msgtype == IMAGE_TYPE:
            spec = TopicSpec(layout.compressed_topic(spec.topic), COMPRESSED_IMAGE_TYPE)
        if spec.topic in out and out[spec.topic] != spec:
            raise ValueError(f"{field}: {transport} turns an Image entry into {spec.topic}, also "
                             f"listed as {out[spec.topic].msgtype}")
        out[spec.topic] = spec
    return list(out.values())


def default_topic_specs() -> list[str]:
    """Everything a training episode needs, with the graph's default names and types."""
    specs = [f"{layout.camera_image_topic(c)}:sensor_msgs/msg/Image" for c in layout.CAMERAS]
    specs += [f"{layout.camera_info_topic(c)}:sensor_msgs/msg/CameraInfo" for c in layout.CAMERAS]
    specs += [
        f"{layout.TOPICS['joint_states']}:sensor_msgs/msg/JointState",
        f"{layout.TOPICS['leader_joint_states']}:sensor_msgs/msg/JointState",
        f"{layout.TOPICS['joint_command']}:sensor_msgs/msg/JointState",
        f"{layout.TOPICS['action_chunk']}:motus_msgs/msg/ActionChunk",
        f"{layout.TOPICS['mode']}:motus_msgs/msg/InferenceMode",
        f"{layout.TOPICS['instruction']}:std_msgs/msg/String",
        layout.TOPICS["task_success"],
        # The sim's reset marker: the converter drops everything recorded before it.
        f"{layout.TOPICS['episode_start']}:std_msgs/msg/Header",
    ]
    return specs


def adapt_qos(offered: list[tuple[bool, bool]]) -> tuple[bool, bool]:
    """(reliable, transient_local) for a subscription that matches every publisher.

    offered: (reliable, transient_local) per publisher. Like rosbag2: reliable only when all
    publishers are reliable (a reliable reader never matches a best-effort writer), transient
    local only when all are (a transient-local reader never matches a volatile writer).
    """
    if not offered:
        return True, False
    return all(r for r, _ in offered), all(t for _, t in offered)
