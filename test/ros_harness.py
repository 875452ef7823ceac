"""In-process rclpy test harness: isolated domain, a spinning executor, waits with timeouts.

Tests never sleep and hope: they wait on a condition with a deadline and fail with a message
that says what did not arrive.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile


def isolated_domain_id(tries: int = 8, listen_s: float = 1.0) -> int:
    """A ROS_DOMAIN_ID (1..101, the ids whose ports are safe on Linux) on which no other node is
    heard, so that another test session on this host cannot publish into this one's topics.

    Drawn at random, not from the pid: containers start pytest at the same pid, and test
    sessions in containers that share the host's network would then share a domain (a stray
    /joint_states publisher fails the tests that read joint states). Each candidate is probed
    with a private rclpy context for listen_s seconds; after `tries` (>= 1) busy ones, the last
    is used. Call before rclpy.init of the test session, with ROS_AUTOMATIC_DISCOVERY_RANGE set.
    """
    import random

    draw = random.SystemRandom()
    for _ in range(max(1, tries)):
        domain = draw.randint(1, 101)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            probe = rclpy.create_node(f"domain_probe_{os.getpid()}", context=context)
            deadline = time.monotonic() + listen_s
            others: list[str] = []
            while not others and time.monotonic() < deadline:
                time.sleep(0.1)
                others = [n for n in probe.get_node_names() if n != probe.get_name()]
            probe.destroy_node()
        finally:
            context.try_shutdown()
        if not others:
            return domain
    return domain


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll predicate until true; raise AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if predicate():
        return
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


class MessageCollector:
    """Subscribes to a topic and keeps every message received, thread-safely."""

    def __init__(self, node: Node, msg_type: Any, topic: str, qos: QoSProfile | int = 10):
        self.topic = topic
        self.messages: list[Any] = []
        self._cond = threading.Condition()
        self.subscription = node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 10.0,
                 predicate: Callable[[Any], bool] | None = None) -> list[Any]:
        """Block until `count` messages (matching predicate, if given) arrived; return them."""
        def matching() -> list[Any]:
            return [m for m in self.messages if predicate is None or predicate(m)]

        deadline = time.monotonic() + timeout
        with self._cond:
            while len(matching()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f} s on {self.topic}: got {len(matching())} "
                        f"matching of {count} expected ({len(self.messages)} received in all)")
                self._cond.wait(remaining)
            return matching()


def wait_for_status(collector: MessageCollector, name: str, predicate: Callable[[int, str, dict], bool],
                    timeout: float = 10.0) -> tuple[int, str, dict]:
    """(level, message, values) of the newest /diagnostics status `name` for which
    predicate(level, message, values) holds, from a DiagnosticArray collector."""
    def parse(msg):
        for st in msg.status:
            if st.name == name:
                return st.level[0], st.message, {kv.key: kv.value for kv in st.values}
        return None
    msgs = collector.wait_for(1, timeout=timeout,
                              predicate=lambda m: (p := parse(m)) is not None and predicate(*p))
    return parse(msgs[-1])


class RosHarness:
    """Owns a test node and an executor thread; nodes under test can be added to it."""

    def __init__(self, context: rclpy.context.Context | None = None):
        self.context = context
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.node = rclpy.create_node(f"test_harness_{os.getpid()}", context=context)
        self.executor.add_node(self.node)
        self._nodes: list[Node] = [self.node]
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - executor shutting down
                if self._stop.is_set():
                    return
                raise

    def add(self, node: Node) -> Node:
        """Spin a node under test in the harness executor."""
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile | int = 10) -> MessageCollector:
        return MessageCollector(self.node, msg_type, topic, qos)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service and return its response, failing clearly if it is absent or silent."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available after {timeout:.1f} s")
            future = client.call_async(request)
            wait_until(future.done, timeout, f"response from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for node in reversed(self._nodes):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
