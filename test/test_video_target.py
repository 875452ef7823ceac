"""conventions.video_target 'residual' and video_prediction 'sample': the video expert denoises (future latent - condition latent) *
video_residual_scale. The mapping is exact both ways, generate() decodes real latents whichever the
convention, and the training target is the residual's."""
from __future__ import annotations

import pytest
import torch

from motus_ros.motus.config import Conventions, preset
from motus_ros.motus.flow import LossSettings, flow_matching_loss
from motus_ros.motus.model import build_model

torch.set_num_threads(2)


def tiny(target: str, scale: float = 1.0, prediction: str = "velocity"):
    cfg = preset("tiny").replace(vae_kind="patch", vae_config={}, vae_temporal=1, video_residual_scale=scale,
                                 conventions={"video_target": target, "video_prediction": prediction})
    return build_model(cfg, seed=0)


def latents(cfg, seed=0):
    h, w = cfg.latent_size
    return torch.randn(2, cfg.latent_channels, cfg.latent_frames, h, w, generator=torch.Generator().manual_seed(seed))


def test_residual_mapping_is_exact_and_keeps_the_condition_frame():
    model = tiny("residual", scale=4.0)
    x = latents(model.config)
    inner = model.video_to_model(x)
    assert torch.equal(inner[:, :, :1], x[:, :, :1])
    assert torch.allclose(inner[:, :, 1:], (x[:, :, 1:] - x[:, :, :1]) * 4.0)
    assert torch.allclose(model.video_from_model(inner), x, atol=1e-6)
    absolute = tiny("absolute")
    assert absolute.video_to_model(x) is x and absolute.video_from_model(x) is x


def test_bad_target_and_scale_name_the_field():
    with pytest.raises(ValueError, match=r"conventions.video_target='delta', expected one of: absolute, residual"):
        Conventions(video_target="delta")
    with pytest.raises(ValueError, match=r"video_residual_scale=0.0, expected > 0"):
        preset("tiny").replace(video_residual_scale=0.0)


def _predict_zero(cond, video, t_video, actions, t_action, state, need_video=True):
    """A denoiser whose clean estimate is 0 everywhere: velocity = x_t / t (rectified flow)."""
    tv = t_video.view(-1, 1, 1, 1, 1).clamp_min(1e-6)
    ta = t_action.view(-1, 1, 1).clamp_min(1e-6)
    return video / tv, actions / ta


@pytest.mark.parametrize("target", ["absolute", "residual"])
def test_a_model_predicting_zero_gives_the_copy_baseline_only_under_residual(target):
    """Residual: 'no change' is the model's zero, so an untrained-like denoiser imagines the condition
    frame standing still; absolute: the same denoiser imagines latent zero (grey)."""
    model = tiny(target, scale=3.0)
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    images = torch.rand(1, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    actions = torch.rand(1, cfg.chunk_size, cfg.action_dim, generator=g)
    out = model.generate(images, torch.zeros(1, cfg.state_dim), ["hold"], mode="wm", steps=4, actions=actions,
                         step_fn=_predict_zero)
    cond = model.encode_frames(images.unsqueeze(2))
    future = out.video_latents[:, :, 1:]
    if target == "residual":
        assert torch.allclose(future, cond.expand_as(future), atol=1e-5)
        copy = model.decode_latents(cond.expand(-1, -1, cfg.latent_frames, -1, -1))[:, :, 1:]
        assert torch.allclose(out.frames, copy, atol=1e-5)
    else:
        assert future.abs().max() < 1e-5


def test_training_target_is_the_scaled_residual():
    """With video and action timesteps at 1 (pure noise), the velocity target is eps - x0 where x0 is
    the residual: a denoiser returning eps - residual has zero video loss."""
    model = tiny("residual", scale=2.0)
    cfg = model.config
    x = latents(cfg)
    x[:, :, 2:] = x[:, :, :1] + 0.5                                       # frames 2.. move by +0.5
    actions = torch.rand(2, cfg.chunk_size, cfg.action_dim)
    seen = {}

    def denoise(cond, noisy, t_v, noisy_actions, t_a, state):
        seen["noisy"] = noisy
        return torch.zeros_like(noisy), torch.zeros_like(noisy_actions)

    model.denoise = denoise
    g = torch.Generator().manual_seed(3)
    loss = flow_matching_loss(model, x, actions, torch.zeros(2, cfg.state_dim), None, LossSettings(), generator=g)
    # noisy = (1 - t) x0' + t eps with x0' the residual; recover eps from the same generator.
    g = torch.Generator().manual_seed(3)
    t_v = torch.sigmoid(torch.randn(2, generator=g))
    torch.randn(2, generator=g)
    eps = torch.randn(x.shape, generator=g)
    residual = torch.cat([x[:, :, :1], (x[:, :, 1:] - x[:, :, :1]) * 2.0], dim=2)
    tv = t_v.view(2, 1, 1, 1, 1)
    expected = (1 - tv) * residual + tv * eps
    assert torch.allclose(seen["noisy"][:, :, 1:], expected[:, :, 1:], atol=1e-5)
    assert torch.equal(seen["noisy"][:, :, :1], x[:, :, :1])
    target = (eps - residual)[:, :, 1:]
    assert torch.allclose(loss.video, (target ** 2).mean(), rtol=1e-5)


def _predict_x0(x0):
    """A denoiser whose video head outputs the clean sample x0 (video_prediction 'sample')."""
    def step(cond, video, t_video, actions, t_action, state, need_video=True):
        ta = t_action.view(-1, 1, 1).clamp_min(1e-6)
        return x0.expand_as(video), actions / ta
    return step


@pytest.mark.parametrize("steps", [1, 4])
def test_sample_prediction_lands_on_the_predicted_sample(steps):
    """Whatever the number of Euler steps, a head that outputs x0 ends exactly on x0: a zero output
    under 'residual' is the copy baseline."""
    model = tiny("residual", scale=2.0, prediction="sample")
    cfg = model.config
    g = torch.Generator().manual_seed(2)
    images = torch.rand(1, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    actions = torch.rand(1, cfg.chunk_size, cfg.action_dim, generator=g)
    x0 = torch.zeros(1, cfg.latent_channels, cfg.latent_frames, *cfg.latent_size)
    x0[:, :, 2:] = 0.8                                                   # frames 2.. move by +0.8 / scale
    out = model.generate(images, torch.zeros(1, cfg.state_dim), ["x"], mode="wm", steps=steps, actions=actions,
                         step_fn=_predict_x0(x0))
    cond = model.encode_frames(images.unsqueeze(2))
    assert torch.allclose(out.video_latents[:, :, 1:2], cond, atol=1e-5)
    assert torch.allclose(out.video_latents[:, :, 2:], cond + 0.4, atol=1e-5)


def test_sample_prediction_trains_on_x0_and_init_starts_at_the_copy_baseline(tmp_path):
    """The loss is MSE(head output, x0); switching a checkpoint to 'sample' with --init zeroes the
    video head's output layer, so its first prediction is the condition frame standing still."""
    from motus_ros.motus.checkpoint import save_checkpoint
    from motus_ros.training.trainer import init_model

    model = tiny("residual", prediction="sample")
    cfg = model.config
    x = latents(cfg)
    actions = torch.rand(2, cfg.chunk_size, cfg.action_dim)
    model.denoise = lambda cond, noisy, t_v, a, t_a, state: (torch.zeros_like(noisy), torch.zeros_like(a))
    loss = flow_matching_loss(model, x, actions, torch.zeros(2, cfg.state_dim), None, LossSettings(),
                              generator=torch.Generator().manual_seed(0))
    residual = (x[:, :, 1:] - x[:, :, :1])
    assert torch.allclose(loss.video, (residual ** 2).mean(), rtol=1e-5)

    velocity = tiny("residual")
    save_checkpoint(velocity, tmp_path / "ckpt")
    switched = init_model(str(tmp_path / "ckpt"), velocity.config, {"conventions.video_prediction": "sample"}, 0)
    assert switched.video.wan.proj_out.weight.abs().max() == 0 and switched.video.wan.proj_out.bias.abs().max() == 0
    switched.eval()
    g = torch.Generator().manual_seed(4)
    images = torch.rand(1, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    out = switched.generate(images, torch.zeros(1, cfg.state_dim), ["x"], mode="wm", steps=3,
                            actions=torch.rand(1, cfg.chunk_size, cfg.action_dim, generator=g))
    cond = switched.encode_frames(images.unsqueeze(2))
    assert torch.allclose(out.video_latents[:, :, 1:], cond.expand_as(out.video_latents[:, :, 1:]), atol=1e-5)
    kept = init_model(str(tmp_path / "ckpt"), velocity.config, {"sampler_shift": 2.0}, 0)
    assert torch.equal(kept.video.wan.proj_out.weight, velocity.video.wan.proj_out.weight)
