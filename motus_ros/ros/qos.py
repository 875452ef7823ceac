"""QoS profiles shared by publishers and subscribers: camera images, and latched state topics.

Measured here (`motus-ros bench perception`, Fast DDS from the Kilted wheels, LARGE_DATA
transports, 2 loaded cores): three 640x480 rgb8 streams at 30 Hz between two processes arrived
3-7% of the time with best-effort QoS (one stream alone: 4 of 180) and 100% with reliable QoS
(p50 ~16 ms); at 320x240 both arrived 100%. So images default to reliable with a short
keep-last history: a slow subscriber costs the publisher nothing (old frames are overwritten),
and a reliable publisher still matches best-effort subscribers such as RViz's sensor preset.
Choose best_effort on the subscriber side only to match a third-party camera driver that
publishes best effort (a reliable subscriber never matches a best-effort publisher).
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

IMAGE_RELIABILITY = ("reliable", "best_effort")
IMAGE_DEPTH = 5
# A state topic sent on change (the sim's episode, /arm/enabled, the latest predicted future):
# keep the newest message for subscribers that join later.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def image_qos(reliability: str = "reliable") -> QoSProfile:
    """Keep-last QoS for image topics; ValueError names the accepted values."""
    if reliability not in IMAGE_RELIABILITY:
        raise ValueError(f"image reliability: got {reliability!r}, expected one of "
                         f"{list(IMAGE_RELIABILITY)}")
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=IMAGE_DEPTH, reliability=policy)
