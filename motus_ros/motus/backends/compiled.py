"""torch.compile backend: the step network (StepNetwork) compiled by TorchInductor.

On CUDA the default mode is "reduce-overhead" (CUDA graphs: the shapes of one chunk are static, so
each Euler step replays one graph); on CPU the default mode, since CUDA graphs do not exist there.
The first call compiles (tens of seconds on a CPU, minutes for the paper preset on a GPU); a new
instruction length changes the conditioning shapes and triggers one more compile, after which
torch marks those dimensions dynamic. TorchInductor needs a C++ compiler on CPU and Triton on CUDA;
without them construction fails with BackendUnavailable instead of failing at the first chunk.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

import torch

from .base import BackendUnavailable, StepBackend
from .step_network import StepNetwork
from .torch_backend import autocast_context, resolve_precision

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compiler(device: torch.device) -> None:
    """Raise BackendUnavailable naming what TorchInductor lacks on this machine."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise BackendUnavailable("backend 'torch_compile' on CUDA needs the 'triton' package (shipped with "
                                     "CUDA builds of torch); install it or use backend 'torch' or 'tensorrt'")
        return
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None and shutil.which("c++") is None and shutil.which("clang++") is None:
        raise BackendUnavailable(f"backend 'torch_compile' on CPU needs a C++ compiler for TorchInductor "
                                 f"(looked for '{cxx}', 'c++', 'clang++'); install g++ (apt install g++) "
                                 "or use backend 'torch' or 'onnxruntime'")


class CompiledBackend(StepBackend):
    """StepNetwork under torch.compile; outputs cloned so CUDA-graph buffers are never aliased."""

    name = "torch_compile"

    def __init__(self, model, mode: str | None = None, precision: str = "auto", dynamic: bool | None = None,
                 threads: int = 0):
        super().__init__(model)
        # CPU threads of the compiled kernels (0 = torch's setting). TorchInductor bakes the thread count
        # into its OpenMP kernels and recompiles when it changes, so it is held fixed around every call;
        # 1 avoids busy-waiting kernel threads stalling on a shared CPU.
        self.threads = int(threads)
        self.device = model.device
        check_compiler(self.device)
        if mode is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode '{mode}' is not one of {', '.join(COMPILE_MODES)}")
        if mode in ("reduce-overhead", "max-autotune") and self.device.type != "cuda":
            raise ValueError(f"compile mode '{mode}' uses CUDA graphs; device is '{self.device}', use 'default'")
        self.mode = mode
        self.precision = resolve_precision(precision, self.device)
        self.network = StepNetwork(model).eval()
        self.compiled = torch.compile(self.network, mode=None if mode == "default" else mode, dynamic=dynamic)

    def run(self, inputs):
        previous = torch.get_num_threads()
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad(), autocast_context(self.precision, self.device):
                v_video, v_action = self.compiled(**inputs)
        finally:
            if self.threads > 0:
                torch.set_num_threads(previous)
        if self.mode != "default":
            # CUDA graphs reuse their output buffers at the next replay.
            v_video, v_action = v_video.clone(), v_action.clone()
        return v_video.float(), v_action.float()

    def describe(self) -> dict:
        return {"backend": self.name, "compile_mode": self.mode, "precision": self.precision,
                "device": str(self.device), "threads": self.threads or torch.get_num_threads()}
