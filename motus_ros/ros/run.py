"""Shared `main()` body for node executables: init, spin, clean shutdown on Ctrl-C / SIGTERM."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from motus_ros.params import ParameterError


SIM_CLOCK_CHECK_S = 10.0  # wall seconds between checks that simulated time advances


class SimClockWatch:
    """Warns when simulated time stands still: with use_sim_time every timer of a node runs on
    /clock, so without a simulation publishing it the node does nothing and says nothing."""

    def __init__(self, node: "rclpy.node.Node", period_s: float):
        self.node = node
        self.period_s = period_s
        self.last_ns = node.get_clock().now().nanoseconds
        self.timer = None

    def check(self) -> str | None:
        """Log (and return) a warning if simulated time has not moved since the last check."""
        now = self.node.get_clock().now().nanoseconds
        stopped, self.last_ns = now == self.last_ns, now
        if not stopped:
            return None
        what = "no /clock received yet" if now == 0 else f"/clock stopped at {now * 1e-9:.3f} s"
        text = (f"use_sim_time is true and {what} for {self.period_s:g} s: this node's timers wait for "
                "simulated time (is the simulation running and on this ROS_DOMAIN_ID?)")
        self.node.get_logger().warning(text)
        return text


def watch_sim_clock(node: "rclpy.node.Node", period_s: float = SIM_CLOCK_CHECK_S) -> SimClockWatch | None:
    """A SimClockWatch checked every period_s of wall time (None without use_sim_time)."""
    from rclpy.clock import Clock, ClockType  # noqa: PLC0415

    if not node.get_parameter("use_sim_time").value:
        return None
    watch = SimClockWatch(node, period_s)
    watch.timer = node.create_timer(period_s, watch.check, clock=Clock(clock_type=ClockType.STEADY_TIME))
    return watch


def run_node(factory: Callable[[], "rclpy.node.Node | list[rclpy.node.Node]"], args: list[str] | None = None,
             threads: int = 2) -> int:
    """Create the node (or the nodes of one process) and spin until shutdown; returns the exit status.

    A ParameterError at construction prints one line and exits 2; SIGTERM and Ctrl-C are normal
    exits (status 0) so `motus-ros bringup` can stop a graph cleanly. Several nodes are closed in
    reverse order of creation. A node that ends the process itself (rclpy.try_shutdown) with a
    non-zero `exit_code` attribute makes that the exit status (the lifecycle manager's failed
    bring-up).
    """
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy  # noqa: PLC0415

    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    nodes: list = []
    executor = None
    try:
        made = factory()
        nodes = list(made) if isinstance(made, (list, tuple)) else [made]
        for node in nodes:
            watch_sim_clock(node)
        executor = MultiThreadedExecutor(num_threads=threads)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except ParameterError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (_rclpy.RCLError, _rclpy.InvalidHandle):
        if rclpy.ok():
            raise
        # SIGTERM shut the context down (and destroyed handles) while the executor was building
        # its wait set: a normal exit
    finally:
        if executor is not None:
            # Let callbacks still running in worker threads finish before the nodes go away.
            executor.shutdown(timeout_sec=5.0)
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return max((getattr(node, "exit_code", 0) for node in nodes), default=0)
