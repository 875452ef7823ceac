"""Inference backends for the per-step denoising network of Motus.

    torch          eager PyTorch (bf16/fp16 autocast on CUDA, float32 on CPU); the reference
    torch_compile  torch.compile of the step network (CUDA graphs on CUDA)
    onnxruntime    an exported step.onnx run by ONNX Runtime (CPU / CUDA execution providers)
    tensorrt       a TensorRT engine built from the same step.onnx, cached next to it

`make_backend(name, model, ...)` returns a callable that `Motus.generate(step_fn=...)` calls once per
Euler step; the conditioning (VLM, text, condition frame) is computed once per chunk outside it, so
all five modes run on every backend. For onnxruntime/tensorrt without `onnx_path`, the step network
is exported once into a cache folder (see onnx_export.default_cache_dir) and reused afterwards.
"""
from __future__ import annotations

import os

# Kept free of torch imports so nodes can validate parameters without loading torch.
BACKENDS = ("torch", "torch_compile", "onnxruntime", "tensorrt")


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine; the message says what is missing and what to use instead."""


def check_backend(name: str) -> str:
    """Normalize a backend name; ValueError naming the accepted values."""
    b = str(name).strip().lower()
    if b not in BACKENDS:
        raise ValueError(f"backend '{name}' is not one of {', '.join(BACKENDS)}")
    return b


def make_backend(name: str, model, *, onnx_path: str | os.PathLike | None = None, preset: str | None = None,
                 checkpoint: str | None = None, seed: int | None = None, stats: str | None = None,
                 robot: str | None = None, cache_dir: str | os.PathLike | None = None, precision: str = "auto",
                 compile_mode: str | None = None, threads: int = 0):
    """Build a backend for `model`. BackendUnavailable says what is missing on this machine.

    threads: CPU threads of the step network (torch_compile kernels, ONNX Runtime intra-op); 0 = default.
    """
    name = check_backend(name)
    if name == "torch":
        from .torch_backend import TorchBackend
        return TorchBackend(model, precision=precision)
    if name == "torch_compile":
        from .compiled import CompiledBackend
        return CompiledBackend(model, mode=compile_mode, precision=precision, threads=threads)
    if name == "tensorrt":
        from .tensorrt_backend import require_tensorrt
        require_tensorrt(model.device)   # fail before spending minutes on an export
    if onnx_path is None:
        from .onnx_export import ensure_export
        sidecar, _ = ensure_export(model, preset=preset or model.config.name, checkpoint=checkpoint, seed=seed,
                                   stats=stats, robot=robot, cache_dir=cache_dir)
        onnx_path = sidecar.onnx_path
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(model, onnx_path, threads=threads)
    from .tensorrt_backend import TensorRTBackend
    return TensorRTBackend(model, onnx_path, precision=precision)


__all__ = ["BACKENDS", "BackendUnavailable", "check_backend", "make_backend"]
