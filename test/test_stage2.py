"""Stage 2 (latent actions from video without joint labels) and the data it trains on: label-free
episodes, the latent-action sidecars, stage-2 windows, a stage-2 training and a stage 3 from it,
random-motion sim episodes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from motus_ros import layout
from motus_ros.data import convert as cv
from motus_ros.motus.checkpoint import read_own_weights
from motus_ros.training import dataset as ds
from motus_ros.training.sim_episodes import finalize
from motus_ros.training.trainer import TrainConfig, train

STEPS = 60          # control steps per synthetic episode (2 s at 30 Hz)
FRAMES = 10         # at 5 Hz: frame f at control step 6 f
INSTRUCTION = "move the red square"


def _episode(root: Path, index: int, labeled: bool) -> cv.ConvertedEpisode:
    """A red square whose x position follows a smooth episode-dependent curve; joint data (the
    curve in every joint) only when labeled."""
    t = np.arange(STEPS) / layout.CONTROL_RATE_HZ
    curve = 0.5 * np.sin(1.3 * t + 0.7 * index)
    state = np.stack([curve * (1 + 0.05 * j) for j in range(layout.DOF)], 1).astype(np.float32)
    action = np.concatenate([state[3:], np.repeat(state[-1:], 3, 0)])
    steps = np.arange(FRAMES, dtype=np.int64) * 6
    frames = np.zeros((FRAMES, cv.TILE_HEIGHT, cv.TILE_WIDTH, 3), dtype=np.uint8)
    for f, s in enumerate(steps):
        x = int((curve[s] + 0.5) * 200) + 20
        frames[f, 100:160, x: x + 60] = (220, 30, 30)
    episode = cv.ConvertedEpisode(
        name=f"{'robot' if labeled else 'video'}_{index}", source="test", robot="sim", task=INSTRUCTION,
        timestamps=t, state=state if labeled else None, action=action if labeled else None, frame_steps=steps,
        frame_times=t[steps], sync_error_s={}, time_source="test")
    cv.write_episode(root, episode, frames, compress=False)
    return episode


def write_latent_actions(root: Path, dims: int = 14) -> dict[str, np.ndarray]:
    """The sidecars as `motus-ros latent-actions label` writes them: per episode latent_actions
    [F-1, D] float32 and frame_steps [F-1] int64 (each interval's end), and the dataset's
    latent_action_stats.json. The latent action of an interval is the square's motion in it."""
    meta = json.loads((root / "dataset.json").read_text())
    written = {}
    for e in meta["episodes"]:
        folder = root / "episodes" / e["name"]
        with np.load(folder / "data.npz") as d:
            steps = d["frame_steps"]
            x = d["frames"][:, 130, :, 0].argmax(1).astype(np.float64)       # left edge of the square
        motion = np.diff(x) / 20.0                                            # [F-1]
        latents = np.stack([motion * (1 + 0.1 * k) + 0.05 * k for k in range(dims)], 1).astype(np.float32)
        np.savez(folder / ds.LATENT_ACTIONS_FILE, latent_actions=latents, frame_steps=steps[1:].astype(np.int64))
        written[e["name"]] = latents
    every = np.concatenate(list(written.values()))
    (root / ds.LATENT_STATS_FILE).write_text(json.dumps({"min": every.min(0).tolist(),
                                                         "max": every.max(0).tolist()}))
    return written


def make_dataset(root: Path, labeled: int, unlabeled: int, dims: int | None = 14) -> Path:
    episodes = [_episode(root, i, True) for i in range(labeled)]
    episodes += [_episode(root, labeled + i, False) for i in range(unlabeled)]
    finalize(root, episodes, val_fraction=0.5)
    if dims:
        write_latent_actions(root, dims)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Two episodes with joint data, two without; sidecars for all four."""
    return make_dataset(tmp_path_factory.mktemp("mixed"), labeled=2, unlabeled=2)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("latent_cache")


def config(data, cache_dir, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", epochs=4, batch_size=4, lr=3e-3, warmup_steps=0,
                device="cpu", cache_dir=str(cache_dir), val_windows=4, val_steps=2, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


# Windows -------------------------------------------------------------------------------------------
def test_stage2_windows_interpolate_the_latent_actions_between_frames(mixed):
    from motus_ros.motus.config import preset
    from motus_ros.policy.transforms import normalize

    data = ds.load_dataset(mixed, targets="latent_actions")
    assert data.stats is None and data.action_size == 14
    assert data.trainable(list(range(4))) == [0, 1, 2, 3]           # with and without joint data
    ep = next(e for e in data.episodes if not e.has_actions)
    i = data.episodes.index(ep)
    cfg = preset("tiny")
    arrays = ds.window_arrays(data, ds.Window(i, 2), cfg)
    assert arrays["state"].shape == (cfg.state_dim,) and (arrays["state"] == 0.5).all()   # hidden state
    latents = ep.latent_actions                                     # [F-1, 14]; row k ends at step 6 (k + 1)
    rows = arrays["actions"]                                        # control steps 13 .. 60 (held at 59)
    assert rows.shape == (48, 14) and 0.0 <= rows.min() and rows.max() <= 1.0
    # Frame 2 is step 12, the end of interval 1; step 12 + i (0 < i <= 6) lies i/6 of the way to
    # the end of interval 2 (step 18), and so on; past the last frame (step 54) the last one holds.
    for r, step in enumerate(range(13, 61)):
        step = min(step, STEPS - 1)
        k, j = divmod(step, 6)
        value = latents[-1] if k >= FRAMES - 1 else (1 - j / 6) * latents[k - 1] + j / 6 * latents[k]
        np.testing.assert_allclose(rows[r], normalize(value, data.latent_stats), atol=1e-6,
                                   err_msg=f"row {r}, step {step}")
    np.testing.assert_allclose(rows[5], normalize(latents[2], data.latent_stats), atol=1e-6)   # step 18: exact
    # Stage 3 on the same folder: joint targets of the labeled episodes only.
    joint = ds.load_dataset(mixed)
    assert joint.trainable(list(range(4))) == [0, 1]
    with pytest.raises(ds.DatasetError, match="no action targets"):
        ds.window_arrays(joint, ds.Window(i, 0), cfg)


# Training ------------------------------------------------------------------------------------------
def test_stage2_training_lowers_the_loss_and_stage3_starts_from_it(mixed, cache_dir, tmp_path):
    s2 = tmp_path / "stage2"
    summary = train(config(mixed, cache_dir, s2, stage=2), log=lambda s: None)
    epochs = summary["history"]["epochs"]
    # One train episode of each kind: the validation episodes' motion is new, so the drop is modest.
    assert epochs[-1]["val_loss"] < 0.85 * epochs[0]["val_loss"]
    assert epochs[-1]["val_action"] < epochs[0]["val_action"]            # the latent-action targets too
    assert epochs[-1]["train_loss"] < epochs[1]["train_loss"]
    info = json.loads((s2 / "training.json").read_text())
    assert info["stage"] == 2 and info["config"]["stage"] == 2 and info["targets"] == "latent actions"
    assert info["data"]["train_episodes"] == 2 and info["data"]["train_windows"] == 2 * FRAMES
    assert json.loads((s2 / ds.LATENT_STATS_FILE).read_text()) == json.loads((mixed / ds.LATENT_STATS_FILE).read_text())
    assert (s2 / "checkpoint-last" / ds.LATENT_STATS_FILE).is_file()
    assert not (s2 / "stats.json").exists()          # its action head speaks latent actions, not joints

    s3 = tmp_path / "stage3"
    tuned = train(config(mixed, cache_dir, s3, init=str(s2), lr=1e-12, max_steps=1, epochs=1), log=lambda s: None)
    start, after = read_own_weights(s2), read_own_weights(s3)
    assert max(float((after[k] - start[k]).abs().max()) for k in start) < 1e-6   # started from stage 2
    info3 = json.loads((s3 / "training.json").read_text())
    assert info3["stage"] == 3 and info3["initialized_from"] == str(s2) and info3["initialized_from_stage"] == 2
    assert info3["data"]["train_episodes"] == 1 and info3["data"]["val_episodes"] == 1   # joint data only
    assert (s3 / "stats.json").is_file()
    assert tuned["latent_cache"]["encoded_this_run"] is False          # stage 2 encoded these windows
    with pytest.raises(ValueError, match="a stage-2 run, but stage 3 was asked for"):
        train(config(mixed, cache_dir, s2, resume=str(s2)), log=lambda s: None)


def test_stage2_refuses_state_augmentation(mixed, cache_dir, tmp_path):
    with pytest.raises(ValueError, match="stage 2 hides the state"):
        train(config(mixed, cache_dir, tmp_path / "x", stage=2, state_dropout=0.3), log=lambda s: None)


# Clear errors --------------------------------------------------------------------------------------
def test_missing_or_stale_sidecar_names_the_episode_and_the_command(mixed, cache_dir, tmp_path):
    from motus_ros.cli import CliError
    from motus_ros.commands.train import main

    copy = tmp_path / "copy"
    shutil.copytree(mixed, copy, ignore=shutil.ignore_patterns(".latent_cache"))
    (copy / "episodes" / "video_3" / ds.LATENT_ACTIONS_FILE).unlink()
    with pytest.raises(ds.DatasetError) as err:
        ds.load_dataset(copy, targets="latent_actions")
    message = str(err.value)
    assert "\n" not in message and "episode video_3" in message
    assert f"motus-ros latent-actions label {copy} --model DIR" in message
    with pytest.raises(CliError, match="episode video_3: no latent actions"):       # the command line too
        main(["--data", str(copy), "--out", str(tmp_path / "out"), "--preset", "tiny", "--stage", "2",
              "--device", "cpu", "--cache-dir", str(cache_dir), "--no-progress"])
    # A sidecar written for other frames (the episode converted again since).
    np.savez(copy / "episodes" / "video_3" / ds.LATENT_ACTIONS_FILE,
             latent_actions=np.zeros((FRAMES - 1, 14), np.float32), frame_steps=np.arange(1, FRAMES) * 5)
    with pytest.raises(ds.DatasetError, match="episode video_3: .*frame_steps .* differ"):
        ds.load_dataset(copy, targets="latent_actions")
    (copy / ds.LATENT_STATS_FILE).unlink()
    with pytest.raises(ds.DatasetError, match="no latent action statistics .*motus-ros latent-actions label"):
        ds.load_dataset(copy, targets="latent_actions")


def test_latent_dimension_must_be_the_action_dim(tmp_path, cache_dir):
    data = make_dataset(tmp_path / "d8", labeled=0, unlabeled=2, dims=8)
    with pytest.raises(ds.DatasetError, match="latent actions of 8 dimensions .* action_dim is 14"):
        train(config(data, cache_dir, tmp_path / "out", stage=2, max_steps=1), log=lambda s: None)


def test_stage3_on_data_without_joint_labels_says_so(tmp_path, cache_dir):
    data = make_dataset(tmp_path / "videos", labeled=0, unlabeled=2, dims=None)
    assert json.loads((data / "stats.json").read_text()) == {}
    with pytest.raises(ds.DatasetError, match="none of its 2 episodes has joint data .*--stage 2"):
        train(config(data, cache_dir, tmp_path / "out", max_steps=1), log=lambda s: None)
    frames_only = ds.load_dataset(data, targets="none")          # frames stay readable
    assert frames_only.episodes[0].frames.shape == (FRAMES, cv.TILE_HEIGHT, cv.TILE_WIDTH, 3)
    assert frames_only.episodes[0].num_steps == STEPS and not frames_only.episodes[0].has_actions


# Random-motion sim episodes ------------------------------------------------------------------------
def test_random_motion_targets_stay_within_the_limits_smoothly():
    from motus_ros.hardware.calibration import load_calibration
    from motus_ros.sim import world as simworld
    from motus_ros.training import sim_episodes as se

    limits = load_calibration("sim").limits
    dt = simworld.CONTROL_DT
    runs = [se.random_motion_targets(np.random.default_rng(seed), 400, dt) for seed in range(6)]
    start = simworld.qpos16_to_layout(simworld.START_ARM_POSE)
    for q in runs:
        assert q.shape == (400, 14)
        np.testing.assert_allclose(q[0], start, atol=1e-12)                 # from the pose the world resets to
        assert (q >= limits.lower - 1e-9).all() and (q <= limits.upper + 1e-9).all()
        speed = np.abs(np.diff(q, axis=0)).max(0) / dt
        assert (speed <= limits.max_velocity).all(), speed
        assert (speed[list(layout.GRIPPER_INDICES)] <= se.GRIPPER_MAX_SPEED + 1e-6).all()
        accel = np.abs(np.diff(q, 2, axis=0)).max() / dt ** 2
        assert accel < 20.0                                                  # smooth, no jumps in speed
    every = np.concatenate(runs)
    for g in layout.GRIPPER_INDICES:                                         # grippers open and close
        assert every[:, g].min() < 0.05 and every[:, g].max() > 0.95
    arm = [j for j in range(14) if j not in layout.GRIPPER_INDICES]
    assert (every[:, arm].std(0) > 0.1).all()                                # every joint moves
    assert not np.array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], se.random_motion_targets(np.random.default_rng(0), 400, dt))


def test_random_motion_episode_without_joint_data(tmp_path):
    from motus_ros.layout import SIM_IMAGE_SIZE
    from motus_ros.sim import world as simworld
    from motus_ros.training import sim_episodes as se

    world = simworld.SimWorld("transfer_cube", SIM_IMAGE_SIZE, seed=0, render_quality="fast")
    try:
        labeled, frames = se.record_random_episode(world, 7, steps=30)
        box = world.object_poses()["box"]
        withheld, frames2 = se.record_random_episode(world, 7, steps=30, actions=False)
    finally:
        world.close()
    assert labeled.name == "sim_random_seed7" and labeled.task == se.RANDOM_INSTRUCTION
    assert frames.shape == (3, cv.TILE_HEIGHT, cv.TILE_WIDTH, 3) and np.array_equal(frames, frames2)
    assert 0.0 < box[2] < 0.1                                               # the cube is in the scene
    player = se.RandomMotion(7, 30, simworld.CONTROL_DT)
    np.testing.assert_allclose(labeled.action, np.stack([player.action_at(t) for t in labeled.timestamps]),
                               atol=1e-6)
    assert np.abs(labeled.state - labeled.action).max() < 0.5              # the arms follow the targets
    assert withheld.state is None and withheld.action is None and not withheld.has_actions
    cv.write_episode(tmp_path, withheld, frames2, compress=False)
    finalize(tmp_path, [withheld])
    assert json.loads((tmp_path / "dataset.json").read_text())["episodes"][0]["has_actions"] is False
    data = ds.load_dataset(tmp_path, targets="none")
    np.testing.assert_array_equal(data.episodes[0].frame_steps, [0, 6, 12])


def test_perturbed_expert_offsets_the_arm_joints_smoothly_and_within_the_limits():
    from motus_ros.sim import scripted_expert as sx
    from motus_ros.sim import world as simworld
    from motus_ros.training import sim_episodes as se

    world = simworld.SimWorld("transfer_cube", (48, 64), seed=0, render_quality="fast")
    try:
        poses = world.reset(3)
    finally:
        world.close()
    dt = simworld.CONTROL_DT
    expert = sx.ScriptedExpert("transfer_cube", poses)
    runs = [se.PerturbedExpert(expert, seed, dt) for seed in (0, 1)]
    for player in runs:
        assert len(player) == len(expert)
        q = np.stack([player.action(k) for k in range(len(player))])
        assert (q >= simworld.LOWER - 1e-9).all() and (q <= simworld.UPPER + 1e-9).all()
        offsets = q - np.stack([expert.action(k) for k in range(len(expert))])
        grips = list(layout.GRIPPER_INDICES)
        np.testing.assert_allclose(offsets[:, grips], 0.0, atol=1e-12)      # grippers as planned
        arm = [j for j in range(14) if j not in layout.GRIPPER_INDICES]
        assert np.abs(offsets[:, arm]).max() <= se.PERTURB_SPAN_RAD + 1e-9
        assert (np.abs(offsets[:, arm]).max(0) > 0.05).all()                # every arm joint is moved
        assert np.abs(np.diff(player.offsets, axis=0)).max() / dt < 2.0     # smooth: rad/s, no jumps
        np.testing.assert_allclose(player.action_at(7 * dt), player.action(7), atol=1e-9)
    assert not np.array_equal(runs[0].offsets, runs[1].offsets)
    np.testing.assert_array_equal(runs[0].offsets, se.PerturbedExpert(expert, 0, dt).offsets)
