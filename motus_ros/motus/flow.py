"""Rectified-flow training objective with independent video and action timesteps (UniDiffuser style).

Loss = w_v * MSE(video velocity) + w_a * MSE(action velocity). The condition latent frame stays
clean in the input. config.conventions chooses the rest:
  timestep_sampling  logit_normal | shifted_uniform | flow_shift (official: 1000 discrete sigmas of
                     FlowMatchScheduler(shift=uniform_shift)), drawn independently for video and action;
  video_loss         future_frames (MSE over frames 1..) | all_frames (official: frame 0 zeroed in
                     prediction and target, mean over all T frames, i.e. (T-1)/T of the former);
  condition_timestep (inside Motus.denoise) whether the condition frame's tokens see t = 0 or t_video.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import NUM_TRAIN_TIMESTEPS
from .sampler import shift_timesteps


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


def sample_timesteps(cfg, n: int, generator=None, device=None) -> torch.Tensor:
    """Training timesteps [n] in [0,1] under cfg.conventions.timestep_sampling."""
    kind = cfg.conventions.timestep_sampling
    if kind == "logit_normal":
        return sample_logit_normal(n, cfg.logit_mean, cfg.logit_std, generator, device)
    if kind == "flow_shift":
        return sample_flow_shift(n, cfg.uniform_shift, generator, device)
    return sample_shifted_uniform(n, cfg.uniform_shift, generator, device)


def video_loss(cfg, v_video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the video velocity under cfg.conventions.video_loss (target = eps - x0, all frames)."""
    if cfg.conventions.video_loss == "all_frames":
        pred = torch.cat([torch.zeros_like(v_video[:, :, :1]), v_video[:, :, 1:]], dim=2).float()
        target = torch.cat([torch.zeros_like(target[:, :, :1]), target[:, :, 1:]], dim=2)
        return F.mse_loss(pred, target)
    return F.mse_loss(v_video[:, :, 1:].float(), target[:, :, 1:])


@dataclass
class FlowLoss:
    total: torch.Tensor
    video: torch.Tensor
    action: torch.Tensor
    t_video: torch.Tensor
    t_action: torch.Tensor


def flow_matching_loss(model, latents: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, cond,
                       generator: torch.Generator | None = None) -> FlowLoss:
    """latents [B,C,T,h,w] (frame 0 = condition), actions [B,chunk,A] and state [B,S] normalized,
    cond = model.prepare_conditioning(...). Video and action timesteps are drawn independently."""
    cfg = model.config
    b, device = latents.shape[0], latents.device
    t_v = sample_timesteps(cfg, b, generator, "cpu").to(device)
    t_a = sample_timesteps(cfg, b, generator, "cpu").to(device)
    eps_v = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)
    eps_a = torch.randn(actions.shape, generator=generator, dtype=torch.float32).to(device)

    tv = t_v.view(b, 1, 1, 1, 1)
    noisy = (1 - tv) * latents + tv * eps_v
    noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)          # condition frame stays clean
    ta = t_a.view(b, 1, 1)
    noisy_actions = (1 - ta) * actions + ta * eps_a

    v_video, v_action = model.denoise(cond, noisy, t_v, noisy_actions, t_a, state)
    target_a = eps_a - actions
    loss_v = video_loss(cfg, v_video, eps_v - latents)
    loss_a = F.mse_loss(v_action.float(), target_a)
    total = cfg.video_loss_weight * loss_v + cfg.action_loss_weight * loss_a
    return FlowLoss(total, loss_v, loss_a, t_v, t_a)
