"""Chunk executor node in-process: chunk -> commands -> mock driver; stats; step limit; sim time."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState

from motus_msgs.msg import ActionChunk, ChunkExecutionStats, InferenceMode
from motus_ros.hardware.mock import MockArmBackend
from motus_ros.layout import CHUNK_SIZE, DOF, JOINT_NAMES, TOPICS
from motus_ros.nodes.arm_driver_node import ArmDriverNode
from motus_ros.nodes.chunk_executor_node import ChunkExecutorNode
from motus_ros.stamps import to_time_msg
from ros_harness import wait_until

pytestmark = pytest.mark.ros


def make_chunk_msg(stamp, target, chunk_id=1, mode=InferenceMode.VLA, horizon=CHUNK_SIZE):
    msg = ActionChunk(joint_names=list(JOINT_NAMES), control_period=1 / 30, horizon=horizon,
                      positions=np.tile(np.asarray(target, float), (horizon, 1)).ravel().tolist(),
                      chunk_id=chunk_id)
    msg.header.stamp = stamp
    msg.mode.mode = mode
    return msg


def start_executor(ros, **params):
    return ros.add(ChunkExecutorNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))


def test_published_chunk_moves_the_mock_driver_joint_states_toward_it(ros):
    states = ros.collect(JointState, TOPICS["joint_states"])
    ros.add(ArmDriverNode(backend=MockArmBackend("mock", time_constant=0.05),
                          parameter_overrides=[Parameter("rate_hz", value=100.0)]))
    start_executor(ros, strategy="rtc")
    start = np.array(states.wait_for(1)[0].position)
    target = start.copy()
    target[0] += 0.3
    target[7] -= 0.3
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    chunk_id = iter(range(1, 10_000))

    def reached():
        pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), target, next(chunk_id)))
        last = np.array(states.messages[-1].position)
        return abs(last[0] - target[0]) < 0.01 and abs(last[7] - target[7]) < 0.01

    wait_until(reached, timeout=20, what="driver joint states to reach the chunk", interval=0.2)


def test_stats_report_latency_dropped_and_used_rows(ros):
    stats = ros.collect(ChunkExecutionStats, TOPICS["execution_stats"])
    start_executor(ros, strategy="replace")
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")
    now = ros.node.get_clock().now()
    stamp = (now - rclpy_duration(0.5)).to_msg()          # observation 0.5 s ago
    pub.publish(make_chunk_msg(stamp, np.zeros(DOF), chunk_id=42))
    s = stats.wait_for(1)[0]
    assert s.chunk_id == 42 and s.strategy == "replace"
    assert s.latency >= 0.5
    # rows at stamp + (i+1)/30: the first ~15 (0.5 s) are already past
    assert s.dropped_steps >= 14 and s.dropped_steps + s.used_steps == CHUNK_SIZE


def rclpy_duration(seconds):
    from rclpy.duration import Duration
    return Duration(nanoseconds=int(seconds * 1e9))


@pytest.mark.parametrize("strategy", ["replace", "temporal_ensemble", "rtc"])
def test_commands_never_jump_more_than_max_step_between_chunks(ros, strategy):
    commands = ros.collect(JointState, TOPICS["joint_command"])
    # Two chunks only: a long policy timeout lets the blend play out instead of holding.
    start_executor(ros, strategy=strategy, max_joint_step=0.05, max_gripper_step=0.02,
                   control_rate_hz=100.0, policy_timeout_s=30.0)
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.zeros(DOF), 1))
    commands.wait_for(3)
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.full(DOF, 1.0), 2))
    commands.wait_for(1, timeout=10, predicate=lambda m: m.position[0] > 0.99)
    q = np.array([m.position for m in commands.messages])
    steps = np.abs(np.diff(q, axis=0))
    assert steps[:, [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]].max() <= 0.05 + 1e-9
    assert steps[:, [6, 13]].max() <= 0.02 + 1e-9
    assert all(list(m.name) == list(JOINT_NAMES) for m in commands.messages)


def test_world_model_chunks_never_command_the_arm(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = start_executor(ros, diagnostics_period=0.1)
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.zeros(DOF), 1,
                               mode=InferenceMode.WM))

    def rejected(msg):
        return any(kv.key == "rejected_not_a_control_mode" and kv.value == "1"
                   for st in msg.status if st.name == "chunk_executor" for kv in st.values)

    diags.wait_for(1, timeout=10, predicate=rejected)
    assert node.core.commands == 0 and not node.core.scheduler.has_plan


def test_executor_follows_sim_time_from_clock(ros):
    commands = ros.collect(JointState, TOPICS["joint_command"])
    node = start_executor(ros, use_sim_time=True, strategy="replace")
    clock_pub = ros.node.create_publisher(Clock, "/clock", 10)
    wait_until(lambda: clock_pub.get_subscription_count() > 0, 5, "executor /clock subscription")

    def publish_clock(t):
        clock_pub.publish(Clock(clock=to_time_msg(t)))

    publish_clock(100.0)
    wait_until(lambda: abs(node.get_clock().now().nanoseconds * 1e-9 - 100.0) < 1e-6, 5, "sim time 100 s")
    from builtin_interfaces.msg import Time as TimeMsg
    rows = np.zeros((CHUNK_SIZE, DOF))
    rows[:, 0] = np.arange(1, CHUNK_SIZE + 1) * 0.01     # row i = 0.01 (i+1) at 100 + (i+1)/30 s
    msg = make_chunk_msg(TimeMsg(sec=100), np.zeros(DOF), 5)
    msg.positions = rows.ravel().tolist()
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")
    pub.publish(msg)
    wait_until(lambda: node.core.scheduler.has_plan, 5, "chunk accepted")
    # Advance sim time in control periods; the timer fires on sim time, wall time is irrelevant.
    t = 100.0
    for _ in range(10):
        t += 1 / 30
        publish_clock(t)
        n = len(commands.messages)
        wait_until(lambda: len(commands.messages) > n, 5, f"a command at sim time {t:.3f}")
    last = commands.messages[-1]
    # the newest command follows the row due at the current sim time (<= 10 rows, step-limited)
    assert 0.0 < last.position[0] <= 0.1 + 1e-9


def set_parameter(ros, name, value):
    """Set one parameter through the node's service, as `ros2 param set /chunk_executor` does."""
    from rcl_interfaces.srv import SetParameters

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return ros.call(SetParameters, "/chunk_executor/set_parameters", request).results[0]


def test_strategy_set_at_run_time_changes_the_blending_of_the_next_chunk(ros):
    stats = ros.collect(ChunkExecutionStats, TOPICS["execution_stats"])
    node = start_executor(ros, strategy="rtc", policy_timeout_s=30.0)
    pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor subscription")
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.zeros(DOF), 1))
    stats.wait_for(1, predicate=lambda s: s.chunk_id == 1)
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.ones(DOF), 2))
    rtc = stats.wait_for(1, predicate=lambda s: s.chunk_id == 2)[0]
    assert rtc.strategy == "rtc" and rtc.blend_discontinuity == pytest.approx(0.0)   # frozen rows

    result = set_parameter(ros, "strategy", "replace")
    assert result.successful and node.core.settings.strategy == "replace"
    assert node.get_parameter("strategy").value == "replace"
    pub.publish(make_chunk_msg(ros.node.get_clock().now().to_msg(), np.full(DOF, 2.0), 3))
    replaced = stats.wait_for(1, predicate=lambda s: s.chunk_id == 3)[0]
    # replace: the new chunk (2 rad) takes over at once from a plan still near 0 rad (rtc kept chunk
    # 1's rows frozen and only started blending toward 1 rad): a jump at the switch, where rtc has none
    assert replaced.strategy == "replace" and replaced.blend_discontinuity > 1.0


def test_read_only_and_invalid_parameters_are_refused_and_change_nothing(ros):
    node = start_executor(ros, strategy="rtc")
    fixed = set_parameter(ros, "control_rate_hz", 50.0)
    assert not fixed.successful
    assert node.get_parameter("control_rate_hz").value == 30.0 and node.p["control_rate_hz"] == 30.0
    bad = set_parameter(ros, "strategy", "fast")
    assert not bad.successful and "strategy" in bad.reason and "'fast'" in bad.reason
    assert node.get_parameter("strategy").value == "rtc" and node.core.settings.strategy == "rtc"
    assert not set_parameter(ros, "policy_timeout_s", 0.0).successful        # below 0.05 s
    assert node.core.settings.policy_timeout_s == 1.0
    assert set_parameter(ros, "max_joint_step", 0.02).successful              # a live limit
    assert node.core.max_step[0] == pytest.approx(0.02)


def test_joint_states_in_another_order_are_reordered_and_bad_ones_counted(ros):
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = start_executor(ros, diagnostics_period=0.1)
    pub = ros.node.create_publisher(JointState, TOPICS["joint_states"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "executor state subscription")
    values = np.arange(DOF, dtype=float) * 0.01
    pub.publish(JointState(name=["head_pan", *reversed(JOINT_NAMES)], position=[9.0, *values[::-1]]))
    wait_until(lambda: node.measured is not None, 5, "the reordered state")
    np.testing.assert_allclose(node.measured, values)
    pub.publish(JointState(name=list(JOINT_NAMES[:-1]), position=values[:-1].tolist()))

    def counted(msg):
        return any(kv.key == "rejected_states_wrong_names" and kv.value == "1"
                   for st in msg.status if st.name == "chunk_executor" for kv in st.values)

    diags.wait_for(1, timeout=10, predicate=counted)
    np.testing.assert_allclose(node.measured, values)                         # the refused one is not used


def test_a_new_sim_episode_refuses_chunks_observed_before_its_start(ros):
    from std_msgs.msg import Header, UInt32

    from motus_ros.ros.qos import LATCHED

    node = start_executor(ros, strategy="replace")
    chunks = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    start_pub = ros.node.create_publisher(Header, TOPICS["episode_start"], LATCHED)
    episode_pub = ros.node.create_publisher(UInt32, TOPICS["sim_episode"], LATCHED)
    wait_until(lambda: chunks.get_subscription_count() > 0, 5, "executor subscription")
    episode_pub.publish(UInt32(data=1))
    wait_until(lambda: node.core.episode_number == 1, 5, "the current episode")
    before = ros.node.get_clock().now()
    start = before + rclpy_duration(0.01)
    start_pub.publish(Header(stamp=start.to_msg()))
    wait_until(lambda: node.episode_start is not None, 5, "the episode start")
    episode_pub.publish(UInt32(data=2))
    wait_until(lambda: node.core.resets == 1, 5, "the reset of episode 2")
    chunks.publish(make_chunk_msg(before.to_msg(), np.zeros(DOF), 1))         # the old scene's
    wait_until(lambda: node.core.chunks_before_reset == 1, 5, "the old chunk refused")
    assert not node.core.scheduler.has_plan and not node.core.rejected        # refused, not a fault
    chunks.publish(make_chunk_msg((start + rclpy_duration(0.001)).to_msg(), np.zeros(DOF), 2))
    wait_until(lambda: node.core.accepted == 1, 5, "the new scene's chunk")
