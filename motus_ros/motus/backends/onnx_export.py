"""Export of the per-step network (StepNetwork) to ONNX, with a sidecar JSON, and its checks.

Files written to OUT_DIR: `step.onnx` (+ `step.onnx.data` when the weights pass protobuf's 2 GiB) and
`step.json`, the sidecar: format, preset, full model config, opset, exporter, dtype, input/output
names with shapes (symbolic names for the dynamic axes batch, und_len, text_len) and the bounds of
those axes, normalization statistics path and robot, checkpoint path and sha256 (or the seed of the
random weights), sha256 of step.onnx.

Exporter: torch.onnx.export with dynamo=False (the TorchScript exporter). The dynamo exporter needs
the `onnxscript` package, which is not installed here; the TorchScript exporter handles SDPA with a
boolean mask at opset 17 once two spots are made export-friendly during the export only:
`experts.layer_norm` takes its width from x.shape[-1] (traced as a tensor, which LayerNormalization
cannot take; the width is static, so it is read as a constant), and `aten::rms_norm` has no opset-17
symbolic (it is written out as x * rsqrt(mean(x^2) + eps) * weight, torch's own formula).

Loading checks the sidecar against the model config and the inputs against the recorded shapes;
every mismatch names the field, the value seen and the value expected.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import experts
from ..config import MotusConfig
from .step_network import INPUT_NAMES, OUTPUT_NAMES, StepNetwork, default_und_len, example_inputs

FORMAT = "motus_ros/step-onnx/1"
ONNX_FILE = "step.onnx"
SIDECAR_FILE = "step.json"
DEFAULT_OPSET = 17
MAX_BATCH = 8          # upper bound of the batch axis recorded for engine profiles

DYNAMIC_AXES: dict[str, dict[int, str]] = {
    "video_latents": {0: "batch"}, "actions": {0: "batch"}, "state": {0: "batch"},
    "t_video_features": {0: "batch"}, "t_action_features": {0: "batch"},
    "und_tokens": {0: "batch", 1: "und_len"}, "und_mask": {0: "batch", 1: "und_len"},
    "cross_k": {1: "batch", 3: "text_len"}, "cross_v": {1: "batch", 3: "text_len"},
    "v_video": {0: "batch"}, "v_action": {0: "batch"},
}


class SidecarMismatch(ValueError):
    """The ONNX sidecar does not fit the model or the inputs; the message names the field."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file, or of the weight files of a checkpoint folder (sorted by name)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".pt", ".bin", ".json") and f.is_file())
    if not files:
        raise FileNotFoundError(f"checkpoint '{p}': no .safetensors/.pt/.bin files to hash")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def weights_id(checkpoint: str | None, seed: int | None) -> str:
    """Identity of the weights: the checkpoint's sha256, or the seed of random init (and torch version)."""
    if checkpoint:
        return "sha256:" + checkpoint_sha256(checkpoint)
    return f"random:seed={seed}:torch={torch.__version__.split('+')[0]}"


def shape_bounds(cfg: MotusConfig, max_batch: int = MAX_BATCH) -> dict[str, list[int]]:
    """[min, max] of each dynamic axis: batch, understanding tokens, text tokens."""
    # Understanding tokens: vision start/end + merged image patches + up to text_max_len instruction tokens.
    und_max = default_und_len(cfg) - 32 + cfg.text_max_len
    return {"batch": [1, max_batch], "und_len": [1, und_max], "text_len": [1, cfg.text_max_len]}


@contextlib.contextmanager
def export_friendly():
    """Make layer_norm / rms_norm traceable at opset 17 (see module doc); restored afterwards."""
    original_ln, original_rms = experts.layer_norm, torch.nn.functional.rms_norm

    def layer_norm(x, eps):
        return torch.nn.functional.layer_norm(x.float(), (int(x.shape[-1]),), eps=eps).type_as(x)

    def rms_norm(x, normalized_shape, weight=None, eps=None):
        eps = torch.finfo(x.dtype).eps if eps is None else eps
        dims = tuple(range(-len(normalized_shape), 0))
        y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return y if weight is None else y * weight

    experts.layer_norm, torch.nn.functional.rms_norm = layer_norm, rms_norm
    try:
        yield
    finally:
        experts.layer_norm, torch.nn.functional.rms_norm = original_ln, original_rms


def _symbolic_shape(name: str, shape: tuple[int, ...]) -> list[int | str]:
    axes = DYNAMIC_AXES.get(name, {})
    return [axes.get(i, int(d)) for i, d in enumerate(shape)]


@dataclass
class Sidecar:
    """The parsed sidecar JSON of an exported step network."""

    data: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sidecar":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"ONNX sidecar '{p}' not found (written by `motus-ros export onnx`)")
        data = json.loads(p.read_text())
        if data.get("format") != FORMAT:
            raise SidecarMismatch(f"sidecar '{p}': field 'format' is {data.get('format')!r}, expected {FORMAT!r}")
        return cls(data, p)

    @property
    def onnx_path(self) -> Path:
        return self.path.parent / self.data["onnx_file"]

    def inputs(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.data["inputs"]}

    def check_config(self, cfg: MotusConfig) -> None:
        """Every model config field must match the exported one; the first mismatch is named."""
        exported = self.data.get("config", {})
        current = cfg.to_dict()
        for key in sorted(set(exported) | set(current)):
            if key == "name":
                continue
            if exported.get(key) != current.get(key):
                raise SidecarMismatch(
                    f"ONNX export '{self.onnx_path}' does not fit the model: field 'config.{key}' is "
                    f"{exported.get(key)!r} in the sidecar, the model has {current.get(key)!r}; re-export with "
                    "`motus-ros export onnx`")

    def check_inputs(self, inputs: dict[str, Any]) -> None:
        """Names, ranks, fixed dimensions and dynamic-axis bounds of concrete inputs."""
        spec = self.inputs()
        if set(inputs) != set(spec):
            raise SidecarMismatch(f"step inputs {sorted(inputs)}, the sidecar '{self.path}' expects {sorted(spec)}")
        bounds = self.data.get("shape_bounds", {})
        seen_dims: dict[str, int] = {}
        for name, value in inputs.items():
            shape = tuple(value.shape)
            want = spec[name]["shape"]
            if len(shape) != len(want):
                raise SidecarMismatch(f"input '{name}': shape {list(shape)}, expected rank {len(want)} {want}")
            for axis, (got, exp) in enumerate(zip(shape, want)):
                if isinstance(exp, str):
                    lo, hi = bounds.get(exp, [1, None])
                    if got < lo or (hi is not None and got > hi):
                        raise SidecarMismatch(f"input '{name}' axis {axis} ({exp}) = {got}, expected {lo}..{hi}")
                    if seen_dims.setdefault(exp, got) != got:
                        raise SidecarMismatch(f"input '{name}' axis {axis} ({exp}) = {got}, but another input has "
                                              f"{exp} = {seen_dims[exp]}")
                elif got != exp:
                    raise SidecarMismatch(f"input '{name}' axis {axis} = {got}, expected {exp} (shape {want})")

    def matches(self, cfg: MotusConfig, weights: str, opset: int) -> bool:
        """True when this export can be reused for these weights (export reuse in the cache)."""
        try:
            self.check_config(cfg)
        except SidecarMismatch:
            return False
        return (self.data.get("weights") == weights and self.data.get("opset") == opset
                and self.onnx_path.is_file() and file_sha256(self.onnx_path) == self.data.get("onnx_sha256"))


def export_step_onnx(model, out_dir: str | os.PathLike, *, preset: str, checkpoint: str | None = None,
                     seed: int | None = None, stats: str | None = None, robot: str | None = None,
                     opset: int = DEFAULT_OPSET) -> Sidecar:
    """Write step.onnx + step.json to out_dir and return the sidecar. Weights are exported in float32."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    network = StepNetwork(model).eval()
    inputs = example_inputs(model, batch=1, device=model.device)
    onnx_path = out / ONNX_FILE
    tmp = out / (ONNX_FILE + ".tmp")
    with torch.no_grad(), export_friendly(), warnings.catch_warnings():
        # Tracer warnings flag Python ints read from shapes; the traced dims are static by design.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(network, tuple(inputs[k] for k in INPUT_NAMES), str(tmp), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=DYNAMIC_AXES, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
        outputs = network(**inputs)
    os.replace(tmp, onnx_path)  # never leave a half-written step.onnx behind
    data = {
        "format": FORMAT, "onnx_file": ONNX_FILE, "onnx_sha256": file_sha256(onnx_path),
        "preset": preset, "config": cfg.to_dict(), "opset": opset,
        "exporter": "torch.onnx.export(dynamo=False)", "torch_version": torch.__version__, "dtype": "float32",
        "inputs": [{"name": k, "shape": _symbolic_shape(k, inputs[k].shape),
                    "dtype": "bool" if inputs[k].dtype == torch.bool else "float32"} for k in INPUT_NAMES],
        "outputs": [{"name": k, "shape": _symbolic_shape(k, o.shape), "dtype": "float32"}
                    for k, o in zip(OUTPUT_NAMES, outputs)],
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in DYNAMIC_AXES.items()},
        "shape_bounds": shape_bounds(cfg),
        "stats": None if stats is None else str(stats), "robot": robot,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": checkpoint_sha256(checkpoint) if checkpoint else None,
        "seed": None if checkpoint else seed,
        "weights": weights_id(checkpoint, seed),
    }
    side = out / SIDECAR_FILE
    side.with_suffix(".json.tmp").write_text(json.dumps(data, indent=2))
    os.replace(side.with_suffix(".json.tmp"), side)
    return Sidecar(data, side)


def default_cache_dir() -> Path:
    """$MOTUS_ROS_CACHE/onnx, else $XDG_CACHE_HOME/motus_ros/onnx, else ~/.cache/motus_ros/onnx."""
    root = os.environ.get("MOTUS_ROS_CACHE")
    if root:
        return Path(root) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "motus_ros" / "onnx"


def cache_key(cfg: MotusConfig, weights: str, opset: int) -> str:
    """Folder name of an automatic export: preset name + hash of (config, weights, opset)."""
    blob = json.dumps({"config": cfg.to_dict(), "weights": weights, "opset": opset}, sort_keys=True)
    return f"{cfg.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def ensure_export(model, *, preset: str, checkpoint: str | None = None, seed: int | None = None,
                  stats: str | None = None, robot: str | None = None, cache_dir: str | os.PathLike | None = None,
                  opset: int = DEFAULT_OPSET) -> tuple[Sidecar, bool]:
    """Reuse the cached export of these weights or write one; returns (sidecar, reused)."""
    weights = weights_id(checkpoint, seed)
    folder = Path(cache_dir or default_cache_dir()) / cache_key(model.config, weights, opset)
    side = folder / SIDECAR_FILE
    if side.is_file():
        try:
            existing = Sidecar.load(side)
            if existing.matches(model.config, weights, opset):
                return existing, True
        except (SidecarMismatch, ValueError, KeyError):
            pass  # stale or foreign: export again below
    return export_step_onnx(model, folder, preset=preset, checkpoint=checkpoint, seed=seed, stats=stats,
                            robot=robot, opset=opset), False


def resolve_onnx(onnx_path: str | os.PathLike) -> tuple[Path, Sidecar]:
    """A step.onnx file or its folder -> (onnx file, sidecar next to it)."""
    p = Path(onnx_path)
    if p.is_dir():
        p = p / ONNX_FILE
    side = Sidecar.load(p.with_suffix(".json"))     # step.onnx -> step.json
    if not p.is_file():
        raise FileNotFoundError(f"ONNX file '{p}' not found")
    return p, side
