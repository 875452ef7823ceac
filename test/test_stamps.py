"""motus_ros.stamps: seconds / nanoseconds <-> builtin_interfaces/Time, including the rounding carry."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from motus_ros.stamps import ns_to_time_msg, seconds_to_ns, to_ns, to_seconds, to_time_msg


def test_a_fraction_that_rounds_up_carries_into_the_seconds():
    msg = to_time_msg(1.9999999999)                 # 0.1 ns short of 2 s
    assert (msg.sec, msg.nanosec) == (2, 0)          # not (1, 0): a second early; not (1, 1e9)
    msg = to_time_msg(1.9999999996)
    assert (msg.sec, msg.nanosec) == (2, 0)


@pytest.mark.parametrize("seconds,sec,nanosec", [
    (0.0, 0, 0), (1.5, 1, 500_000_000), (100.0 + 1 / 30, 100, 33_333_333), (1.0000000004, 1, 0),
    (1.999999999, 1, 999_999_999),
])
def test_to_time_msg_rounds_to_the_nearest_nanosecond(seconds, sec, nanosec):
    msg = to_time_msg(seconds)
    assert (msg.sec, msg.nanosec) == (sec, nanosec)


def test_round_trips_through_integer_nanoseconds():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_234_567_890_123):
        msg = ns_to_time_msg(ns)
        assert 0 <= msg.nanosec < 1_000_000_000 and to_ns(msg) == ns
    assert seconds_to_ns(to_seconds(ns_to_time_msg(1_234_567_890_123))) == 1_234_567_890_123
    assert to_seconds(SimpleNamespace(sec=3, nanosec=250_000_000)) == pytest.approx(3.25)  # duck-typed
