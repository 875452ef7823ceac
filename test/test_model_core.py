"""Tiny-preset Motus: five modes, held inputs, reproducibility, caching, sampler, flow loss, gradients."""
from __future__ import annotations

import pytest
import torch

from motus_ros.motus.config import MotusConfig, preset
from motus_ros.motus.flow import LossSettings, flow_matching_loss, sample_logit_normal, sample_shifted_uniform
from motus_ros.motus.model import MODES, build_model, check_mode
from motus_ros.motus.sampler import FlowMatchEulerSampler
from model_inputs import random_inputs

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    return build_model(preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def inputs(model):
    return random_inputs(model.config)


def run(model, inputs, mode, seed=0, **kw):
    extra = {}
    if mode == "wm":
        extra["actions"] = inputs["actions"]
    if mode == "idm":
        extra["future_frames"] = inputs["future"]
    return model.generate(inputs["images"], inputs["state"], ["stack the blocks"], mode=mode, steps=3,
                          generator=torch.Generator().manual_seed(seed), **extra, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_output_shapes(model, inputs, mode):
    cfg = model.config
    out = run(model, inputs, mode)
    h, w = cfg.latent_size
    latent_shape = (1, cfg.latent_channels, cfg.latent_frames, h, w)
    frames_shape = (1, 3, cfg.num_future_frames, cfg.video_height, cfg.video_width)
    assert out.mode == mode
    if mode == "vgm":
        assert out.actions is None
    else:
        assert out.actions.shape == (1, cfg.chunk_size, cfg.action_dim)
        assert torch.isfinite(out.actions).all()
    if mode == "vla":
        assert out.video_latents is None and out.frames is None
    else:
        assert out.video_latents.shape == latent_shape
    if mode in ("joint", "wm", "vgm"):
        assert out.frames.shape == frames_shape
        assert out.frames.min() >= -1 and out.frames.max() <= 1
    else:
        assert out.frames is None


def test_wm_returns_given_actions_bit_identical(model, inputs):
    given = inputs["actions"].clone()
    out = run(model, inputs, "wm")
    assert torch.equal(out.actions, given)
    assert torch.equal(inputs["actions"], given)  # not modified in place either


def test_idm_keeps_given_video_latents(model, inputs):
    out = run(model, inputs, "idm")
    expected = model.encode_frames(torch.cat([inputs["images"].unsqueeze(2), inputs["future"]], dim=2))
    assert torch.equal(out.video_latents, expected)


@pytest.mark.parametrize("mode,held", [("vla", "video"), ("vgm", "action"), ("wm", "action"), ("idm", "video")])
def test_held_inputs_never_updated(model, inputs, mode, held, monkeypatch):
    seen = []
    original = model.denoise

    def spy(cond, video, t_video, actions, t_action, state, need_video=True):
        seen.append((video.clone(), actions.clone(), float(t_video[0]), float(t_action[0])))
        return original(cond, video, t_video, actions, t_action, state, need_video=need_video)

    monkeypatch.setattr(model, "denoise", spy)
    run(model, inputs, mode)
    assert len(seen) == 3
    idx, t_idx = (0, 2) if held == "video" else (1, 3)
    expected_t = 1.0 if mode in ("vla", "vgm") else 0.0
    for step in seen:
        assert torch.equal(step[idx], seen[0][idx])
        assert step[t_idx] == expected_t
    other_t = 3 if held == "video" else 2
    assert [s[other_t] for s in seen] == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_condition_frame_latent_is_never_denoised(model, inputs):
    out = run(model, inputs, "joint")
    cond = model.encode_frames(inputs["images"].unsqueeze(2))
    assert torch.equal(out.video_latents[:, :, :1], cond)


def test_reproducible_for_fixed_seed_and_seed_matters(model, inputs):
    a, b, c = run(model, inputs, "joint", seed=7), run(model, inputs, "joint", seed=7), run(model, inputs, "joint", seed=8)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.frames, b.frames)
    assert not torch.equal(a.actions, c.actions)


def test_text_encoded_once_per_instruction_and_recompute_matches(model, inputs):
    model.clear_text_cache()
    before = model.text_encoder_calls
    cached = run(model, inputs, "vla")
    run(model, inputs, "vla")
    assert model.text_encoder_calls - before == 1
    before = model.text_encoder_calls
    recomputed = run(model, inputs, "vla", recompute_conditioning=True)
    assert model.text_encoder_calls - before == 3  # once per step, like the official code
    torch.testing.assert_close(recomputed.actions, cached.actions, rtol=0, atol=1e-6)


def test_bad_mode_and_missing_inputs_fail_clearly(model, inputs):
    with pytest.raises(ValueError, match="mode 'fly' is not one of vla, wm, idm, vgm, joint"):
        check_mode("fly")
    with pytest.raises(ValueError, match="needs 'actions'"):
        model.generate(inputs["images"], inputs["state"], ["x"], mode="wm")
    with pytest.raises(ValueError, match="needs 'future_frames'"):
        model.generate(inputs["images"], inputs["state"], ["x"], mode="idm")
    with pytest.raises(ValueError, match="actions shape"):
        model.generate(inputs["images"], inputs["state"], ["x"], mode="wm", actions=torch.zeros(1, 5, 14))


def test_sampler_float32_euler_from_noise_to_clean():
    s = FlowMatchEulerSampler(num_steps=4)
    assert s.sigmas.dtype == torch.float32
    assert s.sigmas.tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    x0, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    x = eps.clone()
    for i in range(4):  # exact velocity eps - x0 reaches x0
        x = s.step(eps - x0, i, x)
    assert x.dtype == torch.float64
    torch.testing.assert_close(x, x0, atol=1e-6, rtol=0)
    with pytest.raises(IndexError):
        s.step(x, 4, x)
    with pytest.raises(ValueError):
        s.set_timesteps(0)
    shifted = FlowMatchEulerSampler(num_steps=2, shift=3.0)
    assert float(shifted.sigmas[1]) == pytest.approx(0.75)


def test_timestep_samplers():
    g = torch.Generator().manual_seed(0)
    t = sample_logit_normal(4000, generator=g)
    assert 0 < float(t.min()) and float(t.max()) < 1 and abs(float(t.mean()) - 0.5) < 0.02
    u1 = sample_shifted_uniform(4000, 1.0, generator=torch.Generator().manual_seed(0))
    u3 = sample_shifted_uniform(4000, 3.0, generator=torch.Generator().manual_seed(0))
    assert float(u3.mean()) > float(u1.mean()) + 0.1


def _toy_batch(model):
    cfg = model.config
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    frames = torch.rand(2, 3, 1 + cfg.num_future_frames, cfg.video_height, cfg.video_width, generator=g) * 2 - 1
    frames[:, :, 0] = images
    with torch.no_grad():
        latents = model.encode_frames(frames)
    return images, latents, torch.rand(2, cfg.chunk_size, cfg.action_dim, generator=g), torch.rand(2, cfg.state_dim, generator=g)


def test_gradients_reach_all_three_experts_and_not_frozen_encoders():
    model = build_model(preset("tiny"), seed=1).train()
    images, latents, actions, state = _toy_batch(model)
    cond = model.prepare_conditioning(images, ["a", "b"])
    loss = flow_matching_loss(model, latents, actions, state, cond, LossSettings(), generator=torch.Generator().manual_seed(0))
    loss.total.backward()
    for name in ("video", "action", "und"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert grads and any(g is not None and float(g.abs().sum()) > 0 for g in grads), name
    for block in ("blocks.0.wan_und_qkv", "blocks.0.wan_und_o.weight", "blocks.1.wan_und_qkv", "vlm_adapter.0.weight"):
        assert model.und.get_parameter(block).grad is not None, block
    assert model.action.blocks[0].wan_action_qkv.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vlm.parameters())
    assert all(p.grad is None for p in model.text_encoder.parameters())


def test_condition_frame_excluded_from_video_loss(monkeypatch):
    model = build_model(preset("tiny"), seed=1)
    images, latents, actions, state = _toy_batch(model)
    cond = model.prepare_conditioning(images, ["a", "b"])
    original = model.denoise
    losses = []
    for garbage in (0.0, 1e3):
        def patched(*a, _g=garbage, **k):
            v, act = original(*a, **k)
            v = v.clone()
            v[:, :, 0] = _g
            return v, act
        monkeypatch.setattr(model, "denoise", patched)
        losses.append(float(flow_matching_loss(model, latents, actions, state, cond, LossSettings(),
                                               generator=torch.Generator().manual_seed(0)).video.detach()))
    assert losses[0] == losses[1]


def test_independent_timesteps_and_training_step_lowers_loss():
    model = build_model(preset("tiny"), seed=2).train()
    images, latents, actions, state = _toy_batch(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)

    def loss_value(step_seed=0):
        cond = model.prepare_conditioning(images, ["a", "b"])
        return flow_matching_loss(model, latents, actions, state, cond, LossSettings(), generator=torch.Generator().manual_seed(step_seed))

    first = loss_value()
    assert not torch.equal(first.t_video, first.t_action)   # drawn independently
    for _ in range(3):
        opt.zero_grad()
        loss = loss_value()
        loss.total.backward()
        opt.step()
    with torch.no_grad():
        after = loss_value()
    assert float(after.total) < float(first.total.detach())


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="video size"):
        preset("tiny").replace(video_height=100)
    with pytest.raises(ValueError, match="timestep_sampling"):
        preset("tiny").replace(timestep_sampling="beta")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    cfg = preset("small")
    assert MotusConfig.from_dict(cfg.to_dict()) == cfg
