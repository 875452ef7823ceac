"""motus_msgs: built into the venv, serializable, and an ActionChunk crosses a process boundary."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_msgs.srv import SetMode, StartEpisode, StopEpisode
from motus_ros.layout import CHUNK_SIZE, DOF, JOINT_NAMES

PUBLISHER = textwrap.dedent("""
    import rclpy, time
    from motus_msgs.msg import ActionChunk, InferenceMode
    rclpy.init()
    node = rclpy.create_node("chunk_publisher")
    pub = node.create_publisher(ActionChunk, "/test/action_chunk", 10)
    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.joint_names = [f"j{i}" for i in range(14)]
    msg.control_period = 1.0 / 30.0
    msg.horizon = 48
    msg.positions = [i * 0.001 for i in range(48 * 14)]
    msg.mode.mode = InferenceMode.JOINT
    msg.chunk_id = 42
    msg.inference_latency = 0.125
    try:
        while rclpy.ok():
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
""")


def test_mode_constants_are_distinct():
    values = [InferenceMode.VLA, InferenceMode.WM, InferenceMode.IDM, InferenceMode.VGM, InferenceMode.JOINT]
    assert len(set(values)) == 5


def test_action_chunk_serialization_round_trip():
    msg = ActionChunk(joint_names=list(JOINT_NAMES), control_period=1 / 30, horizon=CHUNK_SIZE,
                      positions=np.linspace(-1, 1, CHUNK_SIZE * DOF).tolist(), chunk_id=7)
    msg.mode.mode = InferenceMode.VLA
    back = deserialize_message(serialize_message(msg), ActionChunk)
    assert back == msg
    assert np.asarray(back.positions).reshape(CHUNK_SIZE, DOF)[0, 0] == -1.0


def test_services_and_future_types_exist():
    assert hasattr(SetMode.Request(), "denoising_steps")
    assert hasattr(StartEpisode.Request(), "task") and hasattr(StartEpisode.Response(), "episode_id")
    assert hasattr(StopEpisode.Request(), "keep") and hasattr(StopEpisode.Response(), "path")
    assert PredictedFuture().frame_period == 0.0


@pytest.mark.ros
def test_action_chunk_crosses_processes(ros):
    collector = ros.collect(ActionChunk, "/test/action_chunk")
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=dict(os.environ))
    try:
        msg = collector.wait_for(1, timeout=30)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 5678)
    assert msg.horizon == 48 and len(msg.positions) == 48 * 14
    assert msg.positions[100] == pytest.approx(0.1)
    assert msg.mode.mode == InferenceMode.JOINT and msg.chunk_id == 42
    assert msg.inference_latency == pytest.approx(0.125)
