"""SimWorld: gym-aloha scenes stepped at 50 Hz, three cameras, task reward and success."""
from __future__ import annotations

import numpy as np
import pytest

from motus_ros.sim import world as sw
from motus_ros.sim.scripted_expert import run_episode


@pytest.fixture(scope="module")
def world():
    w = sw.SimWorld("transfer_cube", (120, 160), seed=0)
    yield w
    w.close()


def test_reset_places_the_box_like_gym_aloha(world):
    from gym_aloha.utils import sample_box_pose

    poses = world.reset(seed=3)
    np.testing.assert_allclose(poses["box"], sample_box_pose(3))
    assert world.seed == 3 and world.time == 0.0 and world.reward == 0
    q = world.qpos()
    assert q.shape == (14,)
    np.testing.assert_allclose(q[[0, 1, 2, 3, 4, 5]], [0, -0.96, 1.16, 0, -0.3, 0])
    # START_ARM_POSE finger 0.02239 m -> (0.02239 - 0.01844) / (0.058 - 0.01844)
    np.testing.assert_allclose(q[[6, 13]], (0.02239 - 0.01844) / (0.058 - 0.01844))


def test_resets_without_seed_are_reproducible():
    a = sw.SimWorld("transfer_cube", (120, 160), seed=7)
    b = sw.SimWorld("transfer_cube", (120, 160), seed=7)
    assert a.seed == b.seed
    np.testing.assert_array_equal(a.reset()["box"], b.reset()["box"])


def test_step_is_one_50hz_control_step_and_moves_toward_targets(world):
    world.reset(seed=0)
    target = world.qpos()
    target[0] = 0.3        # left waist
    target[13] = 1.0       # right gripper open
    for _ in range(50):
        world.step(target)
    assert world.time == pytest.approx(50 * 0.02)
    assert world.steps == 50
    assert world.qpos()[0] == pytest.approx(0.3, abs=0.02)
    assert world.qpos()[13] > 0.9  # actuator reaches 0.057 m = 0.975 normalized


@pytest.mark.parametrize("bad, field", [(np.zeros(13), "shape"), (np.full(14, np.nan), "non-finite")])
def test_step_rejects_bad_targets(world, bad, field):
    with pytest.raises(ValueError, match=field):
        world.step(bad)


def test_gripper_conversions_round_trip():
    targets = np.linspace(-0.5, 0.5, 14)
    targets[[6, 13]] = [0.25, 0.75]
    ctrl = sw.targets_to_ctrl(targets)
    assert ctrl[7] == -ctrl[6] and ctrl[15] == -ctrl[14]
    assert ctrl[6] == pytest.approx(0.01844 + 0.25 * (0.058 - 0.01844))
    np.testing.assert_allclose(sw.qpos16_to_layout(ctrl), targets)


def test_limit_constants_match_the_mjcf(world):
    lower, upper = world.joint_range()
    np.testing.assert_allclose(lower, sw.LOWER)
    np.testing.assert_allclose(upper, sw.UPPER)


def test_renders_three_cameras(world):
    world.reset(seed=0)
    images = {c: world.render(c) for c in ("high", "left_wrist", "right_wrist")}
    for camera, image in images.items():
        assert image.shape == (120, 160, 3) and image.dtype == np.uint8, camera
        assert image.std() > 5, f"{camera} image is flat"
    top = images["high"].astype(int)
    red = (top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)
    assert red.sum() > 0, "the red cube is not visible from the top camera"
    assert world.camera_fovy("high") == pytest.approx(78.0)
    with pytest.raises(ValueError, match="camera"):
        world.render("angle")


def test_fast_render_quality_renders_same_shape():
    w = sw.SimWorld("transfer_cube", (60, 80), seed=0, render_quality="fast")
    try:
        assert w.render("high").shape == (60, 80, 3)
    finally:
        w.close()
    with pytest.raises(ValueError, match="render_quality"):
        sw.SimWorld("transfer_cube", (60, 80), render_quality="ultra")


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="task: got 'stack'"):
        sw.SimWorld("stack")


def test_holding_still_does_not_succeed(world):
    world.reset(seed=0)
    hold = world.qpos()
    for _ in range(100):
        world.step(hold)
    assert world.max_reward == 0 and not world.success
    assert world.object_poses()["box"][2] == pytest.approx(0.02, abs=1e-3)  # settled on the table


def test_scripted_expert_transfers_the_cube(world):
    result = run_episode(world, seed=0)
    assert result["max_reward"] == 4 and result["success"]


def test_insertion_scene_has_peg_and_socket():
    w = sw.SimWorld("insertion", (60, 80), seed=0)
    try:
        poses = w.reset(seed=1)
        assert sorted(poses) == ["peg", "socket"]
        assert 0.1 <= poses["peg"][0] <= 0.2 and -0.2 <= poses["socket"][0] <= -0.1
    finally:
        w.close()

