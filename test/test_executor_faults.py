"""Chunk executor and policy node through faults in one running graph (issue 14, items 3, 4, 5).

A future-stamped chunk, a policy that dies mid-episode, an e-stop, a new sim episode and an
unbounded SetMode request, each in a node that already handled the previous fault.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import UInt32
from std_srvs.srv import Trigger

from motus_msgs.msg import ActionChunk, ChunkExecutionStats, InferenceMode
from motus_msgs.srv import SetMode
from motus_ros.hardware.mock import MockArmBackend
from motus_ros.layout import CHUNK_SIZE, DOF, JOINT_NAMES, SERVICES, TOPICS
from motus_ros.nodes.arm_driver_node import ArmDriverNode
from motus_ros.nodes.chunk_executor_node import ChunkExecutorNode
from motus_ros.ros.qos import LATCHED
from ros_harness import wait_for_status, wait_until

pytestmark = pytest.mark.ros


def chunk_msg(stamp, target, chunk_id):
    msg = ActionChunk(joint_names=list(JOINT_NAMES), control_period=1 / 30, horizon=CHUNK_SIZE,
                      positions=np.tile(np.asarray(target, float), (CHUNK_SIZE, 1)).ravel().tolist(),
                      chunk_id=chunk_id)
    msg.header.stamp = stamp
    msg.mode.mode = InferenceMode.VLA
    return msg


def executor_status(collector, predicate, timeout=10.0):
    return wait_for_status(collector, "chunk_executor", predicate, timeout)


class FakePolicyPublisher:
    """Publishes a chunk toward `target` every 0.1 s from a thread, like a live policy node."""

    def __init__(self, ros, target):
        self.ros, self.target, self.next_id = ros, np.asarray(target, float), 100
        self.pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish_one(self):
        self.next_id += 1
        self.pub.publish(chunk_msg(self.ros.node.get_clock().now().to_msg(), self.target, self.next_id))

    def _run(self):
        while not self._stop.wait(0.1):
            self.publish_one()

    def start(self):
        self._thread.start()
        return self

    def kill(self):
        self._stop.set()
        self._thread.join()


def test_future_chunk_then_valid_chunks_then_dead_policy_then_estop_then_new_episode(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    stats = ros.collect(ChunkExecutionStats, TOPICS["execution_stats"])
    commands = ros.collect(JointState, TOPICS["joint_command"])
    driver = ros.add(ArmDriverNode(backend=MockArmBackend("mock", time_constant=0.05),
                                   parameter_overrides=[Parameter("rate_hz", value=100.0),
                                                        Parameter("command_timeout", value=0.3)]))
    executor = ros.add(ChunkExecutorNode(parameter_overrides=[
        Parameter("policy_timeout_s", value=0.5), Parameter("diagnostics_period", value=0.1),
        Parameter("control_rate_hz", value=50.0)]))
    wait_until(lambda: executor.core.arm_executing is True, 10, "executor to hear /arm/enabled")
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")

    # 1. one chunk stamped an hour ahead: rejected and counted, it does not lock out later chunks
    future = ros.node.get_clock().now() + Duration(seconds=3600)
    pub.publish(chunk_msg(future.to_msg(), np.full(DOF, 0.9), chunk_id=1))
    executor_status(diags, lambda lvl, msg, v: v.get("rejected_future_stamp") == "1")
    assert not executor.core.scheduler.has_plan
    target = np.zeros(DOF)
    target[0] = 0.2
    policy = FakePolicyPublisher(ros, target).start()
    stats.wait_for(1, predicate=lambda s: s.chunk_id > 100)
    wait_until(lambda: executor.core.accepted >= 3, 10, "valid chunks accepted after the future one")
    commands.wait_for(5)

    # 2. the policy dies: within policy_timeout_s the executor holds the last command, ERROR
    # (a loaded machine can starve the live policy past the timeout once already: count from here)
    before = executor.core.policy_timeouts
    policy.kill()
    level, message, _ = executor_status(diags, lambda lvl, msg, v: int(v["policy_timeouts"]) > before
                                        and "no chunk from the policy" in msg)
    assert level == 2
    n = len(commands.messages)
    commands.wait_for(n + 10)
    held = [m.position for m in commands.messages[n:]]
    assert all(np.array_equal(held[0], p) for p in held), "commands must not move while the policy is silent"

    # 3. the policy comes back, then an e-stop: the plan is dropped, no more commands
    policy = FakePolicyPublisher(ros, target).start()
    executor_status(diags, lambda lvl, msg, v: lvl < 2 and "no chunk" not in msg)
    assert ros.call(Trigger, SERVICES["emergency_stop"], Trigger.Request()).success
    wait_until(lambda: executor.core.arm_executing is False, 5, "executor to hear the e-stop")
    assert not executor.core.scheduler.has_plan or executor.core.last_command is None
    n = len(commands.messages)
    executor_status(diags, lambda lvl, msg, v: "arm not executing" in msg)
    assert len(commands.messages) <= n + 1
    assert ros.call(Trigger, SERVICES["release_emergency_stop"], Trigger.Request()).success
    assert ros.call(Trigger, SERVICES["enable"], Trigger.Request()).success
    wait_until(lambda: executor.core.arm_executing is True, 5, "executor to hear the enable")
    commands.wait_for(len(commands.messages) + 5)

    # 4. a new sim episode drops the plan too (the old plan belongs to the old scene)
    resets = executor.core.resets
    episode = ros.node.create_publisher(UInt32, TOPICS["sim_episode"], LATCHED)
    episode.publish(UInt32(data=1))                     # latched: a late joiner learns the episode
    wait_until(lambda: executor.core.episode_number == 1, 5, "executor to hear the current episode")
    assert executor.core.resets == resets                    # learning the episode is not a reset
    episode.publish(UInt32(data=2))
    wait_until(lambda: executor.core.resets > resets, 5, "executor reset on a new sim episode")

    # 5. the reset service
    resets = executor.core.resets
    reply = ros.call(Trigger, SERVICES["executor_reset"], Trigger.Request())
    assert reply.success and executor.core.resets == resets + 1
    policy.kill()
    driver.close()


def test_set_mode_with_unbounded_steps_is_refused_and_changes_nothing(ros):
    from fake_policy import FakePolicy
    from motus_ros.nodes.policy_node import PolicyNode

    node = ros.add(PolicyNode(policy_factory=lambda **kw: FakePolicy(**kw),
                              parameter_overrides=[Parameter("instruction", value="pick"),
                                                   Parameter("steps", value=5)]))
    reply = ros.call(SetMode, SERVICES["set_mode"],
                     SetMode.Request(mode=InferenceMode(mode=InferenceMode.JOINT),
                                     denoising_steps=100000))
    assert not reply.success
    assert "denoising_steps" in reply.message and "got 100000" in reply.message
    assert "1..1000" in reply.message
    assert node.steps == 5 and node.mode == "vla"
    reply = ros.call(SetMode, SERVICES["set_mode"],
                     SetMode.Request(mode=InferenceMode(mode=InferenceMode.JOINT), denoising_steps=1000))
    assert reply.success and node.steps == 1000
    node.close()


class BlockingPolicy:
    """A policy whose infer() blocks until released: a stalled inference."""

    def __init__(self, **kwargs):
        self.release = threading.Event()
        self.started = threading.Event()

    def set_mode(self, mode, steps=None):
        pass

    def reset(self):
        pass

    def infer(self, observation):
        self.started.set()
        self.release.wait(30)
        raise RuntimeError("released")


def test_a_stalled_inference_is_reported_as_error(ros):
    from motus_ros.nodes.policy_node import PolicyNode
    from test_policy_node import ObservationSource

    policies = []

    def factory(**kwargs):
        policies.append(BlockingPolicy(**kwargs))
        return policies[-1]

    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = ros.add(PolicyNode(policy_factory=factory, parameter_overrides=[
        Parameter("instruction", value="pick"), Parameter("inference_timeout_s", value=0.3),
        Parameter("diagnostics_period_s", value=0.1), Parameter("tick_rate_hz", value=50.0)]))
    source = ObservationSource(ros)
    wait_until(lambda: source.publish(source.now()) or policies[0].started.is_set(), 10,
               "the inference to start", interval=0.05)

    def stalled(msg):
        return any(st.name == "policy_node" and st.level[0] == 2 and "inference running" in st.message
                   for st in msg.status)
    diags.wait_for(1, predicate=stalled)
    policies[0].release.set()
    node.close()
