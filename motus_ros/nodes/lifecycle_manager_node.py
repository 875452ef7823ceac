"""Lifecycle manager: brings a graph's managed nodes to `active` (what nav2's lifecycle_manager does).

The graph description marks the processes whose nodes are lifecycle nodes (`managed`), and
`graph.processes()` adds this node to every graph that has one. Bringup and the launch files start
the managed nodes with `autostart:=false`, so they wait unconfigured; this node then requests
configure and activate for each of them, all nodes at once (a model load does not hold up a
camera). A node whose graph entry says `autostart: false` is left unconfigured for the user
(`motus-ros lifecycle <node> configure`).

A refused transition of a required node ends this node with exit status 1, so bringup stops the
graph (and `ros2 launch` shuts down) with the reason in the managed node's log, as a node that
fails its own start-up would. After bring-up it stays alive (the graph treats its exit as a death)
and answers nothing: the nodes' own lifecycle services remain the interface.

Parameters (read-only), node lists comma-separated, fully qualified (/ns/name):
  node_names          managed nodes to configure and activate
  manual_nodes        managed nodes left unconfigured (reported only)
  required_nodes      nodes whose failed bring-up ends the graph
  service_timeout_s   wait for a node's lifecycle services (process start, imports) (s)
  transition_timeout_s  longest configure/activate (a model load) (s)
"""
from __future__ import annotations

import sys
import threading

import rclpy
from rclpy.node import Node

from motus_ros.graph.lifecycle import LifecycleError, change_state, get_state, wait_for_future as wait_for
from motus_ros.params import Param, declare_parameters
from motus_ros.ros.run import run_node

PARAMS = [
    Param("node_names", "", "managed nodes to configure and activate, comma-separated (/ns/name)"),
    Param("manual_nodes", "", "managed nodes left unconfigured (autostart: false), comma-separated"),
    Param("required_nodes", "", "nodes whose failed bring-up stops the graph, comma-separated"),
    Param("service_timeout_s", 120.0, "longest wait for a node's lifecycle services (s)", min=0.1),
    Param("transition_timeout_s", 600.0, "longest configure or activate, e.g. a model load (s)", min=0.1),
]


def split_names(text: str) -> list[str]:
    """'a, /b' -> ['/a', '/b']."""
    return ["/" + name.strip().lstrip("/") for name in text.split(",") if name.strip()]


class LifecycleManager(Node):
    def __init__(self, **kwargs):
        super().__init__("lifecycle_manager", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.targets = split_names(self.p["node_names"])
        self.manual = split_names(self.p["manual_nodes"])
        self.required = set(split_names(self.p["required_nodes"]))
        self.failures: dict[str, str] = {}
        self._lock = threading.Lock()

    def _bring_up(self, target: str) -> None:
        """Configure then activate one node; a node already past a step skips it."""
        log = self.get_logger()
        try:
            state = get_state(self, target, self.p["service_timeout_s"], wait_for)
            if state == "unconfigured":
                state = change_state(self, target, "configure", self.p["transition_timeout_s"], wait_for)
            if state == "inactive":
                state = change_state(self, target, "activate", self.p["transition_timeout_s"], wait_for)
            if state != "active":
                raise LifecycleError(f"{target}: reached '{state}', expected 'active'")
            log.info(f"{target}: active")
        except LifecycleError as exc:
            with self._lock:
                self.failures[target] = str(exc)
            log.error(f"bring-up of {target} failed: {exc}")

    def bring_up(self) -> int:
        """Drive every target to active (in parallel); 1 if a required node failed, else 0."""
        for name in self.manual:
            self.get_logger().info(f"{name}: left unconfigured (autostart: false); "
                                   f"`motus-ros lifecycle {name} configure` starts it")
        workers = [threading.Thread(target=self._bring_up, args=(t,), daemon=True) for t in self.targets]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        fatal = sorted(set(self.failures) & self.required)
        if fatal:
            self.get_logger().fatal(f"required node(s) {fatal} did not come up; stopping the graph")
            return 1
        self.get_logger().info(f"{len(self.targets) - len(self.failures)} of {len(self.targets)} "
                               "managed node(s) active")
        return 0

    exit_code = 0      # run_node's exit status

    def bring_up_or_exit(self) -> None:
        """bring_up(); after a required node's failure, end the process with status 1."""
        self.exit_code = self.bring_up()
        if self.exit_code:
            rclpy.try_shutdown(context=self.context)


def main(args=None) -> int:
    def make():
        node = LifecycleManager()
        # Beside the executor run_node spins (the transitions' replies arrive through it).
        threading.Thread(target=node.bring_up_or_exit, daemon=True).start()
        return node
    return run_node(make, args)


if __name__ == "__main__":
    sys.exit(main())
