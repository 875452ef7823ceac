"""An in-process rclpy node that watches a running graph and calls its services.

Shared by `motus-ros demo` and `motus-ros eval`: it follows simulated time (/clock), spins in a
background thread, and turns a dead required node, a missing service or a silent one into a
CliError that says which.
"""
from __future__ import annotations

import threading
import time

from motus_ros.cli import CliError


class GraphMonitor:
    """Node `name` on simulated time; subclasses add their subscriptions in __init__."""

    def __init__(self, name: str):
        import rclpy  # noqa: PLC0415 - keep `motus-ros --help` free of ROS imports
        from rclpy.executors import MultiThreadedExecutor  # noqa: PLC0415
        from rclpy.parameter import Parameter  # noqa: PLC0415

        rclpy.init()
        self.node = rclpy.create_node(name, parameter_overrides=[
            Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._lock = threading.Lock()
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        # Our own spin loop (not executor.spin) so close() can stop and join it before the node
        # and context go away: a spin thread still waiting in rcl at interpreter exit aborts the
        # process ("terminate called without an active exception", 9 of 40 runs before this).
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context shut down under us
                if self._stop.is_set():
                    return
                raise

    def now(self) -> float:
        """Simulated time (s) from /clock."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def wait_for(self, predicate, timeout: float, runner=None, interval: float = 0.05) -> bool:
        """Poll predicate for up to timeout wall seconds; a dead required node raises CliError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            failed = runner.poll() if runner is not None else None
            if failed is not None:
                raise CliError(f"required node {failed.spec.name} died (exit code "
                               f"{runner.exit_codes[failed.spec.name]}); see its log")
            time.sleep(interval)
        return predicate()

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise CliError(f"service {name} did not appear within {timeout:.0f} s")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                raise CliError(f"service {name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def trigger(self, name: str) -> str:
        """Call the std_srvs/Trigger service `name`; its message, or a CliError when it refuses."""
        from std_srvs.srv import Trigger  # noqa: PLC0415

        res = self.call(Trigger, name, Trigger.Request())
        if not res.success:
            raise CliError(f"{name} failed: {res.message}")
        return res.message

    def close(self) -> None:
        import rclpy  # noqa: PLC0415

        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.remove_node(self.node)
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown()
