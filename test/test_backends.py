"""Inference backends: parity of torch_compile and onnxruntime with eager torch in all five modes,
ONNX export + sidecar checks, export reuse, TensorRT planning and its missing-package message, CLIs.

Tolerances (tiny preset, float32 on CPU, same inputs and noise): normalized actions and video latents
within ATOL = 1e-4, decoded frames (in [-1, 1]) within FRAMES_ATOL = 1e-3. torch_compile is compiled
once for the module (one graph serves all five modes: the shapes do not depend on the mode).
"""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

from motus_ros.cli import main as cli_main
from motus_ros.motus.backends import BACKENDS, BackendUnavailable, check_backend, make_backend
from motus_ros.motus.backends import compiled as compiled_mod
from motus_ros.motus.backends.onnx_export import (ONNX_FILE, SIDECAR_FILE, Sidecar, SidecarMismatch, ensure_export,
                                                  export_step_onnx)
from motus_ros.motus.backends.onnxruntime_backend import OnnxRuntimeBackend
from motus_ros.motus.backends.step_network import example_inputs
from motus_ros.motus.backends.tensorrt_backend import plan_engine, profile_shapes, require_tensorrt
from motus_ros.motus.backends.torch_backend import TorchBackend
from motus_ros.motus.config import preset
from motus_ros.motus.model import MODES, build_model
from model_inputs import random_inputs, step_network_and_denoise

torch.set_num_threads(2)
ATOL = 1e-4
FRAMES_ATOL = 1e-3
STEPS = 2


@pytest.fixture(scope="module")
def model():
    m = build_model(preset("tiny"), seed=0)
    # The action head starts at zero (predicts zero velocity); give it weights so parity means something.
    g = torch.Generator().manual_seed(11)
    head = m.action.decoder.action_head[-1]
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
        head.bias.copy_(torch.randn(head.bias.shape, generator=g) * 0.1)
    return m


@pytest.fixture(scope="module")
def inputs(model):
    return random_inputs(model.config)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_step_onnx(model, out, preset="tiny", seed=0, robot="sim")
    return out


@pytest.fixture(scope="module")
def backends(model, inputs, export_dir):
    # Single-threaded compiled kernels: busy-waiting OpenMP threads stall for seconds per call when the
    # CI cores are shared. Compiled once here for the whole module (one graph serves all five modes).
    compiled = make_backend("torch_compile", model, threads=1)
    run(model, inputs, "vla", step_fn=compiled)     # compiles for the conditioning lengths used below
    return {"torch_compile": compiled, "onnxruntime": make_backend("onnxruntime", model, onnx_path=export_dir)}


def run(model, inputs, mode, step_fn=None, seed=0):
    extra = {}
    if mode == "wm":
        extra["actions"] = inputs["actions"]
    if mode == "idm":
        extra["future_frames"] = inputs["future"]
    return model.generate(inputs["images"], inputs["state"], ["stack the blocks"], mode=mode, steps=STEPS,
                          generator=torch.Generator().manual_seed(seed), step_fn=step_fn, **extra)


@pytest.fixture(scope="module")
def eager(model, inputs):
    return {mode: run(model, inputs, mode) for mode in MODES}


def test_step_network_matches_denoise_exactly(model):
    out, ref = step_network_and_denoise(model)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert float(ref[1].abs().max()) > 0.1    # actions depend on the network (the head is not zero)


@pytest.mark.parametrize("mode", ["vla", "joint"])
def test_eager_torch_backend_is_bit_identical(model, inputs, eager, mode):
    out = run(model, inputs, mode, step_fn=TorchBackend(model))
    ref = eager[mode]
    for field in ("actions", "video_latents", "frames"):
        a, b = getattr(out, field), getattr(ref, field)
        assert (a is None and b is None) or torch.equal(a, b), field


@pytest.mark.parametrize("backend", ["torch_compile", "onnxruntime"])
@pytest.mark.parametrize("mode", MODES)
def test_backend_parity_with_eager(model, inputs, eager, backends, backend, mode):
    out = run(model, inputs, mode, step_fn=backends[backend])
    ref = eager[mode]
    if mode == "vgm":
        assert out.actions is None
    else:
        torch.testing.assert_close(out.actions, ref.actions, atol=ATOL, rtol=0)
    if ref.video_latents is None:
        assert out.video_latents is None
    else:
        torch.testing.assert_close(out.video_latents, ref.video_latents, atol=ATOL, rtol=0)
    if ref.frames is None:
        assert out.frames is None
    else:
        torch.testing.assert_close(out.frames, ref.frames, atol=FRAMES_ATOL, rtol=0)


def test_onnx_handles_other_conditioning_lengths(model, inputs, backends):
    """Instruction length changes und_len and text_len (dynamic axes in the export)."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    kw = dict(mode="vla", steps=1)
    long_text = ["pick up the red cube and place it in the bowl"]
    ref = model.generate(inputs["images"], inputs["state"], long_text, generator=g.manual_seed(0), **kw)
    out = model.generate(inputs["images"], inputs["state"], long_text, generator=g.manual_seed(0),
                         step_fn=backends["onnxruntime"], **kw)
    torch.testing.assert_close(out.actions, ref.actions, atol=ATOL, rtol=0)
    with torch.no_grad():
        lengths = [model.prepare_conditioning(inputs["images"], text).und_tokens.shape[1]
                   for text in (long_text, ["stack the blocks"])]
    assert lengths[0] != lengths[1] and cfg.text_max_len >= lengths[0] - lengths[1]


def test_sidecar_contents(export_dir, model):
    side = json.loads((export_dir / SIDECAR_FILE).read_text())
    assert side["preset"] == "tiny" and side["opset"] == 17 and side["dtype"] == "float32"
    assert side["robot"] == "sim" and side["checkpoint"] is None and side["weights"].startswith("random:seed=0")
    names = [i["name"] for i in side["inputs"]]
    assert names == ["video_latents", "actions", "state", "t_video_features", "t_action_features", "und_tokens",
                     "und_mask", "cross_k", "cross_v"]
    cfg = model.config
    shapes = {i["name"]: i["shape"] for i in side["inputs"]}
    assert shapes["actions"] == ["batch", cfg.chunk_size, cfg.action_dim]
    assert shapes["cross_k"] == [cfg.num_layers, "batch", cfg.num_heads, "text_len", cfg.head_dim]
    assert [o["name"] for o in side["outputs"]] == ["v_video", "v_action"]
    assert side["config"] == cfg.to_dict()


def test_sidecar_config_mismatch_names_the_field(export_dir):
    other = build_model(preset("tiny").replace(num_layers=1), build_encoders=False)
    with pytest.raises(SidecarMismatch, match=r"field 'config.num_layers' is 2 in the sidecar, the model has 1"):
        OnnxRuntimeBackend(other, export_dir)


def test_sidecar_shape_checks_name_input_and_axis(export_dir, model):
    side = Sidecar.load(export_dir / SIDECAR_FILE)
    good = example_inputs(model)
    side.check_inputs(good)
    bad = dict(good, actions=torch.zeros(1, 10, 14))
    with pytest.raises(SidecarMismatch, match=r"input 'actions' axis 1 = 10, expected 48"):
        side.check_inputs(bad)
    bad = dict(good, state=torch.zeros(2, 14))
    with pytest.raises(SidecarMismatch, match=r"input 'state' axis 0 \(batch\) = 2, but another input has batch = 1"):
        side.check_inputs(bad)
    bad = dict(good, und_tokens=torch.zeros(1, 10_000, model.config.und_hidden))
    with pytest.raises(SidecarMismatch, match=r"input 'und_tokens' axis 1 \(und_len\) = 10000, expected 1\.\."):
        side.check_inputs(bad)
    with pytest.raises(SidecarMismatch, match="expects"):
        side.check_inputs({k: v for k, v in good.items() if k != "state"})


def test_export_reuse_and_new_export_on_other_weights(model, tmp_path):
    first, reused = ensure_export(model, preset="tiny", seed=0, cache_dir=tmp_path)
    assert not reused and first.onnx_path.is_file()
    mtime = first.onnx_path.stat().st_mtime_ns
    again, reused = ensure_export(model, preset="tiny", seed=0, cache_dir=tmp_path)
    assert reused and again.onnx_path == first.onnx_path and again.onnx_path.stat().st_mtime_ns == mtime
    # A corrupted/edited ONNX file no longer matches its recorded sha256: exported again.
    first.onnx_path.write_bytes(b"garbage")
    fresh, reused = ensure_export(model, preset="tiny", seed=0, cache_dir=tmp_path)
    assert not reused and fresh.onnx_path.read_bytes() != b"garbage"
    other_seed, reused = ensure_export(model, preset="tiny", seed=5, cache_dir=tmp_path)
    assert not reused and other_seed.onnx_path.parent != first.onnx_path.parent


def test_export_cli(tmp_path, capsys):
    out = tmp_path / "exp"
    assert cli_main(["export", "onnx", "--preset", "tiny", "--robot", "agilex_aloha2", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["onnx"] == str(out / ONNX_FILE) and (out / SIDECAR_FILE).is_file()
    side = Sidecar.load(out / SIDECAR_FILE)
    assert side.data["robot"] == "agilex_aloha2" and side.data["stats"].endswith("agilex_aloha2.json")
    assert cli_main(["export", "onnx", "--preset", "huge", "--out", str(tmp_path / "x")]) == 2
    assert "--preset 'huge' is not one of tiny, small, paper" in capsys.readouterr().err


# TensorRT without TensorRT ------------------------------------------------------------------------
def test_tensorrt_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import fails even where it is installed
    with pytest.raises(BackendUnavailable) as err:
        require_tensorrt(torch.device("cuda"))
    msg = str(err.value)
    assert "backend 'tensorrt' is not available" in msg and "'tensorrt' Python package" in msg
    assert "pypi.nvidia.com" in msg and "use backend 'onnxruntime'" in msg


def test_tensorrt_without_gpu_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.0.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        require_tensorrt(torch.device("cuda"))


def test_make_backend_tensorrt_fails_before_exporting(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' is not available"):
        make_backend("tensorrt", model, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_engine_plan_key_changes_with_gpu_shapes_precision_version(export_dir):
    side = Sidecar.load(export_dir / SIDECAR_FILE)
    onnx = export_dir / ONNX_FILE
    base = dict(gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), precision="fp16", trt_version="10.3.0")
    a = plan_engine(onnx, side, **base)
    assert plan_engine(onnx, side, **base).key == a.key                       # deterministic
    assert a.path.parent == export_dir and a.path.name.startswith("step.nvidia-h100-80gb-hbm3.fp16.")
    variants = [dict(base, gpu_name="Orin"), dict(base, compute_capability=(8, 7)), dict(base, precision="bf16"),
                dict(base, precision="fp32"), dict(base, trt_version="10.4.0")]
    keys = {plan_engine(onnx, side, **v).key for v in variants}
    assert len(keys) == len(variants) and a.key not in keys
    assert plan_engine(onnx, side, **base, text_len=8).key != a.key          # other optimization profile
    assert plan_engine(onnx, side, **dict(base, precision="auto")).precision == "bf16"   # sm 9.0
    assert plan_engine(onnx, side, **dict(base, precision="auto", compute_capability=(7, 5))).precision == "fp16"
    with pytest.raises(ValueError, match="precision 'int4' is not one of"):
        plan_engine(onnx, side, **dict(base, precision="int4"))


def test_engine_profile_from_sidecar_bounds(export_dir, model):
    side = Sidecar.load(export_dir / SIDECAR_FILE)
    prof = profile_shapes(side, und_len=30, text_len=12)
    cfg = model.config
    lo, opt, hi = prof["cross_k"]
    assert lo == (cfg.num_layers, 1, cfg.num_heads, 1, cfg.head_dim)
    assert opt == (cfg.num_layers, 1, cfg.num_heads, 12, cfg.head_dim)
    assert hi == (cfg.num_layers, 8, cfg.num_heads, cfg.text_max_len, cfg.head_dim)
    assert prof["und_mask"][1] == (1, 30)
    assert prof["actions"][0] == (1, cfg.chunk_size, cfg.action_dim)


# Names, availability, policy ----------------------------------------------------------------------
def test_backend_names_and_compiler_check(monkeypatch):
    assert BACKENDS == ("torch", "torch_compile", "onnxruntime", "tensorrt")
    assert check_backend(" ONNXRuntime ") == "onnxruntime"
    with pytest.raises(ValueError, match="backend 'jax' is not one of torch, torch_compile, onnxruntime, tensorrt"):
        check_backend("jax")
    with pytest.raises(ValueError, match="compile mode 'reduce-overhead' uses CUDA graphs"):
        compiled_mod.CompiledBackend(types.SimpleNamespace(device=torch.device("cpu"), config=None),
                                     mode="reduce-overhead")
    monkeypatch.setattr(compiled_mod.shutil, "which", lambda _name: None)
    with pytest.raises(BackendUnavailable, match="needs a C\\+\\+ compiler for TorchInductor"):
        compiled_mod.check_compiler(torch.device("cpu"))


def test_policy_onnxruntime_backend_matches_torch(monkeypatch, tmp_path):
    from motus_ros.policy.runtime import MotusPolicy

    monkeypatch.setenv("MOTUS_ROS_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
                      for c in ("high", "left_wrist", "right_wrist")},
           "state": np.full(14, 0.01), "instruction": "get water", "mode": "joint"}
    policy = MotusPolicy(preset="tiny", steps=1, seed=2)
    a = policy.infer(obs)
    policy.set_backend("onnxruntime")
    assert list((tmp_path / "onnx").iterdir())           # exported into the cache folder
    policy.reset()
    b = policy.infer(obs)
    assert policy.backend.describe()["providers"] == ["CPUExecutionProvider"]
    np.testing.assert_allclose(b["actions"], a["actions"], atol=1e-4)
    assert np.abs(b["frames"].astype(int) - a["frames"].astype(int)).max() <= 1   # uint8 rounding
    with pytest.raises(ValueError, match="backend 'x' is not one of"):
        MotusPolicy(preset="tiny", backend="x")


def test_bench_policy_backends_cli(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MOTUS_ROS_CACHE", str(tmp_path))
    argv = ["bench", "policy", "--preset", "tiny", "--repeats", "1", "--modes", "vla", "--steps", "1",
            "--backend", "torch,onnxruntime"]
    assert cli_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backends"] == ["torch", "onnxruntime"]
    for b in ("torch", "onnxruntime"):
        m = result["results"][b]["modes"]["vla"]
        assert m["latency_median_s"] > 0 and m["latency_p90_s"] >= m["latency_median_s"]
        assert m["throughput_chunks_per_s"] > 0 and m["peak_memory_mb"] > 0
    assert result["baseline"] == "torch" and result["results"]["onnxruntime"]["speedup_vs_baseline"]["vla"] > 0
    assert result["results"]["onnxruntime"]["setup"]["providers"] == ["CPUExecutionProvider"]
    assert cli_main(["bench", "policy", "--backend", "torch,nope"]) == 2
    assert "backend 'nope' is not one of" in capsys.readouterr().err


# Policy node parameter ----------------------------------------------------------------------------
@pytest.mark.ros
def test_policy_node_passes_backend_and_rejects_unknown(ros_context):
    from rclpy.parameter import Parameter

    from fake_policy import FakePolicy
    from motus_ros.nodes.policy_node import PolicyNode
    from motus_ros.params import ParameterError

    made = []

    def factory(**kwargs):
        made.append(FakePolicy(**kwargs))
        return made[-1]

    node = PolicyNode(policy_factory=factory, parameter_overrides=[
        Parameter("backend", value="onnxruntime"), Parameter("onnx_path", value="/tmp/x/step.onnx")])
    try:
        assert made[0].kwargs["backend"] == "onnxruntime" and made[0].kwargs["onnx_path"] == "/tmp/x/step.onnx"
    finally:
        node.close()
        node.destroy_node()
    with pytest.raises(ParameterError, match="parameter 'backend'"):
        PolicyNode(policy_factory=FakePolicy, parameter_overrides=[Parameter("backend", value="jax")])

    def unavailable(**kwargs):
        raise BackendUnavailable("backend 'tensorrt' is not available: the 'tensorrt' Python package is not installed")

    with pytest.raises(ParameterError, match="backend 'tensorrt'.*'tensorrt' Python package is not installed"):
        PolicyNode(policy_factory=unavailable, parameter_overrides=[Parameter("backend", value="tensorrt")])
