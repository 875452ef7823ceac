"""Shared `main()` body for node executables: init, spin, clean shutdown on Ctrl-C / SIGTERM."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from motus_ros.params import ParameterError


def run_node(factory: Callable[[], "rclpy.node.Node"], args: list[str] | None = None,
             threads: int = 2) -> int:
    """Create the node and spin it until shutdown; returns the process exit status.

    A ParameterError at construction prints one line and exits 2; SIGTERM and Ctrl-C are normal
    exits (status 0) so `motus-ros bringup` can stop a graph cleanly.
    """
    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = executor = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except ParameterError as exc:
        print(f"{getattr(node, 'get_name', lambda: 'node')()}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            # Let callbacks still running in worker threads finish before the node goes away.
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
