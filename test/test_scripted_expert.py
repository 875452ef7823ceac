"""Scripted expert: waypoints, interpolation, joint plan from the end-effector scene."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.sim import scripted_expert as se
from motus_ros.sim import world as sw

BOX = {"box": np.array([0.1, 0.5, 0.05, 1, 0, 0, 0])}


def test_quaternion_helpers():
    q = se.quat_axis_angle([0, 0, 1], 90)
    np.testing.assert_allclose(q, [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(se.quat_mul(q, q), se.quat_axis_angle([0, 0, 1], 180), atol=1e-12)
    np.testing.assert_allclose(se.quat_mul([1, 0, 0, 0], q), q)


def test_interpolation_is_linear_and_held_at_the_ends():
    a = se.Waypoint(0, np.zeros(3), np.array([1.0, 0, 0, 0]), 0.0)
    b = se.Waypoint(10, np.array([1.0, 0, 0]), se.quat_axis_angle([0, 1, 0], 90), 1.0)
    xyz, quat, grip = se.interpolate([a, b], 5)
    np.testing.assert_allclose(xyz, [0.5, 0, 0])
    assert grip == pytest.approx(0.5)
    assert np.linalg.norm(quat) == pytest.approx(1.0)
    np.testing.assert_allclose(se.interpolate([a, b], -3)[0], a.xyz)
    np.testing.assert_allclose(se.interpolate([a, b], 99)[0], b.xyz)


def test_waypoints_follow_the_cube():
    plan = se.transfer_cube_waypoints(BOX)
    above = next(w for w in plan["right"] if w.step == 90)
    np.testing.assert_allclose(above.xyz, [0.1, 0.5, se.SPAWN_Z + 0.08])
    assert plan["right"][-1].step == plan["left"][-1].step == se.EPISODE_STEPS


def test_missing_object_is_named():
    with pytest.raises(ValueError, match="'box'"):
        se.ScriptedExpert("transfer_cube", {"peg": np.zeros(7)})


def test_start_pose_holds_the_arms_still():
    start = se.ee_start()
    assert start["left"][0][0] < 0 < start["right"][0][0]
    plan = se.joint_trajectory("transfer_cube", BOX, steps=5)
    np.testing.assert_allclose(plan[:, [0, 1, 2, 4]], np.tile([0, -0.96, 1.16, -0.3], (5, 1)),
                               atol=0.02)


@pytest.fixture(scope="module")
def expert():
    return se.ScriptedExpert("transfer_cube", BOX)


def test_plan_is_inside_the_limits_and_starts_at_the_start_pose(expert):
    assert expert.targets.shape == (se.EPISODE_STEPS, 14)
    assert np.all(np.isfinite(expert.targets))
    assert np.all(expert.targets >= sw.LOWER - 1e-6) and np.all(expert.targets <= sw.UPPER + 1e-6)
    assert expert.duration_s == pytest.approx(8.0)
    # grippers: open to reach the cube (right) and closed at the end (left holds it)
    assert expert.targets[90, 13] == pytest.approx(1.0) and expert.targets[-1, 6] == pytest.approx(0.0)


def test_action_at_interpolates_between_control_steps(expert):
    np.testing.assert_allclose(expert.action_at(0.5 * 0.02 + 10 * 0.02),
                               0.5 * (expert.targets[10] + expert.targets[11]))
    np.testing.assert_allclose(expert.action(10**6), expert.targets[-1])
    np.testing.assert_allclose(expert.action_at(100.0), expert.targets[-1])
    assert expert.done(8.0) and not expert.done(7.9)


def test_plan_ignores_the_settled_height(expert):
    settled = {"box": np.array([0.1, 0.5, 0.02, 1, 0, 0, 0])}
    np.testing.assert_allclose(se.ScriptedExpert("transfer_cube", settled).targets[:150],
                               expert.targets[:150], atol=1e-3)


def test_continuous_wrist_picks_the_nearer_twin():
    a = np.zeros((2, 14))
    a[1, 3:6] = [np.pi - 0.1, -0.2, -np.pi + 0.1]  # same gripper pose as (-0.1, 0.2, 0.1)
    out = se.continuous_wrist(a)
    np.testing.assert_allclose(out[1, 3:6], [-0.1, 0.2, 0.1], atol=1e-12)
