"""scripts/gpu_bench.sh (issue 18): the GPU benchmark's CPU rehearsal on the tiny preset, and the time
budget of `motus-ros bench policy` it relies on."""
from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motus_ros.bench.policy import FINISH_RESERVE_S, Budget, BudgetExceeded, _time_mode, _unavailable_here

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_bench.sh"


def _run_script(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.mark.slow
def test_cpu_rehearsal_writes_one_json_with_every_field(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # A wheel of a version this Python already has: the script must see that and install nothing.
    have = md.version("safetensors")
    (wheels / f"safetensors-{have}-cp310-abi3-manylinux_2_17_x86_64.whl").write_bytes(b"")
    out = tmp_path / "out"
    proc = _run_script(str(out), "--preset", "tiny", "--device", "cpu", "--backends", "torch,onnxruntime,tensorrt",
                       "--repeats", "3", "--warmup", "2", "--profile", env={"GPU_BENCH_WHEELS": str(wheels)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"wheel: safetensors {have} already installed" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["gpu_bench.json", "gpu_bench.log", "profile_vla.txt"]

    r = json.loads((out / "gpu_bench.json").read_text())
    assert r["finished"] is True and r["preset"] == "tiny" and r["device"] == "cpu" and r["steps"] == 10
    assert r["command"].startswith("scripts/gpu_bench.sh ") and "--preset tiny" in r["command"]
    assert r["environment"]["torch"] and r["environment"]["python"] and r["rclpy_imported"] is False
    assert r["model_build_s"] > 0
    assert set(r["results"]) == {"torch", "onnxruntime"}
    assert "tensorrt" in r["unavailable"] and "not available" in r["unavailable"]["tensorrt"]
    assert r["skipped"] == {}
    for name, entry in r["results"].items():
        assert set(entry["modes"]) == {"vla", "joint"}
        assert entry["setup"]["setup_s"] >= 0 and entry["time_to_first_chunk_s"] > 0
        for m in entry["modes"].values():
            assert m["repeats_done"] == 3 and m["warmup"] == 2 and not m["truncated_by_budget"]
            assert 0 < m["latency_min_s"] <= m["latency_median_s"] <= m["latency_p90_s"]
            assert m["first_chunk_s"] > 0 and m["peak_memory_mb"] > 0
    cache = r["conditioning_cache"]
    assert cache["backend"] == "torch" and cache["mode"] == "vla" and cache["recompute_repeats_done"] == 3
    assert cache["recompute_every_step_median_s"] > 0 and cache["cached_median_s"] > 0 and cache["speedup"] > 0
    prof = r["profile"]
    assert prof["step_network_calls"] == 10 and prof["in_step_network"] == {}
    table = (out / "profile_vla.txt").read_text()
    assert "motus::step_network" in table and "host syncs" in table


def test_script_refuses_bad_arguments(tmp_path):
    proc = _run_script()
    assert proc.returncode == 2 and "usage" in proc.stderr.lower()
    proc = _run_script(str(tmp_path / "o"), "--frobnicate")
    assert proc.returncode == 2 and "unknown option '--frobnicate'" in proc.stderr
    proc = _run_script(str(tmp_path / "o"), "--budget-s", "soon")
    assert proc.returncode == 2 and "--budget-s 'soon'" in proc.stderr


class _SlowPolicy:
    """Stands in for MotusPolicy: every chunk takes `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0

    def infer(self, obs):
        self.calls += 1
        time.sleep(self.seconds)
        return {"timing": {"conditioning_s": 0.0, "denoise_s": self.seconds}}


def test_timing_loop_stops_when_the_budget_would_not_cover_another_chunk():
    policy = _SlowPolicy(0.05)
    timed = _time_mode(policy, {}, repeats=1000, warmup=2, budget=Budget(FINISH_RESERVE_S + 0.4))
    assert timed["truncated_by_budget"] is True
    assert timed["repeats_done"] < 1000 and policy.calls == timed["repeats_done"] + 2
    assert timed["latency_p90_s"] >= timed["latency_median_s"] > 0
    # No time left at all: the last warm-up chunk is reported, flagged by repeats_done 0.
    timed = _time_mode(_SlowPolicy(0.01), {}, repeats=5, warmup=1, budget=Budget(FINISH_RESERVE_S - 1))
    assert timed["repeats_done"] == 0 and timed["truncated_by_budget"] and math.isnan(timed["denoise_median_s"])
    unbounded = _time_mode(_SlowPolicy(0.0), {}, repeats=4, warmup=0)
    assert unbounded["repeats_done"] == 4 and unbounded["warmup"] == 1 and not unbounded["truncated_by_budget"]


def test_budget_alarm_interrupts_work_and_keeps_an_outer_alarm():
    pending_before = signal.getitimer(signal.ITIMER_REAL)[0]   # pytest-timeout's, when it uses signals
    handler_before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded):
        with Budget(FINISH_RESERVE_S + 0.2).alarm():
            while time.monotonic() - t0 < 60:   # without the alarm this ends and pytest.raises fails
                time.sleep(0.01)
    assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == (pending_before > 0)
    assert signal.getsignal(signal.SIGALRM) is handler_before
    with Budget(None).alarm():   # no budget: no handler of its own
        assert signal.getsignal(signal.SIGALRM) is handler_before


def test_onnxruntime_without_the_cuda_provider_is_refused_before_exporting():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA execution provider")
    reason = _unavailable_here("onnxruntime", "cuda")
    assert "no CUDAExecutionProvider" in reason and "onnxruntime-gpu" in reason
    assert _unavailable_here("onnxruntime", "cpu") is None and _unavailable_here("torch", "cuda") is None
