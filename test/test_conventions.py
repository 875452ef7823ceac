"""Conventions (config.Conventions): official Motus vs the project's presets, each honoured where it
applies: denoise (condition-frame timestep), conditioning (text padding), the step network of the
backends, training (timestep distribution, video loss), and config overrides; the training
objective's numbers (flow.LossSettings), which are not part of the model config."""
from __future__ import annotations

import math
import re
import types

import pytest
import torch

from motus_ros.motus.backends.step_network import example_inputs
from motus_ros.motus.config import (LOSS_FIELDS, OFFICIAL_CONVENTIONS, OFFICIAL_TRAIN_SHIFT, PROJECT_CONVENTIONS,
                                    Conventions, MotusConfig, preset)
from motus_ros.motus.flow import (OFFICIAL_LOSS, LossSettings, flow_matching_loss, flow_shift_sigmas, sample_flow_shift,
                                  sample_timesteps, video_loss)
from motus_ros.motus.model import build_model
from model_inputs import step_network_and_denoise

torch.set_num_threads(2)


def official_tiny(**changes) -> MotusConfig:
    return preset("tiny").replace(conventions=OFFICIAL_CONVENTIONS, **changes)


@pytest.fixture(scope="module")
def official_model():
    m = build_model(official_tiny(), seed=0, build_encoders=False)
    g = torch.Generator().manual_seed(11)
    head = m.action.decoder.action_head[-1]
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
    return m


def test_presets_keep_the_project_conventions():
    for name in ("tiny", "small", "paper"):
        assert preset(name).conventions == PROJECT_CONVENTIONS


def test_bad_convention_names_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"conventions.condition_timestep='t0', expected one of: zero, shared"):
        Conventions(condition_timestep="t0")
    with pytest.raises(ValueError, match="unknown fields"):
        MotusConfig.from_dict({**preset("tiny").to_dict(), "conventions": {"loss": "x"}})


def test_overrides_change_one_convention_and_keep_the_others():
    cfg = official_tiny()
    changed = cfg.with_overrides({"conventions.video_loss": "future_frames", "sampler_shift": 2.0})
    assert changed.conventions == Conventions(**{**OFFICIAL_CONVENTIONS.to_dict(), "video_loss": "future_frames"})
    assert changed.with_overrides({"timestep_sampling": "logit_normal"}).conventions.timestep_sampling == "logit_normal"
    partial = cfg.with_overrides({"conventions": {"text_context": "longest"}})
    assert partial.conventions.condition_timestep == "shared" and partial.conventions.text_context == "longest"
    # The training objective's numbers are not model fields any more: a clear error, not a silent drop.
    with pytest.raises(ValueError, match="action_loss_weight are training settings.*LossSettings"):
        cfg.with_overrides({"action_loss_weight": 2.0})
    with pytest.raises(ValueError, match="uniform_shift are training settings"):
        cfg.replace(uniform_shift=OFFICIAL_TRAIN_SHIFT)


def test_train_cli_accepts_convention_overrides():
    from motus_ros.commands.train import CliError, parse_overrides

    got = parse_overrides(["conventions.timestep_sampling=flow_shift", "timestep_sampling=shifted_uniform"])
    assert got == {"conventions.timestep_sampling": "flow_shift", "timestep_sampling": "shifted_uniform"}
    with pytest.raises(CliError, match="conventions.colour"):
        parse_overrides(["conventions.colour=red"])
    # The five loss settings are still `--set` names (the trainer routes them to TrainConfig.loss).
    got = parse_overrides([f"{name}=2" for name in LOSS_FIELDS])
    assert got == {name: 2 for name in LOSS_FIELDS}
    with pytest.raises(CliError, match="not a MotusConfig or LossSettings field"):
        parse_overrides(["action_loss_wieght=7"])


def test_condition_frame_timestep(official_model):
    """'shared': the condition frame's tokens see t_video (official); 'zero': they see 0."""
    cfg = official_model.config
    x = example_inputs(official_model, seed=1)
    cond = types.SimpleNamespace(und_tokens=x["und_tokens"], und_mask=None, text=None,
                                 cross_kv=list(zip(x["cross_k"], x["cross_v"])))
    t_v, t_a = torch.tensor([0.7]), torch.tensor([0.3])
    per_frame = cfg.video_tokens_per_frame
    with torch.no_grad():
        trace: dict = {}
        official_model.denoise(cond, x["video_latents"], t_v, x["actions"], t_a, x["state"], trace=trace)
        temb = trace["video_temb"]
        assert torch.equal(temb[:, 0], temb[:, per_frame])                   # frame 0 shares t
        zero = Conventions(**{**OFFICIAL_CONVENTIONS.to_dict(), "condition_timestep": "zero"})
        project = build_model(cfg.replace(conventions=zero), seed=0, build_encoders=False)
        project.load_state_dict(official_model.state_dict())
        trace0: dict = {}
        project.denoise(cond, x["video_latents"], t_v, x["actions"], t_a, x["state"], trace=trace0)
        assert not torch.equal(trace0["video_temb"][:, 0], trace0["video_temb"][:, per_frame])
        assert torch.equal(trace0["video_temb"][:, per_frame:], temb[:, per_frame:])


@pytest.mark.parametrize("convention", ["zero", "shared"])
def test_step_network_follows_the_condition_timestep(official_model, convention):
    conv = Conventions(**{**OFFICIAL_CONVENTIONS.to_dict(), "condition_timestep": convention})
    model = build_model(official_model.config.replace(conventions=conv), seed=0, build_encoders=False)
    model.load_state_dict(official_model.state_dict())
    out, ref = step_network_and_denoise(model)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_text_context_padding(official_model):
    cfg = official_model.config
    states = torch.randn(2, 5, cfg.text_dim)
    fixed = official_model.text_context(states)
    assert fixed.shape[1] == cfg.text_max_len                               # zero-padded to text_len
    padded = torch.cat([states, torch.zeros(2, cfg.text_max_len - 5, cfg.text_dim)], 1)
    assert torch.equal(fixed, official_model.video.text(padded))
    assert official_model.text_context(torch.randn(1, cfg.text_max_len + 3, cfg.text_dim)).shape[1] == cfg.text_max_len
    longest = build_model(cfg.replace(conventions=Conventions(**{**OFFICIAL_CONVENTIONS.to_dict(),
                                                                 "text_context": "longest"})),
                          seed=0, build_encoders=False)
    assert longest.text_context(states).shape[1] == 5


def test_flow_shift_timesteps_are_the_official_discrete_sigmas():
    sigmas = flow_shift_sigmas(OFFICIAL_TRAIN_SHIFT)
    assert sigmas.shape == (1000,) and float(sigmas[0]) == 1.0 and float(sigmas[-1]) > 0
    k = 500                                                       # shift 5 at sigma 0.5: 5*0.5/(1+4*0.5)
    assert float(sigmas[k]) == pytest.approx(2.5 / 3.0, abs=1e-6)
    t = sample_flow_shift(5000, OFFICIAL_TRAIN_SHIFT, generator=torch.Generator().manual_seed(0))
    assert torch.isin(t, sigmas).all()
    s = OFFICIAL_TRAIN_SHIFT                                       # E[s u / (1 + (s-1) u)], u ~ U(0,1)
    expected = s / (s - 1) * (1 - math.log(s) / (s - 1))           # 0.747 for s = 5: towards noise
    assert float(t.mean()) == pytest.approx(expected, abs=0.01)
    cfg = official_tiny()
    g = torch.Generator().manual_seed(1)
    tv, ta = sample_timesteps(cfg, OFFICIAL_LOSS, 64, g), sample_timesteps(cfg, OFFICIAL_LOSS, 64, g)
    assert torch.isin(tv, sigmas).all() and not torch.equal(tv, ta)


def test_all_frames_video_loss_is_the_official_normalisation():
    cfg = official_tiny()
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 48, 3, 4, 4, generator=g), torch.randn(2, 48, 3, 4, 4, generator=g)
    future = video_loss(cfg.replace(conventions=PROJECT_CONVENTIONS), pred, target)
    official = video_loss(cfg, pred, target)
    t = pred.shape[2]
    assert float(official) == pytest.approx(float(future) * (t - 1) / t, rel=1e-6)
    pred2 = pred.clone()
    pred2[:, :, 0] = 1e3                                          # frame 0 never counts
    assert torch.equal(video_loss(cfg, pred2, target), official)


def test_training_loss_honours_the_conventions(official_model):
    cfg = official_model.config
    g = torch.Generator().manual_seed(3)
    h, w = cfg.latent_size
    latents = torch.randn(2, cfg.latent_channels, cfg.latent_frames, h, w, generator=g)
    actions, state = torch.rand(2, cfg.chunk_size, cfg.action_dim, generator=g), torch.rand(2, cfg.state_dim, generator=g)
    cond = official_model.conditioning_from_features(torch.randn(2, 7, cfg.vlm_hidden, generator=g),
                                                     torch.randn(2, 4, cfg.text_dim, generator=g), latents[:, :, :1])
    settings = LossSettings.official()
    loss = flow_matching_loss(official_model, latents, actions, state, cond, settings,
                              generator=torch.Generator().manual_seed(0))
    sigmas = flow_shift_sigmas(settings.uniform_shift)
    assert torch.isin(loss.t_video, sigmas).all() and torch.isin(loss.t_action, sigmas).all()
    assert torch.isfinite(loss.total)


# The training objective's numbers (flow.LossSettings) ----------------------------------------------
def _loss_inputs(model, seed: int = 3, batch: int = 2):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_size
    latents = torch.randn(batch, cfg.latent_channels, cfg.latent_frames, h, w, generator=g)
    actions = torch.rand(batch, cfg.chunk_size, cfg.action_dim, generator=g)
    state = torch.rand(batch, cfg.state_dim, generator=g)
    cond = model.conditioning_from_features(torch.randn(batch, 7, cfg.vlm_hidden, generator=g),
                                            torch.randn(batch, 4, cfg.text_dim, generator=g), latents[:, :, :1])
    return latents, actions, state, cond


def test_official_loss_settings_are_the_official_shift():
    assert LossSettings.official() == OFFICIAL_LOSS
    assert OFFICIAL_LOSS.uniform_shift == OFFICIAL_TRAIN_SHIFT == 5.0
    assert OFFICIAL_LOSS.replace(uniform_shift=1.0) == LossSettings()      # the rest: the defaults
    # what old config.json files hold; fields added since (clean_action_fraction) never were there
    assert LossSettings.field_names()[:len(LOSS_FIELDS)] == LOSS_FIELDS
    assert OFFICIAL_LOSS.describe().startswith("official loss settings: ")


def test_loss_settings_validation_names_the_field():
    for changes, message in (({"uniform_shift": 0.0}, "uniform_shift=0.0, expected > 0"),
                             ({"logit_std": -1.0}, "logit_std=-1.0, expected > 0"),
                             ({"action_loss_weight": -0.5}, "action_loss_weight=-0.5, expected >= 0"),
                             ({"video_loss_weight": 0.0, "action_loss_weight": 0.0},
                              "video_loss_weight=0 and action_loss_weight=0, expected at least one > 0"),
                             ({"logit_mean": float("nan")}, "logit_mean=nan, expected a finite number"),
                             ({"clean_action_fraction": 1.0},
                              "clean_action_fraction=1.0, expected a fraction in [0, 1)"),
                             ({"video_loss_weight": "heavy"}, "video_loss_weight='heavy', expected a number")):
        with pytest.raises(ValueError, match=re.escape(f"LossSettings: {message}")):
            LossSettings(**changes)
    with pytest.raises(ValueError, match=r"unknown fields \['action_weight'\]"):
        LossSettings.from_dict({"action_weight": 1.0})
    assert LossSettings.from_dict({"action_loss_weight": 5}).action_loss_weight == 5.0    # JSON ints are fine


def test_old_config_with_loss_fields_loads_without_them():
    old = {**preset("tiny").to_dict(), "logit_mean": 0.1, "logit_std": 0.9, "uniform_shift": 5.0,
           "video_loss_weight": 1.0, "action_loss_weight": 7.0}
    cfg = MotusConfig.from_dict(old)
    assert cfg == preset("tiny")
    assert not set(LOSS_FIELDS) & set(cfg.to_dict())
    assert not any(hasattr(cfg, name) for name in LOSS_FIELDS)


def test_loss_uses_the_weights(official_model):
    """Same seed = same timesteps, noise and terms; the total follows the weights."""
    inputs = _loss_inputs(official_model)

    def loss(**weights):
        return flow_matching_loss(official_model, *inputs, LossSettings(**weights),
                                  generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        unit, video_only, weighted = loss(), loss(action_loss_weight=0.0), loss(video_loss_weight=2.0,
                                                                                 action_loss_weight=3.0)
    assert float(unit.action) > 0 and float(unit.video) > 0
    assert torch.equal(video_only.video, unit.video) and torch.equal(video_only.action, unit.action)
    assert float(video_only.total) == pytest.approx(float(unit.video), rel=1e-6)
    assert float(unit.total) == pytest.approx(float(unit.video + unit.action), rel=1e-6)
    assert float(weighted.total) == pytest.approx(float(2.0 * unit.video + 3.0 * unit.action), rel=1e-6)


def test_clean_action_windows_see_t_zero_and_leave_the_action_loss_out(official_model):
    """clean_action_fraction: those windows condition the video on clean actions (world-model
    mode); the action term averages the other windows only, the video term all of them."""
    inputs = _loss_inputs(official_model, batch=16)
    calls = []
    real = official_model.denoise

    def spy(c, video, t_video, noisy_actions, t_action, st):
        calls.append((noisy_actions.clone(), t_action.clone()))
        return real(c, video, t_video, noisy_actions, t_action, st)

    official_model.denoise = spy
    try:
        with torch.no_grad():
            loss = flow_matching_loss(official_model, *inputs, LossSettings(clean_action_fraction=0.5),
                                      generator=torch.Generator().manual_seed(3))
    finally:
        del official_model.denoise
    noisy_actions, t_action = calls[0]
    clean = t_action == 0
    assert 0 < int(clean.sum()) < len(clean)                             # some of each
    torch.testing.assert_close(noisy_actions[clean], inputs[1][clean])  # given exactly, no noise
    assert float(loss.action) > 0 and torch.isfinite(loss.total)
    with torch.no_grad():                                                 # the default draws no mask
        plain = flow_matching_loss(official_model, *inputs, LossSettings(),
                                   generator=torch.Generator().manual_seed(3))
    assert bool((plain.t_action > 0).all())


def test_timestep_parameters_come_from_the_loss_settings():
    cfg = preset("tiny")                                          # logit_normal (the project's)
    low = sample_timesteps(cfg, LossSettings(logit_mean=-2.0), 2000, torch.Generator().manual_seed(0))
    high = sample_timesteps(cfg, LossSettings(logit_mean=2.0), 2000, torch.Generator().manual_seed(0))
    assert float(low.mean()) < 0.3 < 0.7 < float(high.mean())
    uniform = cfg.replace(conventions=Conventions(timestep_sampling="shifted_uniform"))
    t1 = sample_timesteps(uniform, LossSettings(), 2000, torch.Generator().manual_seed(0))
    t5 = sample_timesteps(uniform, OFFICIAL_LOSS, 2000, torch.Generator().manual_seed(0))
    assert float(t5.mean()) > float(t1.mean()) + 0.1


def test_train_conventions_switch_sets_every_convention_and_the_shift():
    """`motus-ros train --conventions official` = all official conventions + FlowMatchScheduler(shift=5);
    `--set` items given beside it still win; 'project' gives the presets' back."""
    from motus_ros.commands.train import conventions_overrides, parse_overrides
    from motus_ros.training.trainer import split_overrides

    model, loss = split_overrides(conventions_overrides("official"))
    assert preset("small").with_overrides(model).conventions == OFFICIAL_CONVENTIONS
    assert LossSettings().replace(**loss) == OFFICIAL_LOSS
    merged = {**conventions_overrides("official"), **parse_overrides(["conventions.video_loss=future_frames"])}
    assert preset("tiny").with_overrides(split_overrides(merged)[0]).conventions.video_loss == "future_frames"
    model, loss = split_overrides(conventions_overrides("project"))
    assert official_tiny().with_overrides(model).conventions == PROJECT_CONVENTIONS and loss == {"uniform_shift": 1.0}
    assert conventions_overrides("") == {}
