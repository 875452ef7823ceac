"""Eager PyTorch backend: `Motus.denoise` itself, with bf16/fp16 autocast on CUDA and float32 on CPU.

On CPU (precision "fp32") this is exactly the model's own path, so outputs are bit-identical to
`generate()` without a backend. On CUDA the default precision is bf16 where the GPU supports it
(compute capability >= 8.0), fp16 otherwise; the sampler still integrates in float32.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> fp32 on CPU, bf16 on CUDA GPUs that have it, fp16 on older ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        if device.type != "cuda" and precision != "fp32":
            raise ValueError(f"precision '{precision}' needs a CUDA device; device is '{device}', use 'fp32'")
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_context(precision: str, device: torch.device):
    """torch.autocast for bf16/fp16 on CUDA; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


class TorchBackend:
    """Calls `model.denoise` (looked up at call time) under the chosen precision."""

    name = "torch"

    def __init__(self, model, precision: str = "auto"):
        self.model = model
        self.device = model.device
        self.precision = resolve_precision(precision, self.device)

    def __call__(self, cond, video, t_video, actions, t_action, state, need_video: bool = True):
        with autocast_context(self.precision, self.device):
            v_video, v_action = self.model.denoise(cond, video, t_video, actions, t_action, state,
                                                   need_video=need_video)
        return (None if v_video is None else v_video.float()), v_action.float()

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision, "device": str(self.device)}

    def close(self) -> None:
        pass
