"""TensorRT backend: builds an engine from the exported step.onnx with the TensorRT Python API and
caches it next to the ONNX file.

Engine file: `<onnx stem>.<gpu>.<precision>.<key>.engine` beside step.onnx, with `<...>.engine.json`
recording what the key was made of. The key is the sha256 of: the ONNX file's sha256, the GPU name
and compute capability, the optimization profile (min/opt/max shape of every input), the precision
and the TensorRT version; an engine is only valid for exactly these, so any change builds a new one.

Requirements: the `tensorrt` Python package (NVIDIA's index: `pip install --extra-index-url
https://pypi.nvidia.com tensorrt`, or the JetPack one on Jetson) and a CUDA GPU with a CUDA build of
torch. Without them construction raises BackendUnavailable naming what is missing and what to use
instead; nothing else in this module needs TensorRT, so keys, profiles and checks are testable anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .base import BackendUnavailable, StepBackend
from .onnx_export import Sidecar, resolve_onnx
from .step_network import INPUT_NAMES, OUTPUT_NAMES

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
INSTALL_HINT = ("install the 'tensorrt' Python package from NVIDIA's index "
                "(pip install --extra-index-url https://pypi.nvidia.com tensorrt; on Jetson the JetPack "
                "python3-libnvinfer package)")
INSTEAD = "use backend 'onnxruntime' (CPU or CUDA execution provider) or 'torch_compile' instead"


def require_tensorrt(device: torch.device):
    """Import tensorrt and check for a CUDA GPU; BackendUnavailable naming what is missing otherwise."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"backend 'tensorrt' is not available: the 'tensorrt' Python package is not "
                                 f"installed; {INSTALL_HINT}, or {INSTEAD}") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend 'tensorrt' is not available: it needs a CUDA GPU and a CUDA build of "
                                 f"torch (torch {torch.__version__}, torch.cuda.is_available() is False); {INSTEAD}")
    if device.type != "cuda":
        raise BackendUnavailable(f"backend 'tensorrt' is not available on device '{device}': set device to "
                                 f"'cuda' (TensorRT runs on the GPU only), or {INSTEAD}")
    return trt


def resolve_precision(precision: str, compute_capability: tuple[int, int]) -> str:
    """'auto' -> bf16 on compute capability >= 8.0 (Ampere, Orin and newer), fp16 before."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if tuple(compute_capability) >= (8, 0) else "fp16"
    return precision


def profile_shapes(sidecar: Sidecar, und_len: int | None = None, text_len: int | None = None,
                   batch: int = 1) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape per input from the sidecar's dynamic-axis bounds; opt at the given lengths."""
    bounds = sidecar.data["shape_bounds"]
    cfg = sidecar.data["config"]
    hv, wv = cfg["vlm_image_size"]
    opt_dims = {"batch": batch,
                "und_len": und_len or min(2 + (hv // 32) * (wv // 32) + 32, bounds["und_len"][1]),
                "text_len": text_len or bounds["text_len"][1]}
    out = {}
    for spec in sidecar.data["inputs"]:
        dims = spec["shape"]
        pick = [lambda n: bounds[n][0], lambda n: opt_dims[n], lambda n: bounds[n][1]]
        out[spec["name"]] = tuple(tuple(d if isinstance(d, int) else int(f(d)) for d in dims) for f in pick)
    return out


def engine_key(onnx_sha256: str, gpu_name: str, compute_capability: tuple[int, int], profile: dict,
               precision: str, trt_version: str) -> str:
    """sha256 over everything an engine is specific to (see module doc)."""
    blob = json.dumps({"onnx_sha256": onnx_sha256, "gpu": gpu_name, "compute_capability": list(compute_capability),
                       "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
                       "precision": precision, "tensorrt": trt_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class EnginePlan:
    """Where the engine for one (ONNX, GPU, profile, precision, TensorRT) lives and what it was keyed on."""

    path: Path
    key: str
    profile: dict
    precision: str
    gpu_name: str
    compute_capability: tuple[int, int]
    trt_version: str

    def describe(self) -> dict:
        return {"engine": str(self.path), "key": self.key, "precision": self.precision, "gpu": self.gpu_name,
                "compute_capability": list(self.compute_capability), "tensorrt": self.trt_version,
                "profile": {k: [list(s) for s in v] for k, v in self.profile.items()}}


def plan_engine(onnx_path: Path, sidecar: Sidecar, gpu_name: str, compute_capability: tuple[int, int],
                precision: str, trt_version: str, und_len: int | None = None,
                text_len: int | None = None) -> EnginePlan:
    """The engine file next to the ONNX file for these parameters (pure: no TensorRT, no GPU)."""
    precision = resolve_precision(precision, compute_capability)
    profile = profile_shapes(sidecar, und_len, text_len)
    key = engine_key(sidecar.data["onnx_sha256"], gpu_name, compute_capability, profile, precision, trt_version)
    gpu_slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    path = Path(onnx_path).parent / f"{Path(onnx_path).stem}.{gpu_slug}.{precision}.{key[:16]}.engine"
    return EnginePlan(path, key, profile, precision, gpu_name, tuple(compute_capability), trt_version)


def build_engine(trt, onnx_path: Path, plan: EnginePlan, workspace_gib: float = 4.0) -> bytes:
    """Parse the ONNX file and build a serialized engine for the plan's profile and precision."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):   # implicit in TensorRT >= 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if plan.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif plan.precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from '{onnx_path}' ({plan.precision})")
    return bytes(serialized)


def load_or_build(trt, onnx_path: Path, plan: EnginePlan) -> tuple[bytes, bool]:
    """Engine bytes from the cache next to the ONNX file, or built and cached; returns (bytes, reused)."""
    if plan.path.is_file():
        return plan.path.read_bytes(), True
    data = build_engine(trt, onnx_path, plan)
    tmp = plan.path.with_suffix(".engine.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, plan.path)
    plan.path.with_suffix(".engine.json").write_text(json.dumps(plan.describe(), indent=2))
    return data, False


_TORCH_DTYPES = {"bool": torch.bool, "float32": torch.float32}


class TensorRTBackend(StepBackend):
    """Runs the cached engine on torch CUDA tensors (no host copies) on torch's current stream."""

    name = "tensorrt"

    def __init__(self, model, onnx_path: str | os.PathLike, precision: str = "auto"):
        super().__init__(model)
        self.device = model.device
        trt = require_tensorrt(self.device)
        self.onnx_path, self.sidecar = resolve_onnx(onnx_path)
        self.sidecar.check_config(model.config)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.plan = plan_engine(self.onnx_path, self.sidecar, torch.cuda.get_device_name(index),
                                torch.cuda.get_device_capability(index), precision, trt.__version__)
        data, self.reused = load_or_build(trt, self.onnx_path, self.plan)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load engine '{self.plan.path}'; delete it to rebuild")
        self.context = self.engine.create_execution_context()

    def run(self, inputs):
        self.sidecar.check_inputs(inputs)
        for name in INPUT_NAMES:
            spec_dtype = _TORCH_DTYPES[self.sidecar.inputs()[name]["dtype"]]
            t = inputs[name].to(self.device, spec_dtype).contiguous()
            inputs[name] = t
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = []
        for name in OUTPUT_NAMES:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return tuple(outs)

    def describe(self) -> dict:
        return {"backend": self.name, "onnx": str(self.onnx_path), "reused_engine": self.reused,
                **self.plan.describe()}

    def close(self) -> None:
        self.context = self.engine = self.runtime = None


__all__ = ["TensorRTBackend", "require_tensorrt", "plan_engine", "engine_key", "profile_shapes", "EnginePlan"]
