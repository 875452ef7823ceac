"""ONNX Runtime backend: runs an exported step.onnx (see onnx_export) with the CUDA execution provider
where it is present and the model is on a CUDA device, the CPU provider otherwise.

The sidecar is checked against the model config when the backend is built and the inputs against the
recorded shapes at every call (cheap: a few integer comparisons), so a stale export fails with the
field named rather than with an ONNX Runtime shape error.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .base import BackendUnavailable, StepBackend
from .onnx_export import SidecarMismatch, resolve_onnx
from .step_network import OUTPUT_NAMES


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("backend 'onnxruntime' needs the 'onnxruntime' package (or "
                                 "'onnxruntime-gpu' for CUDA); install it or use backend 'torch'") from exc
    return ort


def choose_providers(device: torch.device, available: list[str]) -> list[str]:
    """CUDA EP first when the model is on CUDA and the EP is installed; always the CPU EP as fallback."""
    providers = []
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeBackend(StepBackend):
    name = "onnxruntime"

    def __init__(self, model, onnx_path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None):
        super().__init__(model)
        ort = _import_ort()
        self.onnx_path, self.sidecar = resolve_onnx(onnx_path)
        self.sidecar.check_config(model.config)
        self.device = model.device
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = int(threads)
        self.providers = providers or choose_providers(self.device, ort.get_available_providers())
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=options, providers=self.providers)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        expected = [d["name"] for d in self.sidecar.data["inputs"]]
        if graph_inputs != expected:
            raise SidecarMismatch(f"ONNX file '{self.onnx_path}' has inputs {graph_inputs}, its sidecar lists "
                                  f"{expected}; re-export with `motus-ros export onnx`")

    def run(self, inputs):
        self.sidecar.check_inputs(inputs)
        feeds = {k: v.detach().cpu().numpy() for k, v in inputs.items()}
        outs = self.session.run(list(OUTPUT_NAMES), feeds)
        return tuple(torch.from_numpy(np.ascontiguousarray(o)).to(self.device) for o in outs)

    def describe(self) -> dict:
        return {"backend": self.name, "onnx": str(self.onnx_path), "providers": self.session.get_providers(),
                "device": str(self.device)}

    def close(self) -> None:
        self.session = None
