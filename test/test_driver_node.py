"""Arm driver node in-process with the mock backend: states, commands, safety, services, shutdown."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from motus_ros.hardware.mock import MockArmBackend
from motus_ros.layout import DOF, JOINT_NAMES, SERVICES, TOPICS
from motus_ros.nodes.arm_driver_node import ArmDriverNode
from motus_ros.params import ParameterError
from ros_harness import wait_for_status, wait_until

pytestmark = pytest.mark.ros


def start_driver(ros, backend=None, **params):
    defaults = dict(backend="mock", calibration="mock", rate_hz=100.0, command_timeout=0.3)
    defaults.update(params)
    overrides = [Parameter(k, value=v) for k, v in defaults.items()]
    backend = backend or MockArmBackend("mock")
    node = ros.add(ArmDriverNode(backend=backend, parameter_overrides=overrides))
    return node, backend


def command(positions, names=JOINT_NAMES) -> JointState:
    return JointState(name=list(names), position=[float(v) for v in positions])


def safety_values(collector, predicate):
    """Values of the newest 'arm_driver: safety' status matching predicate(values)."""
    return wait_for_status(collector, "arm_driver: safety", lambda level, message, v: predicate(v))[2]


def test_publishes_named_joint_states_and_follows_commands(ros):
    states = ros.collect(JointState, TOPICS["joint_states"])
    node, backend = start_driver(ros)
    first = states.wait_for(1)[0]
    assert list(first.name) == list(JOINT_NAMES) and len(first.position) == DOF
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    target = np.zeros(DOF)
    target[0], target[13] = 0.3, 0.8
    wait_until(lambda: pub.publish(command(target)) or
               np.allclose(states.messages[-1].position, target, atol=1e-6),
               timeout=10, what="joint states to reach the command")


def test_each_tick_moves_at_most_the_configured_step(ros):
    states = ros.collect(JointState, TOPICS["joint_states"])
    node, backend = start_driver(ros, max_velocity_scale=0.1)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    states.wait_for(1)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    target = np.full(DOF, 0.5)
    # 0.1 rad takes ~0.3 s at the limited speed; the long timeout is for a loaded CI machine, where
    # this once saw commands delivered with gaps of up to 1.3 s (the watchdog held meanwhile).
    wait_until(lambda: pub.publish(command(target)) or states.messages[-1].position[0] > 0.1,
               timeout=30, what="arm moving")
    positions = np.array([m.position for m in states.messages])
    steps = np.abs(np.diff(positions, axis=0)).max(axis=0)
    # calibration/mock: max_velocity 3 rad/s (joints 1-3), 4 (joints 4-6, gripper) x 0.1 / 100 Hz
    expected = np.array([0.003, 0.003, 0.003, 0.004, 0.004, 0.004, 0.004] * 2)
    np.testing.assert_allclose(node.safety.max_step, expected)
    assert np.all(steps <= expected + 1e-9)
    assert node.safety.summary()["step_limited"] > 0


@pytest.mark.parametrize("name,names,values", [
    ("non_finite", JOINT_NAMES, [np.nan] + [0.0] * (DOF - 1)),
    ("wrong_size", JOINT_NAMES[:-1], [0.2] * (DOF - 1)),
    ("wrong_names", [*JOINT_NAMES[:-1], "elbow"], [0.2] * DOF),
])
def test_bad_commands_are_rejected_counted_and_never_reach_the_backend(ros, name, names, values):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node, backend = start_driver(ros, diagnostics_period=0.1)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    pub.publish(command(values, names))
    got = safety_values(diags, lambda v: v[name] == "1")
    assert got["accepted"] == "0"
    assert backend.writes == 0
    np.testing.assert_allclose(backend.read().positions, 0.0)


def test_watchdog_holds_the_last_safe_position_when_commands_stop(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    states = ros.collect(JointState, TOPICS["joint_states"])
    node, backend = start_driver(ros, max_velocity_scale=0.1, command_timeout=0.2,
                                 diagnostics_period=0.1)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    pub.publish(command(np.full(DOF, 1.0)))          # one command, far away, then silence
    safety_values(diags, lambda v: v["watchdog_trips"] == "1")
    # The arm brakes within its acceleration limit (a few ticks), then stays put.
    wait_until(lambda: len(states.messages) > 20 and np.ptp(
        [m.position[0] for m in states.messages[-20:]]) == 0.0, 10, "the arm to come to rest")
    held = np.array(states.messages[-1].position)
    assert 0.0 < held[0] < 0.5                       # stopped on the way, not at the target
    n = len(states.messages)
    states.wait_for(n + 20)                          # 20 more ticks: position stays put
    np.testing.assert_allclose(states.messages[-1].position, held, atol=1e-9)


def test_emergency_stop_ignores_commands_until_release_and_enable(ros):
    states = ros.collect(JointState, TOPICS["joint_states"])
    node, backend = start_driver(ros)
    states.wait_for(1)
    assert ros.call(Trigger, SERVICES["emergency_stop"], Trigger.Request()).success
    assert backend.estopped
    pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    target = np.full(DOF, 0.2)
    for _ in range(5):
        pub.publish(command(target))
    wait_until(lambda: node.ignored_commands >= 5, 5, "commands to be ignored")
    assert backend.writes == 0 and np.allclose(backend.read().positions, 0.0)
    # Leaving an e-stop is explicit: enable alone is refused and says what to call.
    refused = ros.call(Trigger, SERVICES["enable"], Trigger.Request())
    assert not refused.success and SERVICES["release_emergency_stop"] in refused.message
    released = ros.call(Trigger, SERVICES["release_emergency_stop"], Trigger.Request())
    assert released.success, released.message
    assert not node.enabled                           # release never powers the arm by itself
    response = ros.call(Trigger, SERVICES["enable"], Trigger.Request())
    assert response.success, response.message
    wait_until(lambda: pub.publish(command(target)) or
               np.allclose(states.messages[-1].position, target, atol=1e-6),
               timeout=10, what="arm to move after enable")


def test_disable_service_holds_then_releases(ros):
    node, backend = start_driver(ros)
    response = ros.call(Trigger, SERVICES["disable"], Trigger.Request())
    assert response.success and not backend.enabled and not node.enabled


def test_clean_stop_holds_position_and_disables_when_configured(ros):
    node, backend = start_driver(ros, disable_on_shutdown=True)
    wait_until(lambda: node.ticks > 3, 5, "driver ticks")
    node.close()
    assert not backend.enabled and not backend.connected
    node.close()   # safe twice


def test_bad_parameter_fails_at_start_naming_it(ros_context):
    # The piper backend's own parameters exist (and are checked) when the piper backend is chosen.
    with pytest.raises(ParameterError, match="can_channels"):
        ArmDriverNode(backend=MockArmBackend("mock"),
                      parameter_overrides=[Parameter("backend", value="piper"),
                                           Parameter("can_channels", value=["can0"])])


def test_piper_driver_emergency_stop_service_reaches_the_can_bus(ros):
    import os

    from motus_ros.hardware import piper_can as pc
    from motus_ros.hardware.piper_fake import FakePiperArm

    left = FakePiperArm(f"drv{os.getpid()}_l", joints_rad=[0, 0.5, -0.5, 0, 0, 0], follow=True)
    right = FakePiperArm(f"drv{os.getpid()}_r", joints_rad=[0, 0.5, -0.5, 0, 0, 0], follow=True)
    try:
        # feedback_timeout: the fake arms answer from Python threads, which a loaded machine can
        # starve past the default 0.25 s (a feedback-loss soft stop; test_driver_faults covers it)
        params = dict(backend="piper", calibration="agilex_aloha2", rate_hz=100.0,
                      can_channels=[left.channel, right.channel], can_bustype="virtual",
                      feedback_timeout=2.0)
        node = ros.add(ArmDriverNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
        states = ros.collect(JointState, TOPICS["joint_states"])
        first = states.wait_for(1)[0]
        np.testing.assert_allclose(first.position[:6], [0, 0.5, -0.5, 0, 0, 0], atol=2e-5)
        pub = ros.node.create_publisher(JointState, TOPICS["joint_command"], 10)
        target = np.array(first.position)
        target[0] = 0.05
        wait_until(lambda: pub.publish(command(target)) or abs(left.joints[0] - 0.05) < 1e-4,
                   timeout=10, what="fake left arm to follow the command")
        assert ros.call(Trigger, SERVICES["emergency_stop"], Trigger.Request()).success
        assert left.wait_for(pc.MOTION_CTRL_1)[0].data[0] == pc.ESTOP_STOP
        assert right.wait_for(pc.MOTION_CTRL_1)[0].data[0] == pc.ESTOP_STOP
        node.close()
    finally:
        left.close()
        right.close()
