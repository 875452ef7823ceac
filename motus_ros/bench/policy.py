"""`motus-ros bench policy`: latency of one chunk per inference mode, peak memory, and the speedup of
computing the step-invariant conditioning (VLM, text, condition frame) once per call against
recomputing it at every denoising step as the official release does. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

HELP = "Motus policy latency per mode and conditioning-cache speedup (JSON)"
BACKENDS = ("torch",)  # later: torch_compile, onnxruntime, tensorrt


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


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def _time_mode(policy, obs, repeats: int) -> dict:
    policy.infer(obs)  # warm-up (allocations, text cache)
    lat, cond, den = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = policy.infer(obs)
        lat.append(time.perf_counter() - t0)
        cond.append(out["timing"]["conditioning_s"])
        den.append(out["timing"]["denoise_s"])
    return {"latency_median_s": statistics.median(lat), "latency_p90_s": _percentile(lat, 0.9),
            "conditioning_median_s": statistics.median(cond), "denoise_median_s": statistics.median(den)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="motus-ros bench policy", description=HELP)
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, paper (default tiny)")
    p.add_argument("--backend", default="torch", help=f"inference backend; available: {', '.join(BACKENDS)}")
    p.add_argument("--modes", default="vla,wm,idm,vgm,joint", help="comma-separated modes (default all five)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks per mode (default 5)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's, 10)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = p.parse_args(argv)
    if args.backend not in BACKENDS:
        print(f"motus-ros bench policy: error: backend '{args.backend}' is not available; expected one of "
              f"{', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"motus-ros bench policy: error: --repeats={args.repeats}, expected >= 1", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from motus_ros.motus.model import check_mode
    from motus_ros.policy.runtime import MotusPolicy

    try:
        modes = [check_mode(m) for m in args.modes.split(",") if m.strip()]
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        policy = MotusPolicy(preset=args.preset, device=args.device, steps=args.steps)
    except ValueError as exc:
        print(f"motus-ros bench policy: error: {exc}", file=sys.stderr)
        return 2
    cfg = policy.config
    rng = np.random.default_rng(0)
    result = {"benchmark": "policy", "preset": args.preset, "backend": args.backend, "device": args.device,
              "steps": policy.steps, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "chunk": cfg.chunk_size, "video_size": [cfg.video_height, cfg.video_width], "modes": {}}
    for mode in modes:
        result["modes"][mode] = _time_mode(policy, _observation(rng, mode, cfg.chunk_size, cfg.num_future_frames),
                                           args.repeats)
    # Baseline in the same run: recompute VLM/text/condition latents at every step (official behaviour).
    cache_mode = "vla" if "vla" in modes or not modes else modes[0]
    obs = _observation(rng, cache_mode, cfg.chunk_size, cfg.num_future_frames)
    cached = _time_mode(policy, obs, args.repeats)
    policy.recompute_conditioning = True
    recomputed = _time_mode(policy, obs, args.repeats)
    policy.recompute_conditioning = False
    result["conditioning_cache"] = {
        "mode": cache_mode, "cached_median_s": cached["latency_median_s"],
        "recompute_every_step_median_s": recomputed["latency_median_s"],
        "speedup": recomputed["latency_median_s"] / max(cached["latency_median_s"], 1e-12)}
    result["peak_memory_mb"] = _peak_memory_mb(args.device)
    result["parameters"] = policy.model.parameter_counts()
    print(json.dumps(result, indent=2))
    return 0
