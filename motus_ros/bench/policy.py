"""`motus-ros bench policy`: latency of one chunk per inference mode, peak memory, and the speedup of
computing the step-invariant conditioning (VLM, text, condition frame) once per call against
recomputing it at every denoising step as the official release does. Prints JSON.

`--backend torch,torch_compile,onnxruntime` times every listed backend in the same run on the same
weights and observations (the first one is the baseline of `speedup_vs_baseline`): per backend and
mode median/p90 latency per chunk, throughput (chunks/s) and peak memory (CPU: the process's peak
RSS, reset before each backend through /proc/self/clear_refs where Linux allows it; CUDA: torch's
peak allocation, reset per backend). A backend this machine cannot run is reported under
`unavailable` with the reason; the exit status is 2 when none could run.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

HELP = "Motus policy latency per mode and conditioning-cache speedup (JSON)"
BACKENDS = ("torch", "torch_compile", "onnxruntime", "tensorrt")


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


def _reset_peak_memory(device: str) -> bool:
    """Reset the peak counter; False where the OS keeps the process-lifetime peak."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:   # "5": reset the peak RSS (VmHWM), Linux >= 4.0
            f.write("5")
        return True
    except OSError:
        return False


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024                      # kB -> MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def _time_mode(policy, obs, repeats: int) -> dict:
    policy.infer(obs)  # warm-up (allocations, text cache, compilation)
    lat, cond, den = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = policy.infer(obs)
        lat.append(time.perf_counter() - t0)
        cond.append(out["timing"]["conditioning_s"])
        den.append(out["timing"]["denoise_s"])
    median = statistics.median(lat)
    return {"latency_median_s": median, "latency_p90_s": _percentile(lat, 0.9),
            "throughput_chunks_per_s": 1.0 / max(median, 1e-12),
            "conditioning_median_s": statistics.median(cond), "denoise_median_s": statistics.median(den)}


def _parse_backends(text: str) -> list[str]:
    from motus_ros.motus.backends import check_backend

    names = [check_backend(b) for b in text.split(",") if b.strip()]
    if not names:
        raise ValueError(f"--backend '{text}': expected a comma-separated list of {', '.join(BACKENDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--backend '{text}': a backend is listed twice")
    return names


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="motus-ros bench policy", description=HELP)
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, paper (default tiny)")
    p.add_argument("--backend", default="torch",
                   help=f"comma-separated backends, the first is the baseline; available: {', '.join(BACKENDS)}")
    p.add_argument("--modes", default="vla,wm,idm,vgm,joint", help="comma-separated modes (default all five)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks per mode (default 5)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's, 10)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", default="auto", help="auto (fp32 on CPU, bf16 on recent GPUs), fp32, bf16, fp16")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch and ONNX Runtime (0: their defaults); on a shared CPU use 1, since "
                        "busy-waiting OpenMP threads of compiled kernels stall when cores are taken")
    args = p.parse_args(argv)
    if args.repeats < 1:
        print(f"motus-ros bench policy: error: --repeats={args.repeats}, expected >= 1", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from motus_ros.motus.backends import BackendUnavailable
    from motus_ros.motus.model import check_mode
    from motus_ros.policy.runtime import MotusPolicy

    try:
        backends = _parse_backends(args.backend)
        modes = [check_mode(m) for m in args.modes.split(",") if m.strip()]
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        policy = MotusPolicy(preset=args.preset, device=args.device, steps=args.steps, precision=args.precision)
    except ValueError as exc:
        print(f"motus-ros bench policy: error: {exc}", file=sys.stderr)
        return 2
    cfg = policy.config
    rng = np.random.default_rng(0)
    observations = {m: _observation(rng, m, cfg.chunk_size, cfg.num_future_frames) for m in modes}
    result = {"benchmark": "policy", "preset": args.preset, "backend": backends[0], "backends": backends,
              "baseline": backends[0], "device": args.device, "steps": policy.steps, "repeats": args.repeats,
              "torch_threads": torch.get_num_threads(), "chunk": cfg.chunk_size,
              "video_size": [cfg.video_height, cfg.video_width], "results": {}, "unavailable": {}}
    first = None
    for name in backends:
        reset = _reset_peak_memory(args.device)
        t0 = time.perf_counter()
        try:
            print(f"motus-ros bench policy: {name}: setting up", file=sys.stderr, flush=True)
            policy.set_backend(name, precision=args.precision, close_previous=False, threads=args.threads)
        except (BackendUnavailable, ValueError) as exc:
            print(f"motus-ros bench policy: {exc}", file=sys.stderr)
            result["unavailable"][name] = str(exc)
            continue
        entry = {"setup": {**policy.backend.describe(), "setup_s": time.perf_counter() - t0}, "modes": {}}
        for mode in modes:
            print(f"motus-ros bench policy: {name}: {mode}", file=sys.stderr, flush=True)
            t1 = time.perf_counter()
            timed = _time_mode(policy, observations[mode], args.repeats)
            timed["peak_memory_mb"] = _peak_memory_mb(args.device)
            timed["wall_s_incl_warmup"] = time.perf_counter() - t1
            entry["modes"][mode] = timed
        entry["peak_memory_mb"] = _peak_memory_mb(args.device)
        entry["peak_memory_is_per_backend"] = reset
        result["results"][name] = entry
        if first is None:
            first = policy.backend     # kept for the conditioning-cache comparison below
    ran = list(result["results"])
    if not ran:
        print(f"motus-ros bench policy: error: no backend could run ({', '.join(backends)})", file=sys.stderr)
        return 2
    base = result["results"][ran[0]]["modes"]
    result["baseline"] = ran[0]
    for name in ran:
        modes_b = result["results"][name]["modes"]
        result["results"][name]["speedup_vs_baseline"] = {
            m: base[m]["latency_median_s"] / max(modes_b[m]["latency_median_s"], 1e-12) for m in modes}
    # Backward-compatible summary of the baseline backend.
    result["backend"] = ran[0]
    result["modes"] = base
    # Baseline in the same run: recompute VLM/text/condition latents at every step (official behaviour).
    policy.backend, policy.backend_name = first, ran[0]
    cache_mode = "vla" if "vla" in modes or not modes else modes[0]
    obs = _observation(rng, cache_mode, cfg.chunk_size, cfg.num_future_frames)
    cached = _time_mode(policy, obs, args.repeats)
    policy.recompute_conditioning = True
    recomputed = _time_mode(policy, obs, args.repeats)
    policy.recompute_conditioning = False
    result["conditioning_cache"] = {
        "backend": ran[0], "mode": cache_mode, "cached_median_s": cached["latency_median_s"],
        "recompute_every_step_median_s": recomputed["latency_median_s"],
        "speedup": recomputed["latency_median_s"] / max(cached["latency_median_s"], 1e-12)}
    result["peak_memory_mb"] = max(r["peak_memory_mb"] for r in result["results"].values())
    result["parameters"] = policy.model.parameter_counts()
    print(json.dumps(result, indent=2))
    return 0
