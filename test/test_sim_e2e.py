"""End-to-end in simulation: `motus-ros bringup sim` with the tiny preset runs the real driver
(MuJoCo arms and cameras), policy, chunk executor and world-model processes.

Checks the loop users came for: chunks stamped with the time of the observation they were computed
from (simulated time, the cameras' time base), the arm moving, imagined frames published, and
SetMode switching VLA <-> JOINT while running, with a world-model mode refused by the policy.
"""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_msgs.srv import SetMode
from motus_ros.layout import JOINT_NAMES, SERVICES, TOPICS
from motus_ros.stamps import to_seconds
from ros_harness import wait_until
from test_bringup_e2e import Bringup, process_alive

NODES = "sim,chunk_executor,policy,world_model"   # sim: the world and the arm driver, one process
SYNC_TOLERANCE_S = 0.05  # config/sim/policy.yaml sync_tolerance_s


def set_mode(ros, mode: int) -> SetMode.Response:
    request = SetMode.Request()
    request.mode.mode = mode
    return ros.call(SetMode, SERVICES["set_mode"], request, timeout=60)


@pytest.mark.e2e
@pytest.mark.ros
@pytest.mark.slow
def test_sim_graph_closes_the_loop_and_switches_modes(ros, tmp_path):
    # The tiny preset with random weights keeps the test fast; the shipped profile uses the
    # trained small weights, which the demo exercises.
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("".join(f"{node}:\n  ros__parameters:\n    preset: tiny\n    checkpoint: ''\n"
                            f"    stats: ''\n" for node in ("policy", "world_model")))
    frames = [ros.collect(Image, f"/camera_{c}/color/image_raw", qos_profile_sensor_data)
              for c in ("high", "left_wrist", "right_wrist")]
    states = ros.collect(JointState, TOPICS["joint_states"], qos_profile_sensor_data)
    chunks = ros.collect(ActionChunk, TOPICS["action_chunk"])
    policy_futures = ros.collect(PredictedFuture, TOPICS["predicted_future"])
    wm_futures = ros.collect(PredictedFuture, TOPICS["wm_future"])
    bringup = Bringup("sim", "--only", NODES, "--duration", "240", "--params-file", str(tiny))
    try:
        chunks.wait_for(2, timeout=150)
        # Stamped with the observation time: simulated seconds, within the sync tolerance of a
        # camera frame the policy saw, never the wall clock and never the publication time.
        # (Frames reach this process a little later than the policy, and best effort: wait.)
        def near_a_frame(t: float) -> bool:
            stamps = [to_seconds(f.header.stamp) for c in frames for f in c.messages]
            return any(abs(s - t) <= SYNC_TOLERANCE_S + 1e-6 for s in stamps)

        for chunk in chunks.messages[:2]:
            t = to_seconds(chunk.header.stamp)
            assert 0.0 < t < 1e6, f"chunk stamped {t}, expected simulated time"
            wait_until(lambda: near_a_frame(t), timeout=20,
                       what=f"a camera frame within {SYNC_TOLERANCE_S} s of the chunk stamp {t}")
            assert list(chunk.joint_names) == list(JOINT_NAMES)
            assert chunk.mode.mode == InferenceMode.VLA
            assert chunk.inference_latency > 0.0

        # The arm follows the chunks.
        start = np.array(states.messages[0].position)
        wait_until(lambda: np.max(np.abs(np.array(states.messages[-1].position) - start)) > 0.01,
                   timeout=90, what="the simulated arm to move under the policy's chunks",
                   interval=0.2)

        # The world model imagines the future of the policy's chunks.
        future = wm_futures.wait_for(1, timeout=120)[0]
        assert len(future.frames) > 0 and future.frames[0].encoding == "rgb8"

        # A world-model mode is refused by the policy with a reason.
        refused = set_mode(ros, InferenceMode.WM)
        assert not refused.success
        assert "WM" in refused.message and "world_model_node" in refused.message

        # VLA -> JOINT while running: JOINT chunks come with predicted frames.
        assert set_mode(ros, InferenceMode.JOINT).success
        wait_until(lambda: any(c.mode.mode == InferenceMode.JOINT for c in chunks.messages),
                   timeout=120, what="a JOINT-mode chunk after SetMode", interval=0.2)
        joint_future = policy_futures.wait_for(1, timeout=120)[0]
        assert joint_future.mode.mode == InferenceMode.JOINT and len(joint_future.frames) > 0

        # ... and back to VLA.
        assert set_mode(ros, InferenceMode.VLA).success
        seen = len(chunks.messages)
        wait_until(lambda: any(c.mode.mode == InferenceMode.VLA for c in chunks.messages[seen:]),
                   timeout=120, what="a VLA-mode chunk after switching back", interval=0.2)
    finally:
        code = bringup.stop(timeout=60)
    assert code == 0, bringup.output[-4000:]
    for name, pid in bringup.node_pids().items():
        assert not process_alive(pid), f"{name} (pid {pid}) still running after bringup stopped"
