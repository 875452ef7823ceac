"""run_node's helpers: a node on simulated time says when no /clock arrives instead of idling silently."""
from __future__ import annotations

import threading

import rclpy
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock

from motus_ros.ros.run import watch_sim_clock
from ros_harness import wait_until


class _Log:
    def __init__(self):
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    def warning(self, text: str, **_) -> None:
        with self._lock:
            self.warnings.append(text)


def _node(name: str, sim_time: bool):
    node = rclpy.create_node(name, parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, sim_time)])
    log = _Log()
    node.get_logger = lambda: log
    return node, log


def test_sim_time_node_warns_while_simulated_time_stands_still(ros):
    node, log = _node("clock_watch_probe", sim_time=True)
    watch = watch_sim_clock(node, period_s=0.2)
    ros.add(node)
    # the wall-clock timer fires although no /clock ever arrives
    wait_until(lambda: len(log.warnings) >= 2, 10.0, "two no-/clock warnings from the timer")
    assert "no /clock received yet" in log.warnings[0] and "ROS_DOMAIN_ID" in log.warnings[0]
    watch.timer.cancel()      # from here on the test calls check() itself: no timing in the asserts

    clock_pub = ros.node.create_publisher(Clock, "/clock", 10)

    def set_sim_time(sec: int) -> None:
        msg = Clock()
        msg.clock.sec = sec
        wait_until(lambda: clock_pub.publish(msg) or node.get_clock().now().nanoseconds == sec * 10**9,
                   10.0, f"/clock {sec} s at the node")

    set_sim_time(5)
    assert watch.check() is None                        # time moved since the last check
    assert "/clock stopped at 5.000 s" in watch.check()  # and then stood still
    set_sim_time(6)
    assert watch.check() is None


def test_wall_time_node_gets_no_watch(ros_context):
    node, _ = _node("clock_watch_wall", sim_time=False)
    try:
        assert watch_sim_clock(node, period_s=0.2) is None
    finally:
        node.destroy_node()
