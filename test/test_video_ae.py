"""The learned video autoencoder (vae_kind "learned"): latent geometry, normalisation, files,
the model built on it, and `motus-ros train-vae` (tiny sizes, no downloaded weights)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motus_ros.cli import main as cli_main
from motus_ros.motus.config import preset
from motus_ros.motus.flow import LossSettings, flow_matching_loss
from motus_ros.motus.model import build_model
from motus_ros.motus.video_ae import (LearnedVideoAE, VideoAEError, autoencoder_kl_config, load_video_ae,
                                      read_ae_config, save_video_ae)
from motus_ros.training.sim_episodes import finalize
from motus_ros.training.vae_trainer import LAST, STATE_FILE

SIZE = (64, 64)          # frames (height, width): 4x4 latents at 16x


def tiny_ae(temporal: int = 4, seed: int = 0, linear_path: bool = True) -> LearnedVideoAE:
    """patch 4 x 2^(3-1) = 16x spatial, 48 channels: the geometry of the tiny/small presets."""
    torch.manual_seed(seed)
    return LearnedVideoAE(autoencoder_kl_config([32, 32, 32], 48, temporal, patch=4), temporal, patch=4,
                          linear_path=linear_path).eval()


def tiny_config(vae_path, **kw):
    return preset("tiny").replace(vae_kind="learned", vae_path=str(vae_path), video_height=SIZE[0],
                                  video_width=SIZE[1], **kw)


def frames(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, n, *SIZE, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def ae_dir(tmp_path_factory) -> Path:
    ae = tiny_ae()
    ae.latents_mean.copy_(torch.linspace(-0.5, 0.5, 48).view_as(ae.latents_mean))
    ae.latents_std.copy_(torch.linspace(0.5, 2.0, 48).view_as(ae.latents_std))
    return save_video_ae(ae, tmp_path_factory.mktemp("ae") / "video_ae", *SIZE, {"note": "test"})


@pytest.mark.parametrize("temporal,linear_path", [(4, True), (1, True), (4, False)])
def test_latent_geometry_and_round_trip_shapes(temporal, linear_path):
    ae = tiny_ae(temporal, linear_path=linear_path)
    x = frames(1 + 8)
    with torch.no_grad():
        z = ae.encode(x)
        out = ae.decode(z)
    assert z.shape == (2, 48, 1 + 8 // temporal, SIZE[0] // 16, SIZE[1] // 16)
    assert out.shape == x.shape
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    with pytest.raises(VideoAEError, match="1 \\+ a multiple of vae_temporal"):
        ae.encode(frames(1 + temporal + 1)) if temporal > 1 else ae.encode(frames(0))


def test_condition_frame_latent_does_not_see_the_future():
    """The model encodes the condition frame alone and inside its window: the latents must agree."""
    ae = tiny_ae()
    x = frames(9)
    with torch.no_grad():
        alone, window = ae.encode(x[:, :, :1]), ae.encode(x)
    assert alone.shape[2] == 1
    torch.testing.assert_close(alone[:, :, 0], window[:, :, 0], atol=1e-5, rtol=1e-5)


def test_linear_path_starts_as_the_principal_components():
    """Fitted on groups whose 16x16 patches span 10 directions (< 48 channels), the autoencoder
    reconstructs them exactly before any training: the linear code is their PCA and the
    AutoencoderKL's contribution starts at zero."""
    g = torch.Generator().manual_seed(4)
    basis = torch.rand(10, 3, 16, 16, generator=g) - 0.5                      # 10 patch patterns
    coeff = torch.randn(6, 4 * 4, 10, generator=g) * 0.3                      # 6 frames of 4x4 patches
    patches = torch.einsum("npk,kchw->npchw", coeff, basis)                   # [6,16,3,16,16]
    groups = patches.unflatten(1, (4, 4)).permute(0, 3, 1, 4, 2, 5).reshape(6, 3, 64, 64) + 0.1
    ae = tiny_ae(temporal=1)
    explained = ae.fit_linear_path(groups)
    assert explained == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        z = ae.encode_groups(groups).mode()
        assert float(ae.decode_groups(z).sub(groups).abs().max()) < 1e-4
        assert float(F.pixel_shuffle(ae.ae.decode(z).sample, 4).abs().max()) == 0.0


def test_latents_are_normalised_with_the_stored_statistics(ae_dir):
    ae = load_video_ae(ae_dir)
    x = frames(5)
    with torch.no_grad():
        raw = ae.encode_groups(ae.groups(x)).mode().unflatten(0, (2, -1)).transpose(1, 2)   # [B,C,T,h,w]
        z = ae.encode(x)
        mean, std = ae.latents_mean.flatten(), ae.latents_std.flatten()
        torch.testing.assert_close(z, (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1))
        # decode undoes the normalisation: the same frames as decoding the raw latents
        direct = ae.ungroup(ae.decode_groups(raw.transpose(1, 2).flatten(0, 1)), 2).clamp(-1, 1)
        torch.testing.assert_close(ae.decode(z), direct, atol=1e-5, rtol=1e-5)
    assert read_ae_config(ae_dir)["latents_std"] == pytest.approx(torch.linspace(0.5, 2.0, 48).tolist())


def test_save_then_load_gives_identical_outputs(ae_dir, tmp_path):
    first = load_video_ae(ae_dir)
    again = load_video_ae(save_video_ae(first, tmp_path / "copy", *SIZE))
    x = frames(9)
    with torch.no_grad():
        assert torch.equal(first.encode(x), again.encode(x))
        assert torch.equal(first.decode(first.encode(x)), again.decode(again.encode(x)))
    data = read_ae_config(ae_dir)
    assert data["geometry"] == {"latent_channels": 48, "vae_spatial": 16, "vae_temporal": 4,
                                "video_height": SIZE[0], "video_width": SIZE[1], "patch": 4}
    assert data["training"] == {"note": "test"}


def test_errors_name_the_field_and_both_values(ae_dir, tmp_path):
    with pytest.raises(VideoAEError, match="vae_temporal=4 but the model config has vae_temporal=2"):
        build_model(tiny_config(ae_dir, vae_temporal=2))
    with pytest.raises(VideoAEError, match="video_height=64 but the model config has video_height=192"):
        build_model(preset("tiny").replace(vae_kind="learned", vae_path=str(ae_dir)))
    with pytest.raises(VideoAEError, match="no config.json"):
        build_model(tiny_config(tmp_path / "nowhere"))
    broken = tmp_path / "no_weights"
    broken.mkdir()
    (broken / "config.json").write_text((ae_dir / "config.json").read_text())
    with pytest.raises(VideoAEError, match="no model.safetensors"):
        load_video_ae(broken)
    with pytest.raises(ValueError, match="vae_kind='learned' needs vae_path"):
        preset("tiny").replace(vae_kind="learned")
    with pytest.raises(ValueError, match="vae_kind='vqgan', expected one of: wan, patch, learned"):
        preset("tiny").replace(vae_kind="vqgan")


def test_model_on_the_learned_autoencoder_trains_and_saves(ae_dir, tmp_path):
    from motus_ros.motus.checkpoint import load_checkpoint, save_checkpoint

    cfg = tiny_config(ae_dir)
    model = build_model(cfg, seed=0).train()
    assert isinstance(model.vae, LearnedVideoAE)
    x = frames(1 + cfg.num_future_frames)
    with torch.no_grad():
        latents = model.encode_frames(x)
    assert latents.shape == (2, cfg.latent_channels, cfg.latent_frames, *cfg.latent_size)
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.vae.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    state, actions = torch.rand(2, cfg.state_dim), torch.rand(2, cfg.chunk_size, cfg.action_dim)
    cond = model.prepare_conditioning(x[:, :, 0], ["a", "b"])
    loss = flow_matching_loss(model, latents, actions, state, cond, LossSettings(),
                              generator=torch.Generator().manual_seed(0))
    loss.total.backward()
    opt.step()
    assert torch.isfinite(loss.total)
    assert all(p.grad is None for p in model.vae.parameters())
    # A Motus checkpoint names the autoencoder and carries its weights: it loads back identical.
    save_checkpoint(model, tmp_path / "motus")
    loaded, report = load_checkpoint(tmp_path / "motus")
    assert report.ok and loaded.config.vae_path == str(ae_dir)
    with torch.no_grad():
        assert torch.equal(loaded.encode_frames(x), model.vae.eval().encode(x))


def test_model_on_the_meta_device_needs_no_weights(ae_dir, tmp_path):
    """Counting and key checks (build_model(device='meta')) read the folder's config.json only."""
    only_config = tmp_path / "config_only"
    only_config.mkdir()
    (only_config / "config.json").write_text((ae_dir / "config.json").read_text())
    meta = build_model(tiny_config(only_config), device="meta")
    assert meta.parameter_counts()["vae"] == sum(p.numel() for p in load_video_ae(ae_dir).parameters())


# `motus-ros train-vae` ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from test_training import synthetic_episode

    root = tmp_path_factory.mktemp("episodes")
    finalize(root, [synthetic_episode(root, i) for i in range(4)], val_fraction=0.25)
    return root


def _train_vae(data_dir, out, *extra) -> int:
    return cli_main(["train-vae", "--data", str(data_dir), "--out", str(out), "--size", "64x64", "--channels",
                     "32,32,32", "--batch-size", "2", "--val-windows", "2", "--stats-groups", "4", "--save-every",
                     "1", "--threads", "1", "--no-progress", *extra])


def test_train_vae_writes_the_folder_and_resumes(data_dir, tmp_path, capsys):
    out = tmp_path / "ae"
    assert _train_vae(data_dir, out, "--steps", "2") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    val = summary["reconstruction"]["val"]
    assert val["future_frames"] == 2 * 8 and 0 < val["psnr_db"] < 100 and 0 < val["ssim"] <= 1
    assert val["patch_autoencoder"]["future_frames"] == 16            # the baseline on the same frames
    data = read_ae_config(out)
    record = data["training"]
    assert record["steps"] == 2 and record["data"]["train_episodes"] == 3 and record["data"]["val_episodes"] == 1
    assert record["command"].startswith("motus-ros train-vae --data") and "torch_threads" in record["hardware"]
    assert data["latents_std"] != [1.0] * 48                          # statistics measured, not the identity
    assert (out / LAST / STATE_FILE).is_file() and (out / "reconstruction.png").is_file()
    # The model config that names the folder builds on it.
    assert isinstance(build_model(tiny_config(out, vae_temporal=1)).vae, LearnedVideoAE)   # per-frame default

    assert _train_vae(data_dir, out, "--steps", "3", "--resume", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    history = json.loads((out / "metrics.json").read_text())["steps"]
    assert [h["step"] for h in history] == [1, 2, 3]                  # continued, not restarted
    commands = read_ae_config(out)["training"]["commands"]
    assert len(commands) == 2 and "--resume" in commands[1] and "--resume" not in commands[0]


def test_motus_training_runs_on_the_learned_latents(data_dir, ae_dir, tmp_path):
    """`motus-ros train --set vae_kind=learned --set vae_path=...`: the latent cache holds the
    autoencoder's latents and a step trains; the checkpoint keeps the reference."""
    from motus_ros.motus.checkpoint import read_own_config
    from motus_ros.training.trainer import TrainConfig, train

    overrides = {"vae_kind": "learned", "vae_path": str(ae_dir), "video_height": SIZE[0], "video_width": SIZE[1]}
    cfg = TrainConfig(data=str(data_dir), out=str(tmp_path / "run"), preset="tiny", epochs=1, max_steps=1,
                      batch_size=2, device="cpu", cache_dir=str(tmp_path / "cache"), val_windows=1, val_steps=1,
                      progress=False, overrides=overrides)
    summary = train(cfg, log=lambda s: None)
    assert summary["steps"] == 1
    latents = np.load(next((tmp_path / "cache").glob("*/latents.npy")))
    assert latents.shape[1:] == (48, 3, SIZE[0] // 16, SIZE[1] // 16)
    assert read_own_config(tmp_path / "run").vae_path == str(ae_dir)


def test_offline_eval_reports_the_learned_autoencoder(data_dir, ae_dir):
    """`motus-ros eval --offline`'s autoencoder PSNR is the learned autoencoder's reconstruction:
    the same number train-vae's report computes on the same held-out windows."""
    from motus_ros.training import dataset as ds
    from motus_ros.training.evaluation import offline_metrics
    from motus_ros.training.vae_trainer import FrameStore, eval_windows, evaluate

    model = build_model(tiny_config(ae_dir), seed=0)
    data = ds.load_dataset(data_dir)
    val = data.split("val")
    res = offline_metrics(model, data, val, max_windows=3, steps=1, progress=False)
    store = FrameStore(data, val, *SIZE)
    direct = evaluate(model.vae, store, eval_windows(store, 3), future=8)
    assert res["windows"] == direct["windows"] == 3
    assert res["autoencoder_psnr_db"] == pytest.approx(direct["psnr_db"], abs=1e-3)
    assert res["autoencoder_ssim"] == pytest.approx(direct["ssim"], abs=1e-4)


def test_train_vae_refuses_bad_options(data_dir, tmp_path, capsys):
    assert _train_vae(data_dir, tmp_path / "x", "--crop", "40x40") == 2
    assert "crop: got 40x40" in capsys.readouterr().err
    assert cli_main(["train-vae", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "--data" in capsys.readouterr().err


def test_init_swaps_the_autoencoder_and_keeps_the_experts(ae_dir, tmp_path):
    """`train --init CKPT --set vae_kind=learned --set vae_path=...`: the experts' weights come from
    the checkpoint, the frozen autoencoder's from its own folder (a shape change is still refused)."""
    from motus_ros.motus.checkpoint import save_checkpoint
    from motus_ros.training.trainer import init_model

    base = preset("tiny").replace(vae_kind="patch", vae_config={}, video_height=SIZE[0], video_width=SIZE[1],
                                  vae_temporal=1)
    source = build_model(base, seed=3)
    save_checkpoint(source, tmp_path / "ckpt")
    overrides = {"vae_kind": "learned", "vae_path": str(ae_dir), "vae_temporal": 4,
                 "conventions.video_target": "residual"}
    model = init_model(str(tmp_path / "ckpt"), base, overrides, seed=0)
    assert isinstance(model.vae, LearnedVideoAE) and model.config.conventions.video_target == "residual"
    mine, theirs = model.state_dict(), source.state_dict()
    experts = [k for k in theirs if k.split(".")[0] in ("video", "action", "und")]
    assert experts and all(torch.equal(mine[k], theirs[k]) for k in experts)
    ae = load_video_ae(ae_dir)
    for key, value in ae.state_dict().items():
        assert torch.equal(mine["vae." + key], value), key
    with pytest.raises(ValueError, match="changes the model's weights"):
        init_model(str(tmp_path / "ckpt"), base, {**overrides, "num_layers": 3}, seed=0)
