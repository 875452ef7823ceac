"""SimArmBackend: arm interface over the MuJoCo world, and its ROS side, the sim node (/clock,
cameras, status, /sim/reset)."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.hardware.sim_backend import SimArmBackend
from motus_ros.layout import JOINT_NAMES
from motus_ros.sim import world as sw
from motus_ros.stamps import to_seconds
from ros_harness import wait_until


@pytest.fixture
def backend():
    b = SimArmBackend(image_height=60, image_width=80, camera_rate_hz=0.0,
                      real_time_factor=20.0, seed=0)
    yield b
    b.close()


def test_limits_known_before_connect():
    b = SimArmBackend()
    np.testing.assert_allclose(b.limits.lower, sw.LOWER)
    np.testing.assert_allclose(b.limits.upper, sw.UPPER)
    assert b.limits.contains(np.concatenate([sw.START_ARM_POSE[:7], sw.START_ARM_POSE[8:15]]) * 0)


@pytest.mark.parametrize("kwargs, field", [({"task": "stack"}, "task"),
                                           ({"camera_rate_hz": 60.0}, "camera_rate_hz"),
                                           ({"real_time_factor": 0.0}, "real_time_factor"),
                                           ({"render_quality": "ultra"}, "render_quality")])
def test_bad_options_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SimArmBackend(**kwargs)


def test_read_before_connect_fails_clearly():
    with pytest.raises(RuntimeError, match="connect"):
        SimArmBackend().read()


def test_simulated_time_advances_and_arm_follows_writes(backend):
    backend.connect()
    start = backend.read().positions
    assert start.shape == (14,)
    target = start.copy()
    target[7] = 0.4  # right waist
    backend.write(target)
    wait_until(lambda: abs(backend.read().positions[7] - 0.4) < 0.02, 10.0, "right waist at 0.4 rad")
    assert backend.sim_time > 0.1
    with pytest.raises(ValueError, match="positions"):
        backend.write(np.zeros(3))


def test_writes_are_clipped_to_the_limits(backend):
    backend.connect()
    target = backend.read().positions
    target[1] = -5.0  # left shoulder far below -1.85005
    backend.write(target)
    wait_until(lambda: backend.read().positions[1] < -1.5, 10.0, "left shoulder near its lower limit")
    assert backend.read().positions[1] >= sw.LOWER[1] - 0.05


def test_emergency_stop_ignores_writes_until_enable(backend):
    backend.connect()
    backend.emergency_stop()
    held = backend.read().positions
    target = held.copy()
    target[0] = 0.5
    backend.write(target)
    assert backend.ignored_writes == 1 and not backend.read().enabled
    t = backend.sim_time
    wait_until(lambda: backend.sim_time > t + 0.5, 10.0, "0.5 s of simulated time")
    assert abs(backend.read().positions[0] - held[0]) < 0.01
    backend.enable()
    backend.write(target)
    wait_until(lambda: abs(backend.read().positions[0] - 0.5) < 0.02, 10.0, "left waist at 0.5 rad")


def test_reset_starts_a_new_episode(backend):
    backend.connect()
    first = backend.world.seed
    t = backend.sim_time
    episode = backend.reset()
    assert backend.episode == 1 and backend.world.seed != first
    assert (episode.number, episode.seed) == (1, backend.world.seed)
    assert set(episode.object_poses) == {"box"}
    assert backend.sim_time > t  # /clock never goes back or repeats (test_sim_stamps.py: exactly one step)


def test_factory_builds_sim_backend_from_registry():
    from motus_ros.hardware.registry import create_backend

    assert isinstance(create_backend("sim", task="insertion"), SimArmBackend)


@pytest.mark.ros
def test_sim_node_publishes_clock_cameras_status_and_resets(ros):
    from geometry_msgs.msg import PoseArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Bool, Float64, UInt32
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from motus_msgs.srv import ResetEpisode
    from motus_ros.nodes.sim_node import SimNode

    backend = SimArmBackend(image_height=60, image_width=80, camera_rate_hz=10.0,
                            real_time_factor=5.0, seed=0)
    clock = ros.collect(Clock, "/clock")
    images = {c: ros.collect(Image, f"/camera_{c}/color/image_raw", qos_profile_sensor_data)
              for c in ("high", "left_wrist", "right_wrist")}
    info = ros.collect(CameraInfo, "/camera_high/color/camera_info", qos_profile_sensor_data)
    success = ros.collect(Bool, "/sim/task_success")
    reward = ros.collect(Float64, "/sim/reward")
    poses = ros.collect(PoseArray, "/sim/object_poses")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    episode = ros.collect(UInt32, "/sim/episode", latched)
    try:
        ros.add(SimNode(backend=backend))
        backend.connect()
        ticks = clock.wait_for(5, timeout=20)
        stamps = [to_seconds(m.clock) for m in ticks]
        assert all(b > a for a, b in zip(stamps, stamps[1:])), stamps
        for camera, collector in images.items():
            msg = collector.wait_for(2, timeout=30)[-1]
            assert (msg.height, msg.width, msg.encoding) == (60, 80, "rgb8"), camera
            assert len(msg.data) == 60 * 80 * 3
        first, second = images["high"].messages[:2]
        dt = to_seconds(second.header.stamp) - to_seconds(first.header.stamp)
        assert dt == pytest.approx(0.1, abs=1e-6)  # 10 Hz of simulated time
        k = info.wait_for(1, timeout=10)[0].k
        # calibration/sim/high.yaml: f = 240 / tan(39 deg) at 640x480, scaled to 80x60
        assert k[0] == pytest.approx(296.4 * 80 / 640, rel=1e-3)
        assert success.wait_for(1, timeout=10)[-1].data is False
        assert reward.wait_for(1, timeout=10)[-1].data == 0.0
        pose = poses.wait_for(1, timeout=10)[-1]
        assert len(pose.poses) == 1 and pose.header.frame_id == "world"
        assert episode.wait_for(1, timeout=10)[-1].data == 0
        response = ros.call(ResetEpisode, "/sim/reset", ResetEpisode.Request())
        assert response.success and "episode 1" in response.message
        assert (response.episode, response.seed) == (1, backend.world.seed)
        episode.wait_for(1, timeout=10, predicate=lambda m: m.data == 1)
    finally:
        backend.close()


@pytest.mark.ros
def test_teleop_expert_publishes_the_scripted_plan_on_sim_time(ros):
    """Expert node: plans from /sim/object_poses, publishes the plan on /master/joint_states."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool

    from motus_msgs.srv import ResetEpisode
    from motus_ros.nodes.sim_node import SimNode
    from motus_ros.nodes.teleop_expert_node import TeleopExpertNode
    from motus_ros.sim.scripted_expert import ScriptedExpert

    backend = SimArmBackend(camera_rate_hz=0.0, real_time_factor=4.0, seed=0)
    leader = ros.collect(JointState, "/master/joint_states")
    done = ros.collect(Bool, "/teleop_expert/episode_done")
    try:
        ros.add(SimNode(backend=backend))
        backend.connect()
        expert = ros.add(TeleopExpertNode(parameter_overrides=[
            Parameter("use_sim_time", Parameter.Type.BOOL, True)]))
        done.wait_for(1, timeout=60)
        msgs = leader.wait_for(50, timeout=10)
        assert all(list(m.name) == list(JOINT_NAMES) for m in msgs)
        plan = ScriptedExpert("transfer_cube", backend.world.object_poses())
        for m in msgs[::10]:
            t = to_seconds(m.header.stamp) - expert.t0_ns * 1e-9
            np.testing.assert_allclose(m.position, plan.action_at(max(t, 0.0)), atol=1e-3)
        assert expert.episodes_started == 1
        # a /sim/reset restarts the expert for the new episode
        assert ros.call(ResetEpisode, "/sim/reset", ResetEpisode.Request()).success
        wait_until(lambda: expert.episodes_started == 2, 30.0, "the expert to plan episode 1")
    finally:
        backend.close()
