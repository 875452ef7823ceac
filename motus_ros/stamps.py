"""Seconds / nanoseconds <-> builtin_interfaces/Time, the one copy (pure functions, no rclpy).

Conversions go through integer nanoseconds, so a value whose fraction rounds up to a whole second
(1.9999999999 s) becomes sec=2, nanosec=0, never sec=1 with nanosec=0 (a second early) or
nanosec=1e9 (not a valid Time).
"""
from __future__ import annotations

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds, rounded to the nearest."""
    return int(round(float(seconds) * NS_PER_S))


def ns_to_time_msg(ns: int):
    """Integer nanoseconds -> builtin_interfaces/Time (nanosec always in [0, 1e9))."""
    from builtin_interfaces.msg import Time  # noqa: PLC0415 - keep the module importable without ROS

    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def to_time_msg(seconds: float):
    """Seconds (float) -> builtin_interfaces/Time, rounded to the nearest nanosecond."""
    return ns_to_time_msg(seconds_to_ns(seconds))


def to_ns(stamp) -> int:
    """builtin_interfaces/Time (or anything with sec and nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def to_seconds(stamp) -> float:
    """builtin_interfaces/Time (or anything with sec and nanosec) -> seconds (float)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9
