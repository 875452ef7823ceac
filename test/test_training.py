"""Training on converted episodes: windows, latent cache, the loop (loss goes down), resume, loading."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motus_ros import layout
from motus_ros.data import convert as cv
from motus_ros.motus.checkpoint import read_own_weights
from motus_ros.motus.config import LOSS_FIELDS, OFFICIAL_CONVENTIONS, preset
from motus_ros.motus.flow import LossSettings
from motus_ros.training import dataset as ds
from motus_ros.training.sim_episodes import finalize
from motus_ros.training.trainer import (STATE_FILE, TrainConfig, epoch_batches, load_training_state, lr_lambda,
                                        resumed_loss, split_overrides, starting_loss, train)

STEPS = 60          # control steps per synthetic episode (2 s at 30 Hz)
FRAMES = 10         # at 5 Hz
INSTRUCTION = "move the red square"


def synthetic_episode(root: Path, index: int) -> cv.ConvertedEpisode:
    """Joints follow a smooth, episode-dependent curve; the frames show a square whose position
    follows the first joint, so frames, state and actions are related."""
    t = np.arange(STEPS) / layout.CONTROL_RATE_HZ
    phase = 0.7 * index
    state = np.stack([0.5 * np.sin(t * (1 + 0.1 * j) + phase) for j in range(layout.DOF)], 1).astype(np.float32)
    action = np.roll(state, -3, axis=0)
    action[-3:] = state[-1]
    steps = np.arange(FRAMES, dtype=np.int64) * 6
    frames = np.zeros((FRAMES, cv.TILE_HEIGHT, cv.TILE_WIDTH, 3), dtype=np.uint8)
    for f, s in enumerate(steps):
        x = int((state[s, 0] + 0.5) * 200) + 20
        frames[f, 100:160, x: x + 60] = (220, 30, 30)
        frames[f, 250:300, 40:120] = (30, 200, 30)
    episode = cv.ConvertedEpisode(
        name=f"synthetic_{index}", source="test", robot="sim", task=INSTRUCTION, timestamps=t, state=state,
        action=action.astype(np.float32), frame_steps=steps, frame_times=t[steps], sync_error_s={},
        time_source="test")
    cv.write_episode(root, episode, frames, compress=False)
    return episode


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    finalize(root, [synthetic_episode(root, i) for i in range(4)], val_fraction=0.25)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("latent_cache")


def config(data_dir, cache_dir, out, **kw) -> TrainConfig:
    base = dict(data=str(data_dir), out=str(out), preset="tiny", epochs=3, batch_size=4, lr=3e-3, warmup_steps=0,
                device="cpu", cache_dir=str(cache_dir), val_windows=4, val_steps=2, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


# Pure pieces ---------------------------------------------------------------------------------------
def test_windows_pad_past_the_end_of_an_episode(data_dir):
    data = ds.load_dataset(data_dir)
    ep = data.episodes[0]
    f_idx, s, a_idx = ds.window_indices(ep, FRAMES - 2, num_future=8, chunk=48)
    assert s == ep.frame_steps[FRAMES - 2]
    assert list(f_idx) == [FRAMES - 2] + [FRAMES - 1] * 8
    assert a_idx[0] == s + 1 and a_idx[-1] == STEPS - 1
    arrays = ds.window_arrays(data, ds.Window(0, 0), __import__("motus_ros.motus.config", fromlist=["x"]).preset("tiny"))
    assert arrays["frames"].shape == (3, 9, 192, 160)
    assert arrays["actions"].shape == (48, 14) and arrays["state"].shape == (14,)
    assert 0.0 <= arrays["actions"].min() and arrays["actions"].max() <= 1.0   # train-split min/max, val inside


def test_frames_are_read_from_disk_on_demand(data_dir):
    data = ds.load_dataset(data_dir)
    ep = data.episodes[1]
    assert not any(isinstance(v, np.ndarray) and v.ndim == 4 for v in vars(ep).values())   # no video held
    with np.load(data_dir / "episodes" / ep.name / "data.npz") as d:
        assert np.array_equal(ep.frames, d["frames"]) and ep.num_frames == len(d["frames"]) == FRAMES
    assert ep.frames[3, 120, 100:].tolist().count([220, 30, 30]) > 0                          # the red square


def test_dataset_errors_name_the_problem(tmp_path, data_dir):
    with pytest.raises(ds.DatasetError, match="dataset.json not found"):
        ds.load_dataset(tmp_path)
    from motus_ros.motus.config import preset

    data = ds.load_dataset(data_dir)
    with pytest.raises(ds.DatasetError, match="chunk_size 24 .* num_future_frames 8"):
        ds.check_rates(data, preset("tiny").replace(chunk_size=24))


def test_epoch_batches_are_seeded_and_shard_every_item():
    a = epoch_batches(10, 3, seed=1, epoch=0)
    assert a == epoch_batches(10, 3, seed=1, epoch=0)
    assert a != epoch_batches(10, 3, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(10))
    shards = [epoch_batches(12, 3, 1, 0, rank=r, world=2) for r in range(2)]
    assert sorted(i for s in shards for b in s for i in b) == list(range(12))


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    f = lr_lambda(warmup=10, total=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(110) == pytest.approx(0.1) and f(60) == pytest.approx(0.55)


# The loop ------------------------------------------------------------------------------------------
def test_training_lowers_validation_loss_and_writes_loadable_weights(data_dir, cache_dir, tmp_path):
    out = tmp_path / "run"
    summary = train(config(data_dir, cache_dir, out), log=lambda s: None)
    epochs = summary["history"]["epochs"]
    assert epochs[0]["step"] == 0 and len(epochs) == 4                 # before training + 3 epochs
    assert epochs[-1]["val_loss"] < 0.8 * epochs[0]["val_loss"]
    assert np.isfinite(epochs[-1]["val_action_mse_vla"])
    for name in ("model.safetensors", "config.json", "stats.json", "loss.png", "metrics.json", "training.json",
                 f"checkpoint-last/{STATE_FILE}"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "training.json").read_text())
    assert info["data"]["train_episodes"] == 3 and info["data"]["val_episodes"] == 1
    assert info["instruction"] == INSTRUCTION and info["hardware"]["device"] == "cpu"
    assert info["loss"] == LossSettings().to_dict() == info["config"]["loss"]    # a fresh preset: the defaults
    assert not set(LOSS_FIELDS) & set(json.loads((out / "config.json").read_text())["config"])

    from motus_ros.policy.runtime import load_policy

    policy = load_policy(preset="tiny", checkpoint=str(out), stats=str(out / "stats.json"))
    trained = read_own_weights(out)
    key = "action.decoder.proj.weight" if "action.decoder.proj.weight" in trained else sorted(
        k for k in trained if k.startswith("action."))[0]
    assert torch.equal(policy.model.state_dict()[key], trained[key])
    image = np.zeros((240, 320, 3), np.uint8)
    result = policy.infer({"images": {c: image for c in layout.CAMERAS}, "state": np.zeros(14),
                           "instruction": INSTRUCTION})
    stats = json.loads((out / "stats.json").read_text())
    assert result["actions"].shape == (48, 14)
    assert (result["actions"] >= np.asarray(stats["action"]["min"]) - 1e-9).all()
    assert (result["actions"] <= np.asarray(stats["action"]["max"]) + 1e-9).all()
    # The second run on the same data and encoders reads the latent cache instead of encoding.
    again = train(config(data_dir, cache_dir, tmp_path / "again", epochs=1, max_steps=1), log=lambda s: None)
    assert again["latent_cache"]["encoded_this_run"] is False
    assert again["latent_cache"]["folder"] == summary["latent_cache"]["folder"]


def test_resume_continues_exactly_like_an_uninterrupted_run(data_dir, cache_dir, tmp_path):
    weights = {"action_loss_weight": 2.0}       # not repeated on resume: the recorded loss settings carry on
    full = train(config(data_dir, cache_dir, tmp_path / "full", epochs=2, max_steps=4, overrides=weights),
                 log=lambda s: None)
    first = train(config(data_dir, cache_dir, tmp_path / "split", epochs=2, max_steps=2, overrides=weights),
                  log=lambda s: None)
    ckpt = tmp_path / "split" / "checkpoint-last"
    state = load_training_state(ckpt)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (2, 0, 2)      # stopped mid-epoch
    saved = read_own_weights(ckpt)
    assert all(torch.equal(saved[k], v) for k, v in read_own_weights(tmp_path / "split").items())
    assert len(state["optimizer"]["state"]) > 0
    assert json.loads(state["config"])["loss"]["action_loss_weight"] == 2.0

    resumed = train(config(data_dir, cache_dir, tmp_path / "split", epochs=2, max_steps=4, resume=str(ckpt)),
                    log=lambda s: None)
    losses_full = [s["loss"] for s in full["history"]["steps"]]
    losses_resumed = [s["loss"] for s in resumed["history"]["steps"]]
    assert [s["loss"] for s in first["history"]["steps"]] == losses_full[:2]
    assert losses_resumed == pytest.approx(losses_full, rel=1e-6, abs=1e-7)
    assert resumed["loss"] == full["loss"] == LossSettings(action_loss_weight=2.0).to_dict()
    a, b = read_own_weights(tmp_path / "full"), read_own_weights(tmp_path / "split")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_cache_key_follows_data_and_encoder_weights(data_dir):
    from motus_ros.motus.config import preset
    from motus_ros.motus.model import build_model
    from motus_ros.training.latent_cache import cache_key

    data = ds.load_dataset(data_dir)
    model = build_model(preset("tiny"))
    key, inputs = cache_key(data, model)
    assert cache_key(data, model)[0] == key
    with torch.no_grad():
        next(model.vae.parameters()).add_(1.0)
    changed, changed_inputs = cache_key(data, model)
    assert changed != key and changed_inputs["dataset"] == inputs["dataset"]


def test_init_starts_from_the_given_weights_with_changed_loss_weights(data_dir, cache_dir, tmp_path):
    base = train(config(data_dir, cache_dir, tmp_path / "base", epochs=1, max_steps=2), log=lambda s: None)
    start = read_own_weights(tmp_path / "base")
    tuned = train(config(data_dir, cache_dir, tmp_path / "tuned", epochs=1, max_steps=1, lr=1e-12,
                         init=str(tmp_path / "base"), overrides={"action_loss_weight": 7.0}), log=lambda s: None)
    # The first validation (before any step) sees the initial weights: identical to base's last one.
    assert tuned["history"]["epochs"][0]["val_action"] == pytest.approx(base["history"]["epochs"][-1]["val_action"])
    after = read_own_weights(tmp_path / "tuned")
    assert max(float((after[k] - start[k]).abs().max()) for k in start) < 1e-6     # lr ~ 0: weights kept
    # The override is recorded with the run (training.json), not in the model config (config.json).
    assert json.loads((tmp_path / "tuned" / "training.json").read_text())["loss"]["action_loss_weight"] == 7.0
    assert tuned["config"]["loss"]["action_loss_weight"] == 7.0
    assert "action_loss_weight" not in json.loads((tmp_path / "tuned" / "config.json").read_text())["config"]
    assert tuned["initialized_from"] == str(tmp_path / "base")
    # A run from "tuned" starts with its loss settings (training.json), unless told otherwise.
    model_config = preset("tiny")
    assert starting_loss(tmp_path / "tuned", model_config) == LossSettings(action_loss_weight=7.0)

    with pytest.raises(ValueError, match="num_layers"):
        train(config(data_dir, cache_dir, tmp_path / "bad", max_steps=1, init=str(tmp_path / "base"),
                     overrides={"num_layers": 1}), log=lambda s: None)
    with pytest.raises(ValueError, match="--init and --resume"):
        train(config(data_dir, cache_dir, tmp_path / "both", max_steps=1, init=str(tmp_path / "base"),
                     resume=str(tmp_path / "base")), log=lambda s: None)


def test_init_adds_frame_actions_and_lr_scale_trains_only_them_at_their_rate(data_dir, cache_dir, tmp_path):
    """--init with video_action_conditioning=frame adds the path at zero; with lr ~ 0 for the rest and
    --lr-scale for the new path, one step moves the new path and nothing else."""
    train(config(data_dir, cache_dir, tmp_path / "base", epochs=1, max_steps=1), log=lambda s: None)
    start = read_own_weights(tmp_path / "base")
    train(config(data_dir, cache_dir, tmp_path / "framed", epochs=1, max_steps=1, lr=1e-12,
                 lr_scale={"video.frame_actions.": 1e9}, init=str(tmp_path / "base"),
                 overrides={"video_action_conditioning": "frame", "clean_action_fraction": 0.5}), log=lambda s: None)
    after = read_own_weights(tmp_path / "framed")
    new = sorted(k for k in after if k.startswith("video.frame_actions."))
    assert new and set(after) - set(start) == set(new)
    assert max(float((after[k] - start[k]).abs().max()) for k in start) < 1e-6
    assert float(after["video.frame_actions.net.2.weight"].abs().max()) > 1e-4      # it started at zero
    record = json.loads((tmp_path / "framed" / "training.json").read_text())
    assert record["config"]["lr_scale"] == {"video.frame_actions.": 1e9}
    with pytest.raises(ValueError, match=r"lr_scale: video.frame_actions.=-1, expected a number > 0"):
        train(config(data_dir, cache_dir, tmp_path / "bad", max_steps=1, lr_scale={"video.frame_actions.": -1}),
              log=lambda s: None)


def test_max_minutes_counts_training_not_the_cache_encoding(data_dir, tmp_path, monkeypatch):
    """A slow first encoding (minutes on a CPU) must not eat a short run's budget."""
    import time

    from motus_ros.training import trainer as tr

    real = tr.build_or_open

    def slow_encoding(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "build_or_open", slow_encoding)
    summary = train(config(data_dir, tmp_path / "cache", tmp_path / "run", epochs=50, max_minutes=0.02),
                    log=lambda s: None)
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["stop_reason"] == "max_minutes" and info["steps"] >= 1, info
    assert summary["history"]["epochs"][-1]["step"] == info["steps"]


def test_state_augmentation_only_while_training(monkeypatch):
    from motus_ros.training import trainer

    seen = []
    monkeypatch.setattr(trainer, "conditioning", lambda model, batch: None)
    monkeypatch.setattr(trainer, "flow_matching_loss",
                        lambda model, lat, act, state, cond, settings, generator: seen.append(state))
    state = torch.full((256, 14), 0.25)
    objective = trainer.FlowObjective(torch.nn.Linear(1, 1), LossSettings(), state_noise=0.1, state_dropout=0.5)
    objective.train()
    objective({"state": state, "latents": None, "actions": None}, torch.Generator().manual_seed(0))
    hidden = (seen[0] == 0.5).all(1)
    assert 0.3 < hidden.float().mean() < 0.7                                 # ~half the windows hidden
    noise = seen[0][~hidden] - 0.25
    assert 0.07 < float(noise.std()) < 0.13 and abs(float(noise.mean())) < 0.02
    objective.eval()                                                           # validation sees the real state
    objective({"state": state, "latents": None, "actions": None}, torch.Generator().manual_seed(0))
    assert torch.equal(seen[1], state)


def test_bad_state_augmentation_is_refused(data_dir, cache_dir, tmp_path):
    with pytest.raises(ValueError, match="state_dropout: got 1.0"):
        train(config(data_dir, cache_dir, tmp_path / "x", state_dropout=1.0), log=lambda s: None)
    with pytest.raises(ValueError, match="state_noise: got -0.1"):
        train(config(data_dir, cache_dir, tmp_path / "x", state_noise=-0.1), log=lambda s: None)


# Loss settings of a run that starts from a checkpoint ---------------------------------------------
def _own_folder(folder: Path, config: dict, training: dict | None = None) -> Path:
    """An own-format checkpoint folder as far as the loss settings are concerned (no real weights)."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"format": "motus_ros/1", "config": config}))
    if training is not None:
        (folder / "training.json").write_text(json.dumps(training))
    return folder


def test_old_checkpoint_loss_fields_carry_into_the_loss_settings(tmp_path):
    cfg = preset("tiny")
    legacy = {"logit_mean": 0.0, "logit_std": 1.0, "uniform_shift": 3.0, "video_loss_weight": 1.0,
              "action_loss_weight": 5}
    old = _own_folder(tmp_path / "old", {**cfg.to_dict(), **legacy}, training={"config": {"overrides": {}}})
    assert starting_loss(old, cfg) == LossSettings(uniform_shift=3.0, action_loss_weight=5.0)
    new = _own_folder(tmp_path / "new", cfg.to_dict(), training={"loss": {"video_loss_weight": 0.5}})
    assert starting_loss(new, cfg) == LossSettings(video_loss_weight=0.5)
    official = cfg.replace(conventions=OFFICIAL_CONVENTIONS)        # e.g. a converted official checkpoint
    converted = _own_folder(tmp_path / "converted", official.to_dict())
    assert starting_loss(converted, official) == LossSettings.official()
    assert starting_loss(_own_folder(tmp_path / "plain", cfg.to_dict()), cfg) == LossSettings()
    # Resuming: the state's recorded TrainConfig.loss; a state written before it: the old config.json.
    assert resumed_loss({"config": json.dumps({"loss": {"logit_std": 0.5}})}, old, cfg) == LossSettings(logit_std=0.5)
    assert resumed_loss({"config": json.dumps({"overrides": {}})}, old, cfg).action_loss_weight == 5.0


def test_shipped_sim_weights_keep_their_loss_weight():
    from motus_ros.paths import models_dir

    folder = models_dir() / "sim_transfer_cube"
    if not (folder / "config.json").is_file():
        pytest.skip("no shipped sim weights in this checkout")
    if "action_loss_weight" not in json.loads((folder / "config.json").read_text())["config"]:
        pytest.skip("shipped sim weights written after the loss settings left the model config")
    # Trained with --set action_loss_weight=5, recorded (then) in config.json's model config.
    assert starting_loss(folder, preset("small")).action_loss_weight == 5.0


def test_overrides_split_into_model_and_loss_fields(data_dir, cache_dir, tmp_path):
    assert split_overrides({"num_layers": 1, "action_loss_weight": 7, "conventions.video_loss": "all_frames"}) == (
        {"num_layers": 1, "conventions.video_loss": "all_frames"}, {"action_loss_weight": 7})
    with pytest.raises(ValueError, match="LossSettings: uniform_shift=0.0, expected > 0"):
        train(config(data_dir, cache_dir, tmp_path / "x", overrides={"uniform_shift": 0.0}), log=lambda s: None)
