"""bf16 autocast, the precision the official code runs in on a GPU (and `auto` picks on CUDA): the
model's denoise runs under it and stays close to float32. No GPU here, so the same autocast path is
exercised with the CPU's bf16 autocast; on CUDA only the device type differs."""
from __future__ import annotations

import types

import pytest
import torch

from motus_ros.motus.backends.step_network import example_inputs
from motus_ros.motus.backends.torch_backend import autocast_context, resolve_precision
from motus_ros.motus.config import preset
from motus_ros.motus.model import build_model

torch.set_num_threads(2)


def test_auto_precision_is_fp32_on_cpu_and_bf16_needs_cuda():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision 'bf16' needs a CUDA device"):
        resolve_precision("bf16", cpu)
    with pytest.raises(ValueError, match="precision 'int8' is not one of"):
        resolve_precision("int8", cpu)


def test_denoise_under_bf16_autocast_matches_float32():
    model = build_model(preset("tiny"), seed=0, build_encoders=False)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():       # both output layers start at zero: give them weights to compare
        for layer in (model.action.decoder.action_head[-1], model.video.wan.proj_out):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.3)
    x = example_inputs(model, seed=5)
    cond = types.SimpleNamespace(und_tokens=x["und_tokens"], und_mask=None,
                                 cross_kv=list(zip(x["cross_k"], x["cross_v"])))
    t_v, t_a = torch.tensor([0.7]), torch.tensor([0.3])
    args = (cond, x["video_latents"], t_v, x["actions"], t_a, x["state"])
    with torch.no_grad():
        ref_v, ref_a = model.denoise(*args)
        with autocast_context("bf16", torch.device("cpu")):
            low_v, low_a = model.denoise(*args)
    # The video head and time embeddings stay float32 (fp32_region), as in the official code.
    assert low_v.dtype == torch.float32 and low_a.dtype == torch.float32
    for low, ref in ((low_v, ref_v), (low_a, ref_a)):
        assert torch.isfinite(low).all()
        rel = (low - ref).norm() / ref.norm()
        assert 0 < rel < 0.05, rel          # bf16 rounding, not a different function
