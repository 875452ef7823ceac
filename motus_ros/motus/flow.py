"""Rectified-flow training objective with independent video and action timesteps (UniDiffuser style).

Loss = w_v * MSE(video velocity, future latent frames only) + w_a * MSE(action velocity); the
condition latent frame stays clean (timestep 0) and is excluded from the video loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sampler import shift_timesteps


def sample_logit_normal(n: int, mean: float = 0.0, std: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """t = sigmoid(mean + std * N(0,1)) in (0,1) (SD3 logit-normal; paper: 'Logit Normal sampling')."""
    z = torch.randn(n, generator=generator, device=device, dtype=torch.float32)
    return torch.sigmoid(mean + std * z)


def sample_shifted_uniform(n: int, shift: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """t = shift(u), u ~ U(0,1): uniform timesteps pushed towards noise for shift > 1."""
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float32)
    return shift_timesteps(u, shift)


def sample_timesteps(cfg, n: int, generator=None, device=None) -> torch.Tensor:
    if cfg.timestep_sampling == "logit_normal":
        return sample_logit_normal(n, cfg.logit_mean, cfg.logit_std, generator, device)
    return sample_shifted_uniform(n, cfg.uniform_shift, generator, device)


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
    target_v = (eps_v - latents)[:, :, 1:]
    target_a = eps_a - actions
    loss_v = F.mse_loss(v_video[:, :, 1:].float(), target_v)
    loss_a = F.mse_loss(v_action.float(), target_a)
    total = cfg.video_loss_weight * loss_v + cfg.action_loss_weight * loss_a
    return FlowLoss(total, loss_v, loss_a, t_v, t_a)
