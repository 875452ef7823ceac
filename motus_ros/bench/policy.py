"""`motus-ros bench policy`: latency of one chunk per inference mode, peak memory, and the speedup of
computing the step-invariant conditioning (VLM, text, condition frame) once per call against
recomputing it at every denoising step as the official release does. Prints JSON.

`--backend torch,torch_compile,onnxruntime` times every listed backend in the same run on the same
weights and observations (the first one that runs is the baseline of `speedup_vs_baseline`): per
backend and mode median/p90 latency per chunk, throughput (chunks/s), the first chunk's time and peak
memory (CPU: the process's peak RSS, reset before each mode through /proc/self/clear_refs where Linux
allows it; CUDA: torch's peak allocation, reset per mode, plus the device's used memory, which also
counts ONNX Runtime's and TensorRT's own allocations). A backend this machine cannot run is reported
under `unavailable` with the reason; the exit status is 2 when none could run. `time_to_first_chunk_s`
of a backend is its set-up (export, engine build, session) plus its first chunk (where torch.compile
compiles); `model_build_s` is the model's construction, once for all backends.

The recompute-every-step baseline runs right after the baseline backend, before the backends that
compile, so a run cut short by `--budget-s` still has it. `--budget-s S` bounds the whole run: a
backend or mode starts only with time left, a timing loop stops early (`truncated_by_budget`), and an
alarm at the deadline stops a set-up or compilation in progress; whatever did not run is listed under
`skipped` with the reason. `--output FILE` writes the JSON after every mode (atomically), so a killed
run leaves what it measured (`finished: false`). `--profile FILE` writes a torch profiler table of one
VLA chunk of the baseline backend and counts the host-synchronising calls in the step network, in the
whole denoising loop and in the chunk. The bench needs no ROS (`rclpy_imported` in the JSON says so).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HELP = "Motus policy latency per mode and conditioning-cache speedup (JSON)"
BACKENDS = ("torch", "torch_compile", "onnxruntime", "tensorrt")
# A backend, the recompute baseline or the profile starts only with at least this much of --budget-s
# left (compilation, export and engine builds take far longer than a chunk); the alarm stops it anyway.
MIN_START_S = 20.0
# Kept free at the end of --budget-s for the last JSON write and the summary.
FINISH_RESERVE_S = 3.0
PROFILE_ROWS = 40
LOOP_LABEL = "motus::denoise_loop"   # Motus.sample: the Euler loop (sampler arithmetic included)
STEP_LABEL = "motus::step_network"   # one call of the backend (the step network)
# Host-synchronising calls counted by --profile. aten::_local_scalar_dense is every tensor -> Python
# number (.item(), float(), bool()); the cuda* calls are blocking waits, also from blocking copies
# (.to()/.cpu() without non_blocking). On CUDA each one inside a step stops the CPU from queueing the
# next kernels until the GPU has caught up.
SYNC_EVENTS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
               "cudaEventSynchronize", "cudaMemcpy")
ENV_PACKAGES = ("numpy", "triton", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "transformers",
                "diffusers", "tokenizers", "huggingface_hub", "safetensors")


class BudgetExceeded(BaseException):
    """Raised by the --budget-s alarm. A BaseException, since torch.compile and the exporters catch and
    wrap Exception."""


class Budget:
    """Wall-clock budget of the run (None: unbounded)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + float(seconds)

    def left(self) -> float:
        """Seconds left (inf without a budget)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() - FINISH_RESERVE_S >= seconds

    @contextlib.contextmanager
    def alarm(self):
        """Raise BudgetExceeded in the main thread when the budget (less FINISH_RESERVE_S) runs out.
        SIGALRM; not armed without a budget; an alarm already pending (pytest-timeout's) is re-armed
        afterwards with its remaining time."""
        usable = (self.deadline is not None and hasattr(signal, "setitimer")
                  and threading.current_thread() is threading.main_thread())
        if not usable:
            yield
            return

        def fire(signum, frame):
            raise BudgetExceeded(f"--budget-s {self.seconds:g} s ran out")

        armed_at = time.monotonic()
        pending, _ = signal.getitimer(signal.ITIMER_REAL)
        previous = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, max(self.left() - FINISH_RESERVE_S, 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if pending > 0:
                signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - armed_at), 0.01))


class Report:
    """The result dict, written to --output (atomically) whenever something was measured."""

    def __init__(self, data: dict, path: str | None):
        self.data = data
        self.path = Path(path) if path else None

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


class _Labelled:
    """A callable whose every call is a profiler range named `label` (for --profile)."""

    def __init__(self, fn, label: str):
        self.fn, self.label = fn, label

    def __call__(self, *args, **kwargs):
        from torch.profiler import record_function

        with record_function(self.label):
            return self.fn(*args, **kwargs)


def _observation(rng, mode: str, chunk: int, frames: int):
    import numpy as np

    def cams():
        return {c: rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for c in ("high", "left_wrist", "right_wrist")}
    obs = {"images": cams(), "state": np.zeros(14), "instruction": "transfer the cube to the other arm", "mode": mode}
    if mode == "wm":
        obs["actions"] = np.zeros((chunk, 14))
    if mode == "idm":
        obs["future_images"] = [cams() for _ in range(frames)]
    return obs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def _sync(device: str) -> None:
    """Wait for the GPU, so that host clocks measure finished work."""
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


def _reset_peak_memory(device: str) -> bool:
    """Reset the peak counter; False where the OS keeps the process-lifetime peak."""
    import torch

    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:   # "5": reset the peak RSS (VmHWM), Linux >= 4.0
            f.write("5")
        return True
    except OSError:
        return False


def _peak_memory_mb(device: str) -> float:
    import torch

    if _is_cuda(device):
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024                      # kB -> MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def _cuda_memory(device: str) -> dict:
    """Resident torch allocation and the whole device's used memory (MiB); {} on CPU."""
    import torch

    if not _is_cuda(device):
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {"allocated_mb": torch.cuda.memory_allocated(device) / 2**20, "device_used_mb": (total - free) / 2**20}


def _timed_infer(policy, obs, device: str) -> tuple[float, dict]:
    _sync(device)
    t0 = time.perf_counter()
    out = policy.infer(obs)
    _sync(device)
    return time.perf_counter() - t0, out


def _time_mode(policy, obs, repeats: int, warmup: int = 1, device: str = "cpu", budget: Budget | None = None) -> dict:
    """Median/p90 chunk latency (s) over `repeats` chunks after `warmup` untimed ones (the first of which
    is reported as first_chunk_s); stops early when the budget would not cover another chunk."""
    budget = budget or Budget(None)
    first = last_warm = None
    for _ in range(max(warmup, 1)):   # at least one: allocations, text cache, compilation
        last_warm, _ = _timed_infer(policy, obs, device)
        first = last_warm if first is None else first
    lat, cond, den = [], [], []
    truncated = False
    for _ in range(repeats):
        if not budget.allows(1.5 * (lat[-1] if lat else last_warm)):
            truncated = True
            break
        elapsed, out = _timed_infer(policy, obs, device)
        lat.append(elapsed)
        cond.append(out["timing"]["conditioning_s"])
        den.append(out["timing"]["denoise_s"])
    done = len(lat)
    if not lat:   # not even one timed chunk fitted: report the last warm-up chunk, flagged (repeats_done 0)
        lat, cond, den = [last_warm], [math.nan], [math.nan]
    median = statistics.median(lat)
    return {"latency_median_s": median, "latency_p90_s": _percentile(lat, 0.9), "latency_min_s": min(lat),
            "throughput_chunks_per_s": 1.0 / max(median, 1e-12), "first_chunk_s": first,
            "conditioning_median_s": statistics.median(cond), "denoise_median_s": statistics.median(den),
            "repeats_done": done, "warmup": max(warmup, 1), "truncated_by_budget": truncated}


def _parse_backends(text: str) -> list[str]:
    from motus_ros.motus.backends import check_backend

    names = [check_backend(b) for b in text.split(",") if b.strip()]
    if not names:
        raise ValueError(f"--backend '{text}': expected a comma-separated list of {', '.join(BACKENDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--backend '{text}': a backend is listed twice")
    return names


def _build_policy(args):
    """MotusPolicy with random weights. On CUDA the parameters are initialised on the GPU itself: the
    paper preset (14.4e9 parameters) initialised on the CPU in float32 takes minutes and ~58 GB of host
    memory before `.to(device)` copies it over."""
    import torch

    from motus_ros.policy.runtime import MotusPolicy

    kwargs = dict(preset=args.preset, device=args.device, steps=args.steps, precision=args.precision)
    if not _is_cuda(args.device):
        return MotusPolicy(**kwargs)
    try:
        with torch.device(args.device):
            policy = MotusPolicy(**kwargs)
    except (RuntimeError, TypeError) as exc:   # a module that cannot be built under a default device
        print(f"motus-ros bench policy: building on {args.device} directly failed ({exc}); building on the "
              "CPU and moving it", file=sys.stderr, flush=True)
        return MotusPolicy(**kwargs)
    policy.reset()   # the noise generator stays on the CPU (generate draws noise there and moves it)
    return policy


def _nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _environment(device: str) -> dict:
    """Versions and the GPU, for the JSON (what a number was measured on)."""
    import importlib.metadata as md

    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda, "packages": {}}
    for name in ENV_PACKAGES:
        try:
            env["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            env["packages"][name] = None
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = None
    if _is_cuda(device) and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        env["gpu"] = {"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                      "memory_mb": round(p.total_memory / 2**20), "multiprocessors": p.multi_processor_count,
                      "bf16": torch.cuda.is_bf16_supported(), "nvidia_smi": _nvidia_smi()}
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def _unavailable_here(name: str, device: str) -> str | None:
    """Why a backend would not run as meant on this device, found before any export or compilation."""
    if name == "onnxruntime" and _is_cuda(device):
        try:
            import onnxruntime as ort
        except ImportError:
            return None   # the backend itself says what to install
        providers = ort.get_available_providers()
        if "CUDAExecutionProvider" not in providers:
            return (f"backend 'onnxruntime' has no CUDAExecutionProvider here (providers: {', '.join(providers)}; "
                    "the 'onnxruntime' wheel is CPU-only, CUDA needs 'onnxruntime-gpu'); not timed on the CPU "
                    "provider with the model on the GPU")
    return None


def _set_backend(policy, name: str, args) -> None:
    if name == "torch_compile" and args.compile_mode:
        from motus_ros.motus.backends import make_backend

        old = policy.backend
        policy.backend = make_backend(name, policy.model, preset=policy.preset, precision=args.precision,
                                      compile_mode=args.compile_mode, threads=args.threads)
        policy.backend_name = name
        old.close()
        return
    policy.set_backend(name, precision=args.precision, close_previous=True, threads=args.threads)


def _count_syncs(events) -> dict:
    """Host-synchronising calls (SYNC_EVENTS) of a profiled chunk: in the step network, in the whole
    denoising loop (network + sampler) and in the chunk; plus the host<->device copies the GPU ran."""
    def ranges(label):
        return [(e.time_range.start, e.time_range.end) for e in events if e.name == label]

    steps, loop = ranges(STEP_LABEL), ranges(LOOP_LABEL)
    counts: dict[str, dict[str, int]] = {"in_step_network": {}, "in_denoise_loop": {}, "per_chunk": {}}
    copies: dict[str, int] = {}
    for e in events:
        if e.name.startswith(("Memcpy HtoD", "Memcpy DtoH")):
            copies[e.name] = copies.get(e.name, 0) + 1
        if e.name not in SYNC_EVENTS:
            continue
        t = e.time_range.start
        for key, spans in (("in_step_network", steps), ("in_denoise_loop", loop), ("per_chunk", None)):
            if spans is None or any(lo <= t <= hi for lo, hi in spans):
                counts[key][e.name] = counts[key].get(e.name, 0) + 1
    return {"step_network_calls": len(steps), **counts, "memcpy": copies}


def _profile_chunk(policy, obs, device: str, path: str) -> dict:
    """One (warm) VLA chunk under the torch profiler: a table to `path`, the sync counts returned."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _is_cuda(device) else [])
    backend, model = policy.backend, policy.model
    policy.backend = _Labelled(backend, STEP_LABEL)
    model.sample = _Labelled(model.sample, LOOP_LABEL)   # an instance attribute: generate() calls self.sample
    try:
        _sync(device)
        t0 = time.perf_counter()
        with profile(activities=activities) as prof:
            with record_function("motus::chunk"):
                policy.infer(obs)
            _sync(device)
        wall = time.perf_counter() - t0
    finally:
        policy.backend = backend
        del model.sample
    sort_by = "self_device_time_total" if _is_cuda(device) else "self_cpu_time_total"
    syncs = _count_syncs(prof.events())
    lines = [f"# one VLA chunk, backend {policy.backend_name}, preset {policy.preset}, device {device}, "
             f"{policy.steps} steps; wall {wall:.4f} s under the profiler; sorted by {sort_by}",
             f"# host syncs in the {syncs['step_network_calls']} step-network calls: "
             f"{syncs['in_step_network'] or 'none'}",
             f"# host syncs in the denoising loop (network + sampler): {syncs['in_denoise_loop'] or 'none'}",
             f"# host syncs in the whole chunk: {syncs['per_chunk'] or 'none'}; host<->device copies: "
             f"{syncs['memcpy'] or 'none'}",
             "# (aten::_local_scalar_dense of a CPU tensor, e.g. float(sampler.sigmas[i]), waits for nothing; on "
             "CUDA a real wait shows as cudaStreamSynchronize)", "",
             prof.key_averages().table(sort_by=sort_by, row_limit=PROFILE_ROWS)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
    return {"file": str(path), "backend": policy.backend_name, "mode": "vla", "sort_by": sort_by,
            "wall_s_under_profiler": wall, **syncs}


def _command_line(argv: list[str]) -> str:
    return " ".join(["motus-ros", "bench", "policy", *argv])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros bench policy", description=HELP)
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, paper (default tiny)")
    p.add_argument("--backend", default="torch",
                   help=f"comma-separated backends, the first is the baseline; available: {', '.join(BACKENDS)}")
    p.add_argument("--modes", default="vla,wm,idm,vgm,joint", help="comma-separated modes (default all five)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks per mode (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed chunks per mode before the timed ones (default 1)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's, 10)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", default="auto", help="auto (fp32 on CPU, bf16 on recent GPUs), fp32, bf16, fp16")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode of backend torch_compile: default, reduce-overhead, max-autotune, "
                        "max-autotune-no-cudagraphs (default: reduce-overhead, i.e. CUDA graphs, on CUDA; default "
                        "on CPU)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch and ONNX Runtime (0: their defaults); on a shared CPU use 1, since "
                        "busy-waiting OpenMP threads of compiled kernels stall when cores are taken")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget of the whole run in seconds: what does not fit is skipped and listed "
                        "(default: none)")
    p.add_argument("--output", default=None,
                   help="also write the JSON to this file, rewritten after every mode (default: stdout only)")
    p.add_argument("--profile", default=None,
                   help="write a torch profiler table of one VLA chunk of the baseline backend to this file")
    p.add_argument("--command", default=None, help="command line recorded in the JSON (default: this one)")
    return p


class PolicyBench:
    """One run: the backends in order, the recompute baseline and the profile after the first that runs."""

    def __init__(self, args, argv: list[str], budget: Budget):
        import numpy as np
        import torch

        from motus_ros.motus.model import check_mode

        self.args, self.budget = args, budget
        self.backends = _parse_backends(args.backend)
        self.modes = [check_mode(m) for m in args.modes.split(",") if m.strip()]
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        self.policy = _build_policy(args)
        _sync(args.device)
        self.model_build_s = time.perf_counter() - t0
        cfg = self.policy.config
        self.rng = np.random.default_rng(0)
        self.observations: dict[str, dict] = {}
        for mode in self.modes:
            self.observation(mode)
        self.result = {
            "benchmark": "policy", "preset": args.preset, "backend": self.backends[0], "backends": self.backends,
            "baseline": self.backends[0], "device": args.device, "precision": args.precision,
            "steps": self.policy.steps, "repeats": args.repeats, "warmup": max(args.warmup, 1),
            "modes_requested": self.modes, "torch_threads": torch.get_num_threads(), "chunk": cfg.chunk_size,
            "video_size": [cfg.video_height, cfg.video_width], "model_build_s": self.model_build_s,
            "command": args.command or _command_line(argv), "budget_s": args.budget_s,
            "environment": _environment(args.device), "results": {}, "unavailable": {}, "skipped": {},
            "finished": False}
        if _is_cuda(args.device):
            self.result["notes"] = [
                "conditioning_median_s and denoise_median_s are Motus.generate's own host-clock split, taken "
                "without CUDA synchronisation: on a GPU they show launch time rather than GPU time; the latency_* "
                "figures are synchronised"]
        self.report = Report(self.result, args.output)
        self.report.save()

    def observation(self, mode: str) -> dict:
        """The same random observation for a mode on every backend."""
        if mode not in self.observations:
            cfg = self.policy.config
            self.observations[mode] = _observation(self.rng, mode, cfg.chunk_size, cfg.num_future_frames)
        return self.observations[mode]

    def log(self, msg: str) -> None:
        left = "" if self.args.budget_s is None else f" ({self.budget.left():.0f} s of budget left)"
        print(f"motus-ros bench policy: {msg}{left}", file=sys.stderr, flush=True)

    def time_mode(self, mode: str) -> dict:
        a = self.args
        return _time_mode(self.policy, self.observation(mode), a.repeats, a.warmup, a.device, self.budget)

    def run(self) -> None:
        """Every backend in order; the recompute baseline and the profile right after the first that runs."""
        baseline = None
        with self.budget.alarm():
            try:
                for name in self.backends:
                    if self.budget.left() <= FINISH_RESERVE_S:
                        break
                    self.run_backend(name)
                    if baseline is None and name in self.result["results"]:
                        baseline = name
                        self.run_recompute(name)
                        if self.args.profile:
                            self.run_profile()
            except BudgetExceeded:   # ran out between two of the guarded steps
                pass
        self.policy.recompute_conditioning = False
        skipped = self.result["skipped"]
        for name in self.backends:
            if name not in self.result["results"] and name not in self.result["unavailable"]:
                skipped.setdefault(name, "time budget spent before its turn")
        if baseline is not None and "conditioning_cache" not in self.result:
            skipped.setdefault("conditioning_cache", "time budget spent before its turn")
        if self.args.profile and baseline is not None and "profile" not in self.result:
            skipped.setdefault("profile", "time budget spent before its turn")

    def run_backend(self, name: str) -> None:
        from motus_ros.motus.backends import BackendUnavailable

        a, result = self.args, self.result
        reason = _unavailable_here(name, a.device)
        if reason:
            self.log(reason)
            result["unavailable"][name] = reason
            return
        if not self.budget.allows(MIN_START_S):
            result["skipped"][name] = f"time budget: {self.budget.left():.0f} s left when its turn came"
            return
        _sync(a.device)
        t0 = time.perf_counter()
        try:
            self.log(f"{name}: setting up")
            _set_backend(self.policy, name, a)
        except (BackendUnavailable, ValueError) as exc:
            self.log(str(exc))
            result["unavailable"][name] = str(exc)
            return
        except BudgetExceeded:
            result["skipped"][name] = f"time budget ran out during its set-up ({time.perf_counter() - t0:.0f} s in)"
            return
        entry = {"setup": {**self.policy.backend.describe(), "setup_s": time.perf_counter() - t0}, "modes": {}}
        for mode in self.modes:
            if not self.budget.allows(MIN_START_S if not entry["modes"] else 0.0):
                entry.setdefault("skipped_modes", {})[mode] = f"time budget: {self.budget.left():.0f} s left"
                continue
            self.log(f"{name}: {mode}")
            reset = _reset_peak_memory(a.device)
            resident = _cuda_memory(a.device)
            t1 = time.perf_counter()
            try:
                timed = self.time_mode(mode)
            except BudgetExceeded:
                entry.setdefault("skipped_modes", {})[mode] = (
                    f"time budget ran out during its warm-up or timing ({time.perf_counter() - t1:.0f} s in)")
                break
            timed["peak_memory_mb"] = _peak_memory_mb(a.device)
            timed["peak_memory_is_per_mode"] = reset
            if resident:
                timed["resident_before_mb"] = resident["allocated_mb"]
                timed["device_used_mb"] = _cuda_memory(a.device)["device_used_mb"]
            timed["wall_s_incl_warmup"] = time.perf_counter() - t1
            entry["modes"][mode] = timed
            result["results"][name] = entry
            self.report.save()
        if not entry["modes"]:
            result["skipped"].setdefault(name, next(iter(entry.get("skipped_modes", {}).values()), "no mode ran"))
            return
        first_mode = next(iter(entry["modes"].values()))
        entry["time_to_first_chunk_s"] = entry["setup"]["setup_s"] + first_mode["first_chunk_s"]
        entry["time_to_first_chunk_incl_model_build_s"] = entry["time_to_first_chunk_s"] + self.model_build_s
        entry["peak_memory_mb"] = max(m["peak_memory_mb"] for m in entry["modes"].values())
        entry["peak_memory_is_per_backend"] = all(m["peak_memory_is_per_mode"] for m in entry["modes"].values())
        self.report.save()

    def run_recompute(self, name: str) -> None:
        """The official behaviour on the baseline backend: VLM, text and condition latents at every step."""
        base = self.result["results"][name]["modes"]
        mode = "vla" if "vla" in self.modes or not self.modes else self.modes[0]
        if not self.budget.allows(MIN_START_S):
            self.result["skipped"]["conditioning_cache"] = f"time budget: {self.budget.left():.0f} s left"
            return
        try:
            if mode in base and not base[mode]["truncated_by_budget"]:
                cached = base[mode]
            else:
                self.log(f"{name}: {mode}, conditioning cached")
                cached = self.time_mode(mode)
            self.log(f"{name}: {mode}, conditioning recomputed at every step")
            self.policy.recompute_conditioning = True
            reset = _reset_peak_memory(self.args.device)
            recomputed = self.time_mode(mode)
        except BudgetExceeded:
            self.result["skipped"]["conditioning_cache"] = "time budget ran out during the recompute baseline"
            return
        finally:
            self.policy.recompute_conditioning = False
        self.result["conditioning_cache"] = {
            "backend": name, "mode": mode, "cached_median_s": cached["latency_median_s"],
            "cached_p90_s": cached["latency_p90_s"],
            "recompute_every_step_median_s": recomputed["latency_median_s"],
            "recompute_every_step_p90_s": recomputed["latency_p90_s"],
            "recompute_every_step_first_chunk_s": recomputed["first_chunk_s"],
            "recompute_repeats_done": recomputed["repeats_done"],
            "recompute_truncated_by_budget": recomputed["truncated_by_budget"],
            "recompute_peak_memory_mb": _peak_memory_mb(self.args.device), "peak_memory_is_per_mode": reset,
            "speedup": recomputed["latency_median_s"] / max(cached["latency_median_s"], 1e-12)}
        self.report.save()

    def run_profile(self) -> None:
        if not self.budget.allows(MIN_START_S):
            self.result["skipped"]["profile"] = f"time budget: {self.budget.left():.0f} s left"
            return
        policy = self.policy
        self.log(f"{policy.backend_name}: profiling one VLA chunk")
        obs = self.observation("vla")
        try:
            if "vla" not in self.result["results"][policy.backend_name]["modes"]:
                _timed_infer(policy, obs, self.args.device)   # warm: the profile is of a steady-state chunk
            self.result["profile"] = _profile_chunk(policy, obs, self.args.device, self.args.profile)
        except BudgetExceeded:
            self.result["skipped"]["profile"] = "time budget ran out while profiling"
        self.report.save()

    def finish(self) -> int:
        """Speedups and the backward-compatible summary; prints the JSON. 2 when no backend ran."""
        result = self.result
        ran = list(result["results"])
        result["finished"] = True
        # The bench path must not need ROS (GPU machines have none): record whether rclpy got imported.
        result["rclpy_imported"] = "rclpy" in sys.modules
        if not ran:
            self.report.save()
            print(f"motus-ros bench policy: error: no backend could run ({', '.join(self.backends)})", file=sys.stderr)
            return 2
        base = result["results"][ran[0]]["modes"]
        for name in ran:
            modes = result["results"][name]["modes"]
            result["results"][name]["speedup_vs_baseline"] = {
                m: base[m]["latency_median_s"] / max(modes[m]["latency_median_s"], 1e-12) for m in modes if m in base}
        # Backward-compatible summary of the baseline backend.
        result["baseline"] = result["backend"] = ran[0]
        result["modes"] = base
        result["peak_memory_mb"] = max(r.get("peak_memory_mb", 0.0) for r in result["results"].values())
        result["parameters"] = self.policy.model.parameter_counts()
        self.report.save()
        print(json.dumps(result, indent=2))
        return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    for name, least in (("repeats", 1), ("warmup", 0)):
        if getattr(args, name) < least:
            print(f"motus-ros bench policy: error: --{name}={getattr(args, name)}, expected >= {least}",
                  file=sys.stderr)
            return 2
    if args.budget_s is not None and args.budget_s <= 0:
        print(f"motus-ros bench policy: error: --budget-s={args.budget_s}, expected > 0", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)   # counts from here: imports and the model build are part of the run
    try:
        bench = PolicyBench(args, argv, budget)
    except ValueError as exc:
        print(f"motus-ros bench policy: error: {exc}", file=sys.stderr)
        return 2
    bench.run()
    return bench.finish()
