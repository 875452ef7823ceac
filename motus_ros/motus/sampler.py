"""Rectified-flow Euler sampler: its own small class, holds no model, float32 arithmetic.

Convention (arXiv 2512.13030): x_t = (1 - t) x0 + t eps, t = 1 is pure noise, t = 0 clean; the
network predicts v = eps - x0, so an Euler step is x_{t'} = x_t + (t' - t) v.
"""
from __future__ import annotations

import torch


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow-matching time shift (SD3 / Wan): t' = s t / (1 + (s - 1) t); shift 1 is the identity."""
    return shift * t / (1.0 + (shift - 1.0) * t)


class FlowMatchEulerSampler:
    """set_timesteps(n) then step(velocity, i, sample) for i in range(n)."""

    def __init__(self, num_steps: int = 10, shift: float = 1.0):
        if shift <= 0:
            raise ValueError(f"sampler shift={shift}, expected > 0")
        self.shift = float(shift)
        self.set_timesteps(num_steps)

    def set_timesteps(self, num_steps: int) -> None:
        """Times from 1 (noise) down to 0 (clean): self.sigmas has num_steps + 1 float32 entries."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps={num_steps}, expected >= 1")
        self.num_steps = int(num_steps)
        grid = torch.linspace(1.0, 0.0, self.num_steps + 1, dtype=torch.float64)
        self.sigmas = shift_timesteps(grid, self.shift).to(torch.float32)
        self.timesteps = self.sigmas[:-1]

    def step(self, velocity: torch.Tensor, index: int, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step from sigmas[index] to sigmas[index + 1], computed in float32."""
        if not 0 <= index < self.num_steps:
            raise IndexError(f"step index {index}, expected 0..{self.num_steps - 1}")
        # A Python float (exactly the float32 difference): a CPU tensor moved to a GPU sample's device
        # would make the host wait for the GPU at every step.
        dt = float(self.sigmas[index + 1] - self.sigmas[index])
        out = sample.to(torch.float32) + dt * velocity.to(torch.float32)
        return out.to(sample.dtype)
