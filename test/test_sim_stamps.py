"""Sim time stamps: joint states and images carry the simulated time of the physics state they show.

The simulation's own record of its states (simulated time -> joint positions, captured scene) is
the reference: every stamp must be a time the sim clock took, and what the message carries must
be the physics state of that time. No assertion depends on wall-clock timing: the tests wait
for enough messages, however slowly the loaded machine runs the sim.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from motus_ros.hardware.sim_backend import CONTROL_DT_NS, SimArmBackend
from motus_ros.sim import world as sw
from motus_ros.stamps import to_ns
from ros_harness import wait_until

START_POSE = sw.qpos16_to_layout(sw.START_ARM_POSE)


class RecordedSim(SimArmBackend):
    """The sim backend keeping its own history: every physics state and every captured scene,
    keyed by the simulated time (ns) the backend gave it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.states: dict[int, np.ndarray] = {}    # sim time (ns) -> (14,) joint positions
        self.order: list[int] = []                 # state times in the order they happened
        self.captures: dict[int, np.ndarray] = {}  # sim time (ns) of a captured scene -> full qpos
        self.history_lock = threading.Lock()

    def _snapshot_state(self) -> None:
        super()._snapshot_state()
        with self.history_lock:
            self.states[self._sim_time_ns] = self._state.positions.copy()
            self.order.append(self._sim_time_ns)

    def connect(self) -> None:
        super().connect()
        update = self.world.update_scenes

        def recording_update(cameras):  # called by the physics thread under the state lock
            update(cameras)
            with self.history_lock:
                self.captures[self._sim_time_ns] = self.world.data.qpos.copy()
        self.world.update_scenes = recording_update


def test_read_returns_the_state_of_its_stamp_and_reset_takes_one_step():
    """ArmState.stamp is the simulated time of the positions returned (exactly, in ns); the
    clock steps by one control period, also across a reset, and never repeats."""
    backend = RecordedSim(camera_rate_hz=0.0, real_time_factor=20.0, seed=0)
    try:
        backend.connect()
        target = backend.read().positions.copy()
        target[0] = 0.6                       # the left waist moves: states differ step to step
        backend.write(target)
        reads = []

        def read_some(steps: int) -> None:
            until = backend.sim_time_ns + steps * CONTROL_DT_NS
            def enough():
                reads.append(backend.read())
                return backend.sim_time_ns >= until
            wait_until(enough, 60.0, f"{steps} simulated steps", interval=0.001)

        read_some(20)
        before = backend.sim_time_ns
        backend.reset()
        start = backend.episode_start_ns
        reads.append(backend.read())
        read_some(20)
    finally:
        backend.close()
    with backend.history_lock:
        order, states = list(backend.order), dict(backend.states)
    assert np.all(np.diff(order) == CONTROL_DT_NS), "the sim clock steps one control period at a time"
    for state in reads:
        t = int(state.stamp * 1e9)  # as rclpy.time.Time(seconds=...) converts it
        assert t == round(state.stamp * 1e9), "truncating and rounding readers agree"
        assert t in states, f"stamp {state.stamp} is no time of the sim clock"
        np.testing.assert_array_equal(state.positions, states[t])
    # the reset: one step after the old episode's last state, which differs from the start pose
    assert start >= before + CONTROL_DT_NS and start - CONTROL_DT_NS in states
    np.testing.assert_allclose(states[start], START_POSE, atol=1e-9)
    assert abs(states[start - CONTROL_DT_NS][0] - START_POSE[0]) > 0.05, "the arm moved before the reset"


@pytest.mark.ros
def test_driver_header_stamps_are_the_sim_time_of_the_state(ros):
    """Through the arm driver: /puppet/joint_states stamps strictly increase, are /clock times, and
    each message holds the physics state of its stamp; camera stamps are the simulated time of
    the scene the image shows; /sim/episode_start marks the first state after a reset."""
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Header

    from motus_msgs.srv import ResetEpisode
    from motus_ros.nodes.arm_driver_node import ArmDriverNode
    from motus_ros.nodes.sim_node import SIM_TOPICS, SimNode
    from motus_ros.ros.qos import image_qos

    # Half real time against a 50 Hz driver: the driver usually reads a state twice (the physics
    # did not step in between); it must publish it once.
    backend = RecordedSim(image_height=48, image_width=64, camera_rate_hz=10.0,
                          real_time_factor=0.5, seed=0)
    states = ros.collect(JointState, "/puppet/joint_states", 1000)
    clock = ros.collect(Clock, "/clock", 1000)
    images = ros.collect(Image, "/camera_high/color/image_raw", image_qos())
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    starts = ros.collect(Header, SIM_TOPICS["episode_start"], latched)
    P = Parameter
    ros.add(SimNode(backend=backend))    # as sim_node runs them: the world's ROS side, then its driver
    driver = ArmDriverNode(backend=backend, parameter_overrides=[
        P("calibration", P.Type.STRING, "sim"), P("rate_hz", P.Type.DOUBLE, 50.0),
        P("command_timeout", P.Type.DOUBLE, 60.0)])
    ros.add(driver)
    try:
        assert to_ns(starts.wait_for(1, timeout=30)[0].stamp) == 0  # episode 0 starts at time 0
        target = backend.read().positions.copy()
        target[7] = 0.5                     # the right waist moves: every state is different
        backend.write(target)
        states.wait_for(30, timeout=120)
        images.wait_for(3, timeout=120)
        reset_at = backend.sim_time_ns
        assert ros.call(ResetEpisode, SIM_TOPICS["reset"], ResetEpisode.Request()).success
        start = to_ns(starts.wait_for(1, timeout=30, predicate=lambda m: to_ns(m.stamp) > 0)[-1].stamp)
        states.wait_for(20, timeout=120, predicate=lambda m: to_ns(m.header.stamp) > start)
        images.wait_for(2, timeout=120, predicate=lambda m: to_ns(m.header.stamp) > start)
    finally:
        driver.close()
    with backend.history_lock:
        history, captures = dict(backend.states), dict(backend.captures)

    # joint states: strictly increasing, each a time of the sim clock holding that time's state;
    # a stamp is a nanosecond time of the clock (the driver converts seconds to Time)
    stamps = [to_ns(m.header.stamp) for m in states.messages]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "joint-state stamps repeat or go back"
    for msg, t in zip(states.messages, stamps):
        assert t in history, f"joint-state stamp {t} ns is no time of the sim clock"
        np.testing.assert_array_equal(msg.position, history[t])
    # /clock went through the same times: header stamps are /clock values
    ticks = [to_ns(m.clock) for m in clock.messages]
    assert all(b > a for a, b in zip(ticks, ticks[1:])), "/clock repeats or goes back"
    assert set(ticks) <= set(history)
    assert set(stamps) & set(ticks), "no joint-state stamp among the /clock times received"
    # the reset took one control period; the new episode's first state is the start pose
    assert start >= reset_at + CONTROL_DT_NS and start in history and start - CONTROL_DT_NS in history
    np.testing.assert_allclose(history[start], START_POSE, atol=1e-9)
    assert abs(history[start - CONTROL_DT_NS][7] - START_POSE[7]) > 0.05  # the old pose differs
    # cameras: stamped with the simulated time of the captured scene, which the image shows
    world = sw.SimWorld(backend.task, backend.image_size, seed=0, render_quality="fast")
    try:
        for msg in images.messages:
            t = to_ns(msg.header.stamp)
            assert t in captures, f"image stamp {t} ns is not the time of a captured scene"
            world.data.qpos[:] = captures[t]
            sw.mujoco.mj_forward(world.model, world.data)
            expected = world.render("high")
            shown = np.frombuffer(bytes(msg.data), np.uint8).reshape(expected.shape)
            np.testing.assert_array_equal(shown, expected)
    finally:
        world.close()
