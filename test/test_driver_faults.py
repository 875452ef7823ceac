"""Arm driver through sequences of faults in one running node (issue 14, items 1, 2, 6, 10, 11).

Each test keeps one driver alive through several faults in a row, because the failures these
tests guard against only showed up in a node that had already handled an earlier fault.
"""
from __future__ import annotations

import pathlib
import re
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from motus_ros.hardware.interface import ArmState
from motus_ros.hardware.mock import MockArmBackend
from motus_ros.layout import DOF, JOINT_NAMES, SERVICES, TOPICS
from motus_ros.ros.qos import LATCHED
from ros_harness import wait_for_status, wait_until
from test_driver_node import command
from test_driver_node import start_driver as start_mock_driver

pytestmark = pytest.mark.ros


def start_driver(ros, backend=None, **params):
    """test_driver_node's driver with a short watchdog and frequent diagnostics."""
    return start_mock_driver(ros, backend, **{"command_timeout": 0.2, "diagnostics_period": 0.1,
                                              **params})


def driver_status(collector, predicate, timeout=10.0):
    return wait_for_status(collector, "arm_driver: safety", predicate, timeout)


def test_watchdog_trip_then_bad_commands_then_estop_in_one_node(ros):
    """The reported crash: after a watchdog trip, a rejected command killed the driver (two
    .warn() call sites, one throttled, shared one rclpy call site), and e-stop answered false."""
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    states = ros.collect(JointState, TOPICS["joint_states"])
    node, backend = start_driver(ros, max_velocity_scale=0.2)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    pub.publish(command(np.full(DOF, 0.3)))                       # 1. one command, then silence
    driver_status(diags, lambda lvl, msg, v: v["watchdog_trips"] == "1")
    for bad in ([np.nan] + [0.0] * (DOF - 1), [0.1] * (DOF - 1), [np.inf] * DOF):   # 2. bad input
        pub.publish(command(bad, JOINT_NAMES[:len(bad)]))
    driver_status(diags, lambda lvl, msg, v: v["non_finite"] == "2" and v["wrong_size"] == "1")
    n = len(states.messages)
    states.wait_for(n + 10)                                        # still alive, still publishing
    response = ros.call(Trigger, SERVICES["emergency_stop"], Trigger.Request())   # 3. e-stop
    assert response.success, response.message
    assert backend.estopped and node.estopped
    pub.publish(command([np.nan] * DOF))                           # 4. bad input while stopped
    pub.publish(command(np.full(DOF, 0.1)))
    wait_until(lambda: node.ignored_commands >= 2, 5, "commands ignored during e-stop")
    level, message, values = driver_status(diags, lambda lvl, msg, v: v["emergency_stop"] == "True")
    assert level == 2 and message == "emergency stop"
    assert values["callback_errors"] == "0"
    # 5. recovery: release, enable, move
    assert ros.call(Trigger, SERVICES["release_emergency_stop"], Trigger.Request()).success
    assert ros.call(Trigger, SERVICES["enable"], Trigger.Request()).success
    target = np.full(DOF, 0.05)
    # the device's own reading: nothing else on the graph can stand in for it
    wait_until(lambda: pub.publish(command(target)) or
               np.allclose(backend.read().positions, target, atol=1e-6),
               timeout=15, what="arm to move after release and enable", interval=0.02)
    states.wait_for(1, predicate=lambda m: np.allclose(m.position, target, atol=1e-6))   # and reports it


class FailingOnceBackend(MockArmBackend):
    """A mock whose write() raises a chosen number of times (a flaky device)."""

    def __init__(self, failures: int):
        super().__init__("mock")
        self.failures = failures

    def write(self, positions):
        if self.failures > 0:
            self.failures -= 1
            raise OSError("CAN transmit buffer full")
        super().write(positions)


def test_device_errors_are_counted_and_the_driver_keeps_serving(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node, backend = start_driver(ros, backend=FailingOnceBackend(failures=5))
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    wait_until(lambda: pub.publish(command(np.full(DOF, 0.02))) or backend.writes > 3, 10,
               "writes to succeed after the device errors", interval=0.02)
    _, _, values = driver_status(diags, lambda lvl, msg, v: v["write_errors"] == "5")
    assert ros.call(Trigger, SERVICES["soft_stop"], Trigger.Request()).success


class FeedbackBackend(MockArmBackend):
    """A mock whose device feedback can be cut: read() then reports a growing feedback_age."""

    def __init__(self):
        super().__init__("mock")
        self.lost_since: float | None = None

    def read(self) -> ArmState:
        state = super().read()
        if self.lost_since is not None:
            state.feedback_age = time.monotonic() - self.lost_since
        else:
            state.feedback_age = 0.0
        return state


def test_feedback_loss_is_an_error_states_stop_and_enable_waits_for_feedback(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    states = ros.collect(JointState, TOPICS["joint_states"])
    enabled = ros.collect(Bool, TOPICS["arm_enabled"], LATCHED)
    backend = FeedbackBackend()
    node, _ = start_driver(ros, backend=backend, feedback_timeout=0.1)
    states.wait_for(5)
    enabled.wait_for(1, predicate=lambda m: m.data)
    backend.lost_since = time.monotonic()                          # the arm stops answering
    level, message, values = driver_status(diags, lambda lvl, msg, v: v["feedback_losses"] == "1")
    assert level == 2 and "no joint feedback" in message
    enabled.wait_for(1, predicate=lambda m: not m.data)            # executor is told to drop its plan
    n = len(states.messages)
    ticks = node.ticks
    wait_until(lambda: node.ticks > ticks + 20, 5, "20 more ticks")
    assert len(states.messages) <= n + 1                           # no stale state published as new
    refused = ros.call(Trigger, SERVICES["enable"], Trigger.Request())
    assert not refused.success and "no joint feedback" in refused.message
    backend.lost_since = None                                      # feedback is back
    states.wait_for(n + 5)
    assert ros.call(Trigger, SERVICES["enable"], Trigger.Request()).success
    enabled.wait_for(2, predicate=lambda m: m.data)


class SlowBackend(MockArmBackend):
    """read() takes 25 ms: a 100 Hz driver can tick at most ~40 times a second."""

    def read(self) -> ArmState:
        time.sleep(0.025)
        return super().read()


def test_achieved_rate_below_ninety_percent_is_a_warning(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    start_driver(ros, backend=SlowBackend("mock"), rate_hz=100.0, diagnostics_period=0.2)
    level, message, values = driver_status(diags, lambda lvl, msg, v: v["achieved_rate_hz"] != "n/a")
    assert float(values["achieved_rate_hz"]) < 90.0
    assert level == 1 and "driver rate" in message


def test_chattering_commands_are_acceleration_limited(ros):
    """+-0.5 rad commands at ~1 kHz: without an acceleration limit the arm reversed 22 times a
    second at full speed; with accel_time the step changes by at most a_max/rate^2 per tick."""
    node, backend = start_driver(ros, backend=MockArmBackend("mock", record_writes=True),
                                 accel_time=0.2, command_timeout=1.0)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    sign = 1.0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        pub.publish(command(np.full(DOF, 0.5 * sign)))
        sign = -sign
        time.sleep(0.001)
    written = np.array([q for _, q in backend.write_log])
    steps = np.diff(written, axis=0)
    a = node.safety.max_step_change
    assert a is not None
    assert np.all(np.abs(np.diff(steps, axis=0)) <= a + 1e-12)
    assert node.safety.summary()["accel_limited"] > 0


def test_no_source_file_uses_the_deprecated_logger_warn():
    """rclpy's Logger.warn() wraps warning(), so every .warn() in a process shares one call
    site and mixing throttled and unthrottled calls raises ValueError (the driver crash)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "motus_ros").rglob("*.py"), *(root / "test").rglob("*.py"),
                 *(root / "launch").rglob("*.py")]:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(get_logger\(\)|logger|log)\.warn\(", line):
                offenders.append(f"{path.relative_to(root)}:{lineno}")
    assert offenders == [], f"use .warning() instead of .warn(): {offenders}"


def test_no_call_site_picks_the_log_severity_at_run_time():
    """rclpy caches each call site's severity: `(log.error if bad else log.info)(text)` raises
    'Logger severity cannot be changed between calls' the second time (it killed the executor
    in the soak when chunks came back after a policy timeout)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    pattern = re.compile(r"\((self\.get_logger\(\)|logger|log)\.(debug|info|warning|error|fatal) if ")
    offenders = [f"{path.relative_to(root)}:{lineno}"
                 for path in (root / "motus_ros").rglob("*.py")
                 for lineno, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == [], f"one logging call per severity: {offenders}"
