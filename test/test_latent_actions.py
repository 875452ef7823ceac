"""Latent actions from optical flow (motus_ros/latent_actions): DIS flow, the colour wheel and its
inverse, the per-episode flow cache, the flow autoencoder, the latent-action VAE, the command line
(train-ae, train-vae, label, report) and the sidecar files it writes for stage 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motus_ros import cli, layout
from motus_ros.data import convert as cv
from motus_ros.latent_actions import flow as fl
from motus_ros.latent_actions import pairs as pr
from motus_ros.latent_actions._folders import LatentActionError
from motus_ros.latent_actions.flow_ae import (FlowAE, FlowAEConfig, load_flow_ae, preset, reconstruction_loss,
                                              save_flow_ae)
from motus_ros.latent_actions.latent_vae import (LatentActionVAE, LatentVAEConfig, alignment_loss, kl_divergence,
                                                 latent_vae_loss, load_latent_action_stats, load_latent_vae,
                                                 save_latent_vae, stats_document)
from motus_ros.training import dataset as ds
from motus_ros.training.sim_episodes import finalize

STEPS = 48          # control steps per synthetic episode (1.6 s at 30 Hz)
FRAMES = 8          # at 5 Hz: frame k at step 6k
EPISODES = 4
TINY = preset("tiny")                       # 96x80 estimation, 48x40 flow images, 30 tokens x 8 channels


def texture(shape: tuple[int, int], seed: int, blur: float = 2.0) -> np.ndarray:
    """Smooth random grey texture, uint8 over the full range (gives DIS gradients everywhere)."""
    import cv2

    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), blur)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def synthetic_episode(root: Path, index: int, with_actions: bool = True) -> cv.ConvertedEpisode:
    """A textured patch on a textured background; the patch's position follows the first two action
    dimensions, so the flow between frames is the action's change."""
    t = np.arange(STEPS) / layout.CONTROL_RATE_HZ
    phase = 1.3 * index
    action = np.stack([0.5 * np.sin(1.5 * t * (1 + 0.1 * j) + phase + j) for j in range(layout.DOF)], 1)
    action = action.astype(np.float32)
    steps = np.arange(FRAMES, dtype=np.int64) * 6
    background = np.repeat(texture((cv.TILE_HEIGHT, cv.TILE_WIDTH), 100)[..., None], 3, 2)
    patch = np.repeat(texture((80, 80), 200 + index, 1.5)[..., None], 3, 2)
    frames = np.empty((FRAMES, cv.TILE_HEIGHT, cv.TILE_WIDTH, 3), np.uint8)
    for f, s in enumerate(steps):
        frames[f] = background
        x = int(110 + 90 * action[s, 0])
        y = int(150 + 90 * action[s, 1])
        frames[f, y: y + 80, x: x + 80] = patch
    episode = cv.ConvertedEpisode(
        name=f"synthetic_{index}", source="test", robot="sim", task="move the patch", timestamps=t,
        state=action.copy() if with_actions else None, action=action if with_actions else None,
        frame_steps=steps, frame_times=t[steps], sync_error_s={}, time_source="test")
    cv.write_episode(root, episode, frames, compress=False)
    return episode


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("la_episodes")
    finalize(root, [synthetic_episode(root, i) for i in range(EPISODES)], val_fraction=0.25)
    return root


def run_cli(capsys, *argv) -> tuple[int, dict | None, str]:
    """motus-ros latent-actions ... in-process: (exit status, printed JSON or None, stderr)."""
    code = cli.main(["latent-actions", *map(str, argv)])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> dict[str, Path]:
    """A flow autoencoder and a latent-action VAE trained a few steps on the synthetic episodes."""
    out = tmp_path_factory.mktemp("la_models")
    ae, vae = out / "ae", out / "vae"
    assert cli.main(["latent-actions", "train-ae", str(data_dir), "--out", str(ae), "--preset", "tiny",
                     "--max-steps", "6", "--batch-size", "4", "--save-every", "3", "--warmup-steps", "0",
                     "--no-progress"]) == 0
    assert cli.main(["latent-actions", "train-vae", str(data_dir), "--ae", str(ae), "--out", str(vae),
                     "--max-steps", "20", "--batch-size", "8", "--hidden", "32", "--token-dim", "8",
                     "--labeled-fraction", "0.25", "--warmup-steps", "0", "--no-progress"]) == 0
    return {"ae": ae, "vae": vae}


# Flow ---------------------------------------------------------------------------------------------
def test_dis_recovers_a_known_translation():
    img = np.repeat(texture((160, 192), 7)[..., None], 3, 2)
    shifted = np.roll(img, (2, 3), axis=(0, 1))                 # content moves 3 px right, 2 px down
    settings = fl.FlowSettings(preset="medium", estimate_height=160, estimate_width=192, height=160, width=192)
    flow = fl.make_estimator(settings).pair_flow(img, shifted)
    inner = flow[16:-16, 16:-16]                                # away from the wrapped border
    assert flow.shape == (160, 192, 2) and flow.dtype == np.float32
    assert np.allclose(inner.reshape(-1, 2).mean(0), (3.0, 2.0), atol=0.05)
    assert fl.endpoint_error(inner, np.broadcast_to(np.float32([3, 2]), inner.shape)) < 0.1
    # Stored at half the size: vectors are in pixels of the stored flow.
    half = fl.make_estimator(settings.__class__(preset="medium", estimate_height=160, estimate_width=192,
                                                height=80, width=96)).pair_flow(img, shifted)
    assert np.allclose(half[8:-8, 8:-8].reshape(-1, 2).mean(0), (1.5, 1.0), atol=0.05)


def test_colour_wheel_round_trip_and_saturation():
    rng = np.random.default_rng(0)
    flow = rng.uniform(-1, 1, (64, 64, 2)).astype(np.float32) * 5.0         # |flow| < 7.1 < max_flow 8
    exact = fl.rgb_to_flow(fl.flow_to_rgb(flow, 8.0, as_float=True), 8.0)
    assert fl.endpoint_error(exact, flow) < 1e-4
    quantised = fl.rgb_to_flow(fl.flow_to_rgb(flow, 8.0), 8.0)               # through uint8
    assert fl.endpoint_error(quantised, flow) < 0.05
    # Conventions of the Middlebury code: still = white, rightward = red; too long = max_flow, same direction.
    rgb = fl.flow_to_rgb(np.float32([[0, 0], [3, 0], [0, 30]]), 3.0)
    assert rgb[0].tolist() == [255, 255, 255] and rgb[1].tolist() == [255, 0, 0]
    back = fl.rgb_to_flow(rgb, 3.0)
    assert np.allclose(back[2], (0.0, 3.0), atol=0.02)
    # A dimmed colour off the code (as a decoder may produce) still decodes by chroma and hue.
    assert np.allclose(fl.rgb_to_flow(fl.flow_to_rgb(np.float32([[2, -1]]), 4.0, as_float=True) * 0.9, 4.0),
                       [[1.8, -0.9]], atol=1e-4)
    with pytest.raises(fl.FlowError, match="max_flow: got 0"):
        fl.flow_to_rgb(flow, 0.0)


def test_flow_settings_errors_name_the_field():
    with pytest.raises(fl.FlowError, match="flow.preset: got 'slow', expected one of: ultrafast, fast, medium"):
        fl.FlowSettings(preset="slow")
    with pytest.raises(fl.FlowError, match="flow.estimator: got 'raft'"):
        fl.FlowSettings(estimator="raft")
    with pytest.raises(fl.FlowError, match="flow.height: got 4, expected an integer >= 8"):
        fl.FlowSettings(height=4)


def test_flow_cache_is_reused_and_never_stale(data_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    episode = pr.load(root).episodes[0]
    estimator = fl.make_estimator(TINY.flow)
    flow, cached = fl.episode_flow(episode, estimator)
    assert not cached and flow.shape == (FRAMES - 1, 48, 40, 2)
    again, cached = fl.episode_flow(episode, estimator)
    assert cached and np.array_equal(again, flow)
    # Other settings: recomputed (and the cache now holds those).
    other = fl.make_estimator(fl.FlowSettings(preset="ultrafast", estimate_height=96, estimate_width=80,
                                              height=48, width=40))
    logs = []
    _, cached = fl.episode_flow(episode, other, log=logs.append)
    assert not cached and "recomputing" in logs[0]
    assert fl.episode_flow(episode, other)[1]
    # Rewritten frames (the patch still): recomputed, and the flow follows the new frames.
    path = root / "episodes" / episode.name / "data.npz"
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["frames"] = np.repeat(arrays["frames"][:1], FRAMES, 0)
    np.savez(path, **arrays)
    still, cached = fl.episode_flow(pr.load(root).episodes[0], other)
    assert not cached and np.abs(still).max() < 0.05
    # Without the cache nothing is read or written.
    (path.parent / fl.CACHE_FILE).unlink()
    fl.episode_flow(pr.load(root).episodes[0], other, use_cache=False)
    assert not (path.parent / fl.CACHE_FILE).exists()


# Flow autoencoder ---------------------------------------------------------------------------------
def test_flow_ae_shapes_and_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    ae = FlowAE(TINY)
    flow = np.random.default_rng(1).normal(0, 1.5, (4, 48, 40, 2)).astype(np.float32)
    images = ae.images(flow)
    assert images.shape == (4, 3, 48, 40) and -1 <= images.min() and images.max() <= 1
    z = ae.encode(images)
    assert z.shape == (4, 8, 6, 5)                                           # [B, C, h, w]
    tokens = ae.to_tokens(z)
    assert tokens.shape == (4, TINY.latent_tokens, TINY.latent_channels) == (4, 30, 8)
    assert torch.allclose(ae.from_tokens(tokens), z)
    assert ae.decode(z).shape == (4, 3, 48, 40)
    assert ae.decode_tokens(ae.encode_flow(flow)).shape == flow.shape
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = reconstruction_loss(ae, images)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    with pytest.raises(LatentActionError, match=r"flow: shape \(4, 32, 32, 2\), expected \(B, 48, 40, 2\)"):
        ae.images(np.zeros((4, 32, 32, 2), np.float32))


def test_flow_ae_config_errors_name_field_and_expected_value():
    with pytest.raises(LatentActionError, match=r"latent_tokens: got 4, expected 30 = \(96/16\) x \(80/16\)"):
        FlowAEConfig(latent_tokens=4)
    with pytest.raises(LatentActionError, match="layers_per_block: got 2 values"):
        FlowAEConfig(layers_per_block=(1, 1))
    with pytest.raises(LatentActionError, match="expected multiples of the spatial factor 32"):
        FlowAEConfig(block_out_channels=(16, 32, 64, 128, 128, 128))
    with pytest.raises(LatentActionError, match="preset: got 'huge'"):
        preset("huge")
    paper = preset("paper")
    assert (paper.latent_tokens, paper.latent_channels) == (4, 512)          # the paper's 4 x 512 tokens


def test_saved_and_loaded_models_give_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ae = FlowAE(TINY).eval()
    ae.latents_mean.normal_()
    ae.latents_std.uniform_(0.5, 2.0)
    flow = np.random.default_rng(2).normal(0, 1.5, (3, 48, 40, 2)).astype(np.float32)
    save_flow_ae(ae, tmp_path / "ae", {"note": "test"})
    ae2 = load_flow_ae(tmp_path / "ae")
    assert torch.equal(ae.encode_flow(flow), ae2.encode_flow(flow))
    assert np.array_equal(ae.decode_tokens(ae.encode_flow(flow)), ae2.decode_tokens(ae2.encode_flow(flow)))
    vae = LatentActionVAE(LatentVAEConfig(30, 8, hidden=32, token_dim=8)).eval()
    stats = stats_document({"min": [0.0] * 14, "max": [1.0] * 14, "mean": [0.5] * 14, "std": [0.1] * 14}, "t")
    save_latent_vae(vae, tmp_path / "vae", {"fingerprint": "x"}, pr.ACTION_TARGET, stats)
    vae2, info = load_latent_vae(tmp_path / "vae")
    tokens = ae.encode_flow(flow)
    assert torch.equal(vae.latent_actions(tokens), vae2.latent_actions(tokens))
    assert torch.equal(vae(tokens)["recon"], vae2(tokens)["recon"])
    assert info["flow_autoencoder"] == {"fingerprint": "x"}
    with pytest.raises(LatentActionError, match="format 'motus_ros latent action vae v1', expected "
                                                "'motus_ros flow autoencoder v1'"):
        load_flow_ae(tmp_path / "vae")


# Latent-action VAE --------------------------------------------------------------------------------
def test_latent_vae_shapes_kl_and_alignment_only_on_labelled_rows():
    torch.manual_seed(0)
    vae = LatentActionVAE(LatentVAEConfig(30, 8, latent_dim=14, hidden=32, token_dim=8))
    tokens = torch.randn(6, 30, 8)
    out = vae(tokens)
    assert out["mean"].shape == out["logvar"].shape == out["z"].shape == (6, 14)
    assert out["recon"].shape == tokens.shape
    # KL: zero at the prior, and the closed form 0.5 * (mu^2 + var - 1 - log var) otherwise.
    zeros = torch.zeros(2, 14)
    assert float(kl_divergence(zeros, zeros)) == 0.0
    assert float(kl_divergence(torch.ones(2, 14), zeros)) == pytest.approx(0.5 * 14)
    assert float(kl_divergence(zeros, torch.full((2, 14), np.log(2.0)))) == pytest.approx(
        0.5 * 14 * (2 - 1 - np.log(2.0)), rel=1e-5)
    # Alignment: zero (but differentiable) without labelled rows; unlabelled rows never count, nan or not.
    actions = torch.rand(6, 14)
    none = torch.zeros(6, dtype=torch.bool)
    loss = alignment_loss(out["mean"], actions, none)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    labeled = torch.tensor([True, False, True, False, False, False])
    a = alignment_loss(out["mean"], actions, labeled)
    other = actions.clone()
    other[~labeled] = float("nan")
    assert torch.equal(alignment_loss(out["mean"], other, labeled), a)
    expected = (out["mean"][labeled] - actions[labeled]).pow(2).mean()
    assert torch.allclose(a, expected)
    parts = latent_vae_loss(vae, tokens, other, none, beta=0.1, align_weight=5.0)
    assert float(parts["align"].detach()) == 0.0 and float(parts["labeled"]) == 0.0
    with pytest.raises(LatentActionError, match=r"actions: shape \(6, 3\)"):
        alignment_loss(out["mean"], torch.zeros(6, 3), labeled)


def test_latent_vae_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    vae = LatentActionVAE(LatentVAEConfig(30, 8, hidden=64, token_dim=8))
    tokens = torch.randn(32, 30, 8)
    actions = torch.rand(32, 14)
    labeled = torch.arange(32) % 4 == 0
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = latent_vae_loss(vae, tokens, actions, labeled, beta=1e-3, align_weight=1.0, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_labelled_subset_is_seeded_and_only_among_pairs_with_joint_data():
    has = np.array([True] * 30 + [False] * 10)
    mask = pr.labeled_mask(has, 0.1, seed=3)
    assert mask.sum() == 4 and not mask[30:].any()
    assert np.array_equal(mask, pr.labeled_mask(has, 0.1, seed=3))
    assert pr.labeled_mask(has, 0.0, 3).sum() == 0 and pr.labeled_mask(has[:5], 0.01, 3).sum() == 1
    with pytest.raises(LatentActionError, match=r"labeled_fraction: got 1.5, expected a number in \[0, 1\]"):
        pr.labeled_mask(has, 1.5, 0)


def test_pair_actions_are_the_normalised_targets_at_the_interval_end(data_dir):
    data = pr.load_with_actions(data_dir)
    episode = data.episodes[0]
    targets, starts = pr.pair_actions(episode, data)
    assert targets.shape == starts.shape == (FRAMES - 1, 14)
    from motus_ros.policy.transforms import normalize

    assert np.allclose(targets[2], normalize(episode.action[episode.frame_steps[3]], data.stats.action))
    assert np.allclose(starts[2], targets[1])


# Command line and sidecars ------------------------------------------------------------------------
def test_training_records_and_resume(trained, data_dir, tmp_path, capsys):
    ae_cfg = json.loads((trained["ae"] / "config.json").read_text())
    rec = ae_cfg["training"]
    assert rec["steps"] == 6 and rec["stop_reason"] == "steps"
    assert rec["reconstruction"]["split"] == "val" and rec["reconstruction"]["pairs"] == FRAMES - 1
    assert rec["reconstruction"]["colour_code_epe_px"] < 0.05
    assert ae_cfg["latent_shape"] == {"tokens": 30, "channels": 8, "grid": [6, 5]}
    metrics = json.loads((trained["ae"] / "metrics.json").read_text())
    assert [s["step"] for s in metrics["steps"]] == list(range(1, 7))
    assert (trained["ae"] / "checkpoint-last" / "training_state.pt").is_file()
    assert (trained["ae"] / "reconstruction.png").is_file()
    vae_cfg = json.loads((trained["vae"] / "config.json").read_text())
    assert vae_cfg["training"]["labeled"]["pairs"] == round(0.25 * 3 * (FRAMES - 1))
    assert vae_cfg["action_target"] == pr.ACTION_TARGET
    probe = vae_cfg["training"]["linear_probe"]["action"]["latent_actions"]
    assert probe["train_rows"] == 3 * (FRAMES - 1) and probe["val_rows"] == FRAMES - 1
    stats = json.loads((trained["vae"] / "latent_action_stats.json").read_text())
    assert len(stats["min"]) == len(stats["max"]) == 14 and stats["latent_dim"] == 14
    # Resume: continues from step 6 to 8, one more command in the history.
    resumed = tmp_path / "ae2"
    shutil.copytree(trained["ae"], resumed)
    code, result, _ = run_cli(capsys, "train-ae", data_dir, "--out", resumed, "--resume", resumed,
                              "--max-steps", "8", "--batch-size", "4", "--no-progress")
    assert code == 0 and result["steps"] == 8
    history = json.loads((resumed / "metrics.json").read_text())
    assert [s["step"] for s in history["steps"]] == list(range(1, 9)) and len(history["commands"]) == 2


def test_label_writes_sidecars_and_statistics(trained, data_dir, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    code, result, err = run_cli(capsys, "label", root, "--model", trained["vae"], "--no-progress")
    assert code == 0, err
    assert result["episodes"] == EPISODES and result["pairs"] == EPISODES * (FRAMES - 1)
    rows = []
    for name in (f"synthetic_{i}" for i in range(EPISODES)):
        with np.load(root / "episodes" / name / "latent_actions.npz") as side:
            assert sorted(side.files) == ["frame_steps", "latent_actions"]
            assert side["latent_actions"].shape == (FRAMES - 1, 14) and side["latent_actions"].dtype == np.float32
            assert side["frame_steps"].tolist() == (np.arange(1, FRAMES) * 6).tolist()
            rows.append((name, side["latent_actions"]))
    stats = json.loads((root / "latent_action_stats.json").read_text())
    train = {e["name"] for e in json.loads((root / "dataset.json").read_text())["episodes"] if e["split"] == "train"}
    every = np.concatenate([r for name, r in rows if name in train])
    assert np.allclose(stats["min"], every.min(0), atol=1e-6) and np.allclose(stats["max"], every.max(0), atol=1e-6)
    assert stats["statistics_pairs"] == len(every) and stats["latent_dim"] == 14
    assert np.array_equal(load_latent_action_stats(root / "latent_action_stats.json").min, np.asarray(stats["min"]))
    # The stage-2 reader accepts exactly these files.
    data = ds.load_dataset(root, targets="latent_actions")
    assert data.latent_stats.min.shape == (14,) and data.episodes[0].latent_actions.shape == (FRAMES - 1, 14)
    # The labels equal what the models give for the cached flow.
    from motus_ros.latent_actions.labelling import open_models

    vae, _, ae, _ = open_models(trained["vae"])
    flow, cached = fl.episode_flow(pr.load(root).episodes[0], fl.make_estimator(ae.config.flow))
    assert cached and np.allclose(vae.latent_actions(ae.encode_flow(flow)).numpy(), rows[0][1], atol=1e-6)


def test_label_works_on_label_free_episodes(trained, tmp_path, capsys):
    root = tmp_path / "video_only"
    root.mkdir()
    finalize(root, [synthetic_episode(root, i, with_actions=False) for i in range(2)], val_fraction=0.0)
    code, result, err = run_cli(capsys, "label", root, "--model", trained["vae"], "--no-progress")
    assert code == 0, err
    assert result["pairs"] == 2 * (FRAMES - 1)
    assert (root / "episodes" / "synthetic_1" / "latent_actions.npz").is_file()


def test_report_gives_epe_and_probe(trained, data_dir, capsys, tmp_path):
    code, result, err = run_cli(capsys, "report", data_dir, "--model", trained["vae"], "--ae", trained["ae"],
                                "--out", tmp_path / "report.json", "--no-progress")
    assert code == 0, err
    assert result["autoencoder"]["pairs"] == FRAMES - 1 and result["autoencoder"]["epe_px"] >= 0
    assert result["autoencoder"]["zero_flow_epe_moving_px"] > 0                    # the patch moves
    probe = result["linear_probe"]["action"]
    assert set(probe) == {"latent_actions", "pca14_of_autoencoder_tokens"}
    assert len(probe["latent_actions"]["r2_per_dim"]) == 14
    assert json.loads((tmp_path / "report.json").read_text())["linear_probe"] == result["linear_probe"]


def test_flow_command_reports_magnitudes(data_dir, capsys):
    code, result, err = run_cli(capsys, "flow", data_dir, "--preset", "tiny", "--no-progress")
    assert code == 0, err
    assert result["pairs"] == EPISODES * (FRAMES - 1) and result["max_flow"] == 4.0
    assert result["magnitude_px"]["max"] > 1.0 and 0.0 <= result["saturated_fraction"] < 0.5


def test_errors_are_one_line_and_name_the_problem(trained, data_dir, tmp_path, capsys):
    # A dataset whose episodes have no frames.
    bad = tmp_path / "no_frames"
    shutil.copytree(data_dir, bad)
    path = bad / "episodes" / "synthetic_0" / "data.npz"
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files if k != "frames"}
    np.savez(path, **arrays)
    code, _, err = run_cli(capsys, "flow", bad, "--no-progress")
    assert code == 2 and "lacks ['frames']" in err and len(err.strip().splitlines()) == 1
    # An autoencoder other than the one the VAE was trained on.
    other = tmp_path / "other_ae"
    torch.manual_seed(1)
    save_flow_ae(FlowAE(TINY), other)
    code, _, err = run_cli(capsys, "label", data_dir, "--model", trained["vae"], "--ae", other)
    assert code == 2 and "not the flow autoencoder --model" in err
    # A VAE folder where an autoencoder is expected, and the other way round.
    code, _, err = run_cli(capsys, "train-vae", data_dir, "--ae", trained["vae"], "--out", tmp_path / "v")
    assert code == 2 and "expected 'motus_ros flow autoencoder v1'" in err
    code, _, err = run_cli(capsys, "label", data_dir, "--model", trained["ae"])
    assert code == 2 and "expected 'motus_ros latent action vae v1'" in err
    # Bad training values name the field.
    code, _, err = run_cli(capsys, "train-vae", data_dir, "--ae", trained["ae"], "--out", tmp_path / "v",
                           "--latent-dim", "8")
    assert code == 2 and "latent_dim: got 8, expected 14 (the action size)" in err
    code, _, err = run_cli(capsys, "train-ae", data_dir, "--out", tmp_path / "a", "--preset", "tiny",
                           "--latent-tokens", "4")
    assert code == 2 and "latent_tokens: got 4, expected 30" in err
