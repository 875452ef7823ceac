"""video_action_conditioning 'frame': each future latent frame's video tokens get an embedding of the
action rows of their own time span. It starts at zero (a model gaining it computes what it did), it
routes frame j's rows to frame j only, training reaches it, and --init can add it to a checkpoint."""
from __future__ import annotations

import pytest
import torch

from motus_ros.motus.config import preset
from motus_ros.motus.experts import timestep_features
from motus_ros.motus.flow import LossSettings, flow_matching_loss
from motus_ros.motus.model import build_model
from model_inputs import random_inputs, step_network_and_denoise

torch.set_num_threads(2)


def tiny(conditioning: str = "frame", **changes):
    cfg = preset("tiny").replace(vae_kind="patch", vae_config={}, vae_temporal=1,
                                 video_action_conditioning=conditioning, **changes)
    return build_model(cfg, seed=0)


def inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_size
    video = torch.randn(2, cfg.latent_channels, cfg.latent_frames, h, w, generator=g)
    actions = torch.randn(2, cfg.chunk_size, cfg.action_dim, generator=g)
    state = torch.randn(2, cfg.state_dim, generator=g)
    return video, actions, state


def denoise(model, video, actions, state, t_video=0.5, t_action=0.0):
    g = torch.Generator().manual_seed(9)
    images = torch.rand(2, 3, model.config.video_height, model.config.video_width, generator=g) * 2 - 1
    cond = model.prepare_conditioning(images, ["pick up the cube"] * 2)
    b = video.shape[0]
    with torch.no_grad():
        return model.denoise(cond, video, torch.full((b,), t_video), actions, torch.full((b,), t_action), state)


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match=r"video_action_conditioning='adaln', expected one of: attention, frame"):
        preset("tiny").replace(video_action_conditioning="adaln")
    with pytest.raises(ValueError, match=r"chunk_size=50, expected a multiple of the 8 future latent frames"):
        preset("tiny").replace(vae_kind="patch", vae_temporal=1, chunk_size=50, video_action_conditioning="frame")
    with pytest.raises(ValueError, match=r"patch_size=\[2, 2, 2\], expected a temporal patch of 1"):
        preset("tiny").replace(patch_size=(2, 2, 2), video_action_conditioning="frame")
    model = tiny()
    with pytest.raises(ValueError, match=r"actions: 24 rows, expected chunk_size=48"):
        model.video.frame_actions(torch.zeros(1, 24, model.config.action_dim), timestep_features(torch.zeros(1)))


def test_the_new_path_starts_at_zero_so_the_model_computes_what_it_did():
    attention, frame = tiny("attention"), tiny("frame")
    state = frame.state_dict()
    state.update(attention.state_dict())          # same expert weights; frame_actions as built (zero output)
    frame.load_state_dict(state)
    video, actions, st = inputs(frame.config)
    va, aa = denoise(attention, video, actions, st)
    vf, af = denoise(frame, video, actions, st)
    assert torch.allclose(va, vf, atol=1e-6) and torch.allclose(aa, af, atol=1e-6)
    assert not any(k.startswith("video.frame_actions.") for k in attention.state_dict())


def test_each_frame_reads_the_rows_of_its_own_time_span():
    model = tiny()
    emb = model.video.frame_actions
    torch.nn.init.normal_(emb.net[-1].weight)
    frames, rows = emb.frames, emb.rows
    assert frames == model.config.latent_frames - 1 and rows * frames == model.config.chunk_size
    actions = torch.randn(1, model.config.chunk_size, model.config.action_dim)
    changed = actions.clone()
    changed[:, 2 * rows: 3 * rows] += 1.0          # the rows of future frame 3 (index 2)
    t = timestep_features(torch.zeros(1))
    with torch.no_grad():
        diff = (emb(changed, t) - emb(actions, t)).abs().amax(dim=-1)[0]      # [F]
    assert diff[2] > 1e-3
    assert torch.all(diff[torch.arange(frames) != 2] == 0)
    with torch.no_grad():                          # and t_action reaches every frame
        later = emb(actions, timestep_features(torch.ones(1)))
        assert torch.all((later - emb(actions, t)).abs().amax(dim=-1) > 1e-4)


def test_with_the_path_the_video_output_follows_the_actions_in_world_model_mode():
    """A nonzero path makes the video expert's output depend on the (clean) actions through adaLN;
    the condition frame's tokens are left alone, so only future frames get the embedding."""
    model = tiny()
    torch.nn.init.normal_(model.video.frame_actions.net[-1].weight, std=0.5)
    video, actions, st = inputs(model.config)
    per_frame = model.config.video_tokens_per_frame
    tokens = model.video.frame_actions.tokens(actions, timestep_features(torch.zeros(2)), per_frame)
    assert tokens.shape[1] == model.config.latent_frames * per_frame
    assert torch.all(tokens[:, :per_frame] == 0)
    assert tokens[:, per_frame:].abs().amax() > 0
    v1, _ = denoise(model, video, actions, st)
    v2, _ = denoise(model, video, actions + 1.0, st)
    assert (v1[:, :, 1:] - v2[:, :, 1:]).abs().mean() > 1e-3


def test_training_reaches_the_path():
    model = tiny()
    cfg = model.config
    video, actions, st = inputs(cfg)
    g = torch.Generator().manual_seed(9)
    images = torch.rand(2, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    cond = model.prepare_conditioning(images, ["x"] * 2)
    loss = flow_matching_loss(model, video, actions, st, cond, LossSettings(clean_action_fraction=0.5),
                              generator=torch.Generator().manual_seed(0))
    loss.total.backward()
    grad = model.video.frame_actions.net[-1].weight.grad
    assert grad is not None and grad.abs().max() > 0


def test_init_adds_the_path_to_a_checkpoint_and_starts_where_it_was(tmp_path):
    from motus_ros.motus.checkpoint import load_checkpoint, save_checkpoint
    from motus_ros.training.trainer import init_model

    attention = tiny("attention")
    save_checkpoint(attention, tmp_path / "ckpt")
    added = init_model(str(tmp_path / "ckpt"), attention.config, {"video_action_conditioning": "frame"}, 0)
    assert added.config.video_action_conditioning == "frame"
    assert added.video.frame_actions.net[-1].weight.abs().max() == 0
    added.eval()
    video, actions, st = inputs(attention.config)
    va, _ = denoise(attention.eval(), video, actions, st)
    vf, _ = denoise(added, video, actions, st)
    assert torch.allclose(va, vf, atol=1e-6)

    torch.nn.init.normal_(added.video.frame_actions.net[-1].weight)
    save_checkpoint(added, tmp_path / "frame")
    loaded, _ = load_checkpoint(tmp_path / "frame", device="cpu")
    assert loaded.config.video_action_conditioning == "frame"
    assert torch.equal(loaded.video.frame_actions.net[-1].weight, added.video.frame_actions.net[-1].weight)
    dropped = init_model(str(tmp_path / "frame"), loaded.config, {"video_action_conditioning": "attention"}, 0)
    assert dropped.video.frame_actions is None
    with pytest.raises(ValueError, match="changes the model's weights"):
        init_model(str(tmp_path / "ckpt"), attention.config, {"action_hidden": 64}, 0)


def test_the_exported_step_network_and_onnx_compute_the_same_path(tmp_path):
    """The compiled/ONNX/TensorRT backends run StepNetwork, not denoise: it must carry the path too."""
    from motus_ros.motus.backends.onnx_export import export_step_onnx
    from motus_ros.motus.backends.onnxruntime_backend import OnnxRuntimeBackend

    model = tiny().eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.video.frame_actions.net[-1].weight, std=0.5)
        torch.nn.init.normal_(model.action.decoder.action_head[-1].weight, std=0.3)
    out, ref = step_network_and_denoise(model)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])

    export_step_onnx(model, tmp_path, preset="tiny", seed=0, robot="sim")
    x = random_inputs(model.config)
    def wm(step_fn=None, actions=x["actions"]):
        return model.generate(x["images"], x["state"], ["x"], mode="wm", steps=2, actions=actions,
                              generator=torch.Generator().manual_seed(0), step_fn=step_fn).video_latents
    onnx = OnnxRuntimeBackend(model, tmp_path)
    torch.testing.assert_close(wm(onnx), wm(), atol=1e-4, rtol=0)
    assert (wm(onnx, x["actions"] + 1.0) - wm(onnx)).abs().max() > 1e-3   # the export reads the actions


def test_lr_scale_puts_a_prefix_in_its_own_group_and_refuses_a_prefix_that_matches_nothing():
    from motus_ros.training.trainer import param_groups

    model = tiny()
    named = list(model.named_parameters())
    groups = param_groups(named, 1e-4, {"video.frame_actions.": 20})
    assert [g["lr"] for g in groups] == [1e-4, pytest.approx(2e-3)]
    fast = {id(p) for p in groups[1]["params"]}
    assert fast == {id(p) for n, p in named if n.startswith("video.frame_actions.")}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(named)
    assert len(param_groups(named, 1e-4, {})) == 1
    with pytest.raises(ValueError, match=r"lr_scale: 'video.frame_actionz.' matches no trainable parameter"):
        param_groups(named, 1e-4, {"video.frame_actionz.": 2})


def test_lr_scale_cli_errors_name_the_flag(tmp_path):
    from motus_ros.commands.train import CliError, main as train_main

    for item in ("video.frame_actions.", "=3", "video.frame_actions.=0", "video.frame_actions.=x"):
        with pytest.raises(CliError, match=rf"--lr-scale '{item}': expected PREFIX=FACTOR with FACTOR > 0"):
            train_main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--lr-scale", item])
