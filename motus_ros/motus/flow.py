"""Rectified-flow training objective with independent video and action timesteps (UniDiffuser style).

Loss = w_v * MSE(video velocity) + w_a * MSE(action velocity). The condition latent frame stays
clean in the input. Two inputs decide it: the model's config.conventions (shared with the official
code, recorded in every checkpoint) and a LossSettings (this module: the numbers of the objective,
chosen per training run and recorded in the trainer's training.json, not in the model config).
  timestep_sampling  logit_normal (sigmoid(logit_mean + logit_std N(0,1))) | shifted_uniform |
                     flow_shift (official: 1000 discrete sigmas of FlowMatchScheduler(shift=
                     uniform_shift), shift 5 = OFFICIAL_LOSS), drawn independently for video and action;
  video_loss         future_frames (MSE over frames 1..) | all_frames (official: frame 0 zeroed in
                     prediction and target, mean over all T frames, i.e. (T-1)/T of the former);
  condition_timestep (inside Motus.denoise) whether the condition frame's tokens see t = 0 or t_video;
  w_v, w_a           LossSettings.video_loss_weight / action_loss_weight.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .config import NUM_TRAIN_TIMESTEPS, OFFICIAL_TRAIN_SHIFT, strict_from_dict
from .sampler import shift_timesteps


# Here, beside the loss that reads it: the objective is a property of a training run, not of the model.
@dataclass(frozen=True)
class LossSettings:
    """The numbers of the training objective (which distribution and loss form: config.Conventions).

    logit_mean, logit_std  timestep_sampling "logit_normal": t = sigmoid(mean + std N(0,1))
                           (official robotwin.yaml: sigmoid_scale 1.0)
    uniform_shift          "shifted_uniform" and "flow_shift": the shift (official: OFFICIAL_TRAIN_SHIFT = 5)
    video_loss_weight, action_loss_weight   w_v and w_a of the total loss
    clean_action_fraction  the fraction of windows whose actions the video expert sees clean
                           (t_action = 0: world-model mode) instead of at a drawn t; their action
                           loss is not counted (nothing to denoise). Independent timesteps reach
                           that conditioning only as t_action -> 0, so a video expert trained on
                           scripted demonstrations can ignore the actions (not in the official
                           training: 0 there and by default)
    Model configs (config.json) written before this class held these five fields; they are read
    from there into a LossSettings when a run starts from such a checkpoint (training.trainer).
    """

    logit_mean: float = 0.0
    logit_std: float = 1.0
    uniform_shift: float = 1.0
    video_loss_weight: float = 1.0
    action_loss_weight: float = 1.0
    clean_action_fraction: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"LossSettings: {f.name}={value!r}, expected a number")
            object.__setattr__(self, f.name, float(value))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and the expected value."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"LossSettings: {msg}")
        for f in dataclasses.fields(self):
            need(math.isfinite(getattr(self, f.name)), f"{f.name}={getattr(self, f.name)}, expected a finite number")
        need(self.logit_std > 0, f"logit_std={self.logit_std}, expected > 0")
        need(self.uniform_shift > 0, f"uniform_shift={self.uniform_shift}, expected > 0")
        for name in ("video_loss_weight", "action_loss_weight"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)}, expected >= 0")
        need(0.0 <= self.clean_action_fraction < 1.0,
             f"clean_action_fraction={self.clean_action_fraction}, expected a fraction in [0, 1)")
        need(self.video_loss_weight + self.action_loss_weight > 0,
             "video_loss_weight=0 and action_loss_weight=0, expected at least one > 0")

    @classmethod
    def official(cls) -> "LossSettings":
        """The official Motus training objective (FlowMatchScheduler(shift=5), unit weights)."""
        return OFFICIAL_LOSS

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | LossSettings | None") -> "LossSettings":
        """Missing keys take the defaults; unknown keys are an error."""
        return strict_from_dict(cls, data, "LossSettings")

    def replace(self, **changes: Any) -> "LossSettings":
        """A copy with some fields changed (unknown names are an error, as in from_dict)."""
        return LossSettings.from_dict({**self.to_dict(), **changes})

    def describe(self) -> str:
        kind = {LossSettings(): "default", OFFICIAL_LOSS: "official"}.get(self, "custom")
        return f"{kind} loss settings: " + ", ".join(f"{k}={v:g}" for k, v in self.to_dict().items())


OFFICIAL_LOSS = LossSettings(uniform_shift=OFFICIAL_TRAIN_SHIFT)   # official Motus training (robotwin.yaml)


def sample_logit_normal(n: int, mean: float = 0.0, std: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """t = sigmoid(mean + std * N(0,1)) in (0,1) (SD3 logit-normal; paper: 'Logit Normal sampling')."""
    z = torch.randn(n, generator=generator, device=device, dtype=torch.float32)
    return torch.sigmoid(mean + std * z)


def sample_shifted_uniform(n: int, shift: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """t = shift(u), u ~ U(0,1): uniform timesteps pushed towards noise for shift > 1."""
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float32)
    return shift_timesteps(u, shift)


def flow_shift_sigmas(shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The training sigmas of the official FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True):
    shift(1 - k/N) for k = 0..N-1 (float32, descending from 1; 0 itself is never drawn)."""
    grid = torch.linspace(1.0, 0.0, num_train_timesteps + 1, dtype=torch.float32)[:-1]
    return shift_timesteps(grid, shift)


def sample_flow_shift(n: int, shift: float, generator=None, device=None,
                      num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """t = sigmas[k], k uniform in 0..N-1 (official Motus training, shift 5)."""
    k = torch.randint(0, num_train_timesteps, (n,), generator=generator, device=device)
    return flow_shift_sigmas(shift, num_train_timesteps).to(k.device)[k]


def sample_timesteps(cfg, settings: LossSettings, n: int, generator=None, device=None) -> torch.Tensor:
    """Training timesteps [n] in [0,1]: the distribution cfg.conventions.timestep_sampling (cfg: the
    model's MotusConfig) with the parameters of `settings`."""
    kind = cfg.conventions.timestep_sampling
    if kind == "logit_normal":
        return sample_logit_normal(n, settings.logit_mean, settings.logit_std, generator, device)
    if kind == "flow_shift":
        return sample_flow_shift(n, settings.uniform_shift, generator, device)
    return sample_shifted_uniform(n, settings.uniform_shift, generator, device)


def video_loss(cfg, v_video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the video velocity under cfg.conventions.video_loss (target = eps - x0, all frames)."""
    if cfg.conventions.video_loss == "all_frames":
        pred = torch.cat([torch.zeros_like(v_video[:, :, :1]), v_video[:, :, 1:]], dim=2).float()
        target = torch.cat([torch.zeros_like(target[:, :, :1]), target[:, :, 1:]], dim=2)
        return F.mse_loss(pred, target)
    return F.mse_loss(v_video[:, :, 1:].float(), target[:, :, 1:])


def noisy_video(latents: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The rectified-flow point (1 - t) x0 + t eps of latents [B,C,T,h,w] at t [B]; frame 0 (the
    condition) stays clean."""
    tv = t.view(-1, 1, 1, 1, 1)
    return torch.cat([latents[:, :, :1], ((1 - tv) * latents + tv * eps)[:, :, 1:]], dim=2)


@dataclass
class FlowLoss:
    total: torch.Tensor
    video: torch.Tensor
    action: torch.Tensor
    t_video: torch.Tensor
    t_action: torch.Tensor


def flow_matching_loss(model, latents: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, cond,
                       settings: LossSettings, generator: torch.Generator | None = None) -> FlowLoss:
    """latents [B,C,T,h,w] autoencoder latents (frame 0 = condition), actions [B,chunk,A] and state [B,S] normalized,
    cond = model.prepare_conditioning(...). model.config gives the shapes and conventions, `settings`
    the timestep parameters and loss weights. Video and action timesteps are drawn independently
    (settings.clean_action_fraction of the windows then get clean actions)."""
    cfg = model.config
    b, device = latents.shape[0], latents.device
    latents = model.video_to_model(latents)                                # conventions.video_target
    t_v = sample_timesteps(cfg, settings, b, generator, "cpu").to(device)
    t_a = sample_timesteps(cfg, settings, b, generator, "cpu").to(device)
    clean = torch.zeros(b, dtype=torch.bool)
    if settings.clean_action_fraction > 0:                 # world-model windows: actions given clean
        clean = torch.rand(b, generator=generator) < settings.clean_action_fraction
        t_a = torch.where(clean.to(device), torch.zeros_like(t_a), t_a)
    eps_v = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)
    eps_a = torch.randn(actions.shape, generator=generator, dtype=torch.float32).to(device)

    noisy = noisy_video(latents, t_v, eps_v)
    ta = t_a.view(b, 1, 1)
    noisy_actions = (1 - ta) * actions + ta * eps_a

    v_video, v_action = model.denoise(cond, noisy, t_v, noisy_actions, t_a, state)
    target_a = eps_a - actions
    if cfg.conventions.video_prediction == "sample":
        loss_v = video_loss(cfg, v_video, latents)          # the head predicts x0: MSE on x0
    else:
        loss_v = video_loss(cfg, v_video, eps_v - latents)
    if clean.any():
        per_window = ((v_action.float() - target_a) ** 2).mean(dim=(1, 2))
        noised = (~clean).to(device)
        loss_a = per_window[noised].mean() if noised.any() else per_window.sum() * 0.0
    else:
        loss_a = F.mse_loss(v_action.float(), target_a)
    total = settings.video_loss_weight * loss_v + settings.action_loss_weight * loss_a
    return FlowLoss(total, loss_v, loss_a, t_v, t_a)
