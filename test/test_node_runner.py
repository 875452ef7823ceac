"""run_node's helpers: a node on simulated time says when no /clock arrives instead of idling silently."""
from __future__ import annotations

import threading

import rclpy
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock

from motus_ros.nodes._run import watch_sim_clock
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


def test_sim_time_node_warns_while_no_clock_arrives_and_stops_once_it_runs(ros):
    node, log = _node("clock_watch_probe", sim_time=True)
    assert watch_sim_clock(node, period_s=0.2) is not None
    ros.add(node)
    wait_until(lambda: len(log.warnings) >= 2, 10.0, "two no-/clock warnings")
    assert "no /clock received yet" in log.warnings[0] and "ROS_DOMAIN_ID" in log.warnings[0]

    clock_pub = ros.node.create_publisher(Clock, "/clock", 10)
    stop = threading.Event()

    def publish_clock() -> None:      # a running simulation: /clock advances 0.05 s every 0.05 s
        t = 5.0
        while not stop.is_set():
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(t), int((t % 1) * 1e9)
            clock_pub.publish(msg)
            t += 0.05
            stop.wait(0.05)

    thread = threading.Thread(target=publish_clock, daemon=True)
    thread.start()
    try:
        wait_until(lambda: node.get_clock().now().nanoseconds > 5e9, 10.0, "/clock to reach the node")
        count = len(log.warnings)
        threading.Event().wait(1.0)              # five checks with time advancing
        assert len(log.warnings) <= count + 1    # at most the one check that straddled the first /clock
    finally:
        stop.set()
        thread.join()
    wait_until(lambda: any("/clock stopped at" in w for w in log.warnings), 10.0, "a 'stopped' warning")


def test_wall_time_node_gets_no_watch(ros_context):
    node, _ = _node("clock_watch_wall", sim_time=False)
    try:
        assert watch_sim_clock(node, period_s=0.2) is None
    finally:
        node.destroy_node()
