"""Evaluation report of a trained Motus: closed-loop episodes in simulation + offline metrics.

Pure module (numpy, torch; no ROS): the episode records come from `motus-ros eval`
(motus_ros/commands/eval.py), which runs the real ROS graph.

Closed loop (per episode): success (gym-aloha reward reached its maximum 4, ACT's criterion),
max reward, return (sum of the 50 Hz per-step reward, estimated from /sim/reward samples: mean
sample x control steps elapsed), chunk latencies (ActionChunk.inference_latency).
Offline, on held-out converted episodes:
  - IDM action MSE (arXiv 2512.13030's IDM metric): actions inferred from the real future frames
    (video clean, actions 1 -> 0) vs the recorded actions, normalised units ([0, 1] min/max).
  - VLA action MSE: the same with the future video held at noise (what the policy does).
  - WM frame error: frames predicted from the real actions (actions clean, video 1 -> 0) vs the real
    future frames, PSNR (dB) and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, on 0..255 luma), plus the same for the autoencoder's own reconstruction
    (the ceiling the world model can reach through it) and the PSNR of simply repeating the condition
    frame (the floor a useful world model must beat).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

SSIM_K1, SSIM_K2, SSIM_WINDOW, SSIM_SIGMA = 0.01, 0.03, 11, 1.5
PIXEL_MAX = 255.0
CONTROL_DT = 0.02   # s, gym-aloha control step (motus_ros.sim.world.CONTROL_DT)


@dataclass
class EpisodeResult:
    index: int
    seed: int | None
    success: bool
    max_reward: float
    reward_samples: list[float] = field(default_factory=list)
    sim_duration_s: float = 0.0
    wall_duration_s: float = 0.0
    chunks: int = 0
    reset_message: str = ""

    @property
    def episode_return(self) -> float:
        """Sum of the per-control-step reward, estimated from the sampled rewards."""
        if not self.reward_samples:
            return 0.0
        return float(np.mean(self.reward_samples)) * self.sim_duration_s / CONTROL_DT

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("reward_samples")
        d["return"] = round(self.episode_return, 2)
        d["reward_samples"] = len(self.reward_samples)
        return d


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, int(math.ceil(q * len(ordered))) - 1))])


def spread(values) -> dict | None:
    """count / median / p90 / max of a list of seconds (None when empty)."""
    values = [float(v) for v in values]
    if not values:
        return None
    return {"count": len(values), "median": statistics.median(values), "p90": percentile(values, 0.9),
            "max": max(values)}


def summarize(results: list[EpisodeResult], latencies: list[float], meta: dict) -> dict:
    """The closed-loop part of the report."""
    n = len(results)
    successes = sum(r.success for r in results)
    return {
        **meta,
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n if n else 0.0,
        "mean_return": float(np.mean([r.episode_return for r in results])) if n else 0.0,
        "mean_max_reward": float(np.mean([r.max_reward for r in results])) if n else 0.0,
        "chunk_latency_s": spread(latencies),
        "per_episode": [r.to_dict() for r in results],
    }


# Image metrics ---------------------------------------------------------------------------------------
def mse(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean squared error of two uint8-range images (or stacks of them), in float64."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(real, np.float64)) ** 2))


def finite_mean(values) -> float:
    """Mean of the finite values (PSNR of identical frames is inf); inf when there are none."""
    kept = [float(v) for v in values if math.isfinite(v)]
    return float(np.mean(kept)) if kept else float("inf")


def psnr(pred: np.ndarray, real: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of uint8-range images; inf when identical."""
    err = mse(pred, real)
    return float("inf") if err == 0 else 10.0 * math.log10(PIXEL_MAX ** 2 / err)


def _luma(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, np.float64)
    return img if img.ndim == 2 else img @ np.array([0.299, 0.587, 0.114])


def ssim(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean SSIM of two HxW(x3) images in 0..255 (luma), Gaussian window."""
    import cv2

    x, y = _luma(pred), _luma(real)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes {x.shape} and {y.shape}, expected equal")
    c1, c2 = (SSIM_K1 * PIXEL_MAX) ** 2, (SSIM_K2 * PIXEL_MAX) ** 2

    def blur(a):
        return cv2.GaussianBlur(a, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def to_uint8(frames) -> np.ndarray:
    """Model pixels in [-1, 1] (any leading dims, channels-first) -> uint8 channels-last."""
    x = np.clip((np.asarray(frames, np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    return np.moveaxis(x, -3, -1)


# Offline metrics ---------------------------------------------------------------------------------------
def offline_metrics(model, dataset, episode_ids: list[int], max_windows: int = 16, steps: int | None = None,
                    seed: int = 0, batch_size: int = 2, progress: bool = True) -> dict:
    """IDM / VLA action MSE and WM PSNR / SSIM on windows of the given (held-out) episodes."""
    import sys

    import torch
    from tqdm import tqdm

    from motus_ros.training import dataset as ds

    cfg = model.config
    wins = ds.windows(dataset, episode_ids)
    if max_windows > 0 and len(wins) > max_windows:
        pick = np.linspace(0, len(wins) - 1, max_windows).round().astype(int)
        wins = [wins[i] for i in pick]
    if not wins:
        return {"windows": 0}
    g = torch.Generator().manual_seed(seed)
    device = model.device
    sq = {"idm": 0.0, "vla": 0.0}
    count = 0
    psnrs, ssims, ae_psnrs, ae_ssims, copy_psnrs, copy_ssims = [], [], [], [], [], []
    frame_index: list[int] = []       # which future frame (0 = +1/video rate) each entry above is
    for start in tqdm(range(0, len(wins), batch_size), desc="offline", disable=not progress, file=sys.stderr):
        batch = [ds.window_arrays(dataset, w, cfg) for w in wins[start: start + batch_size]]
        instr = [dataset.episodes[w.episode].task for w in wins[start: start + batch_size]]
        frames = torch.from_numpy(np.stack([b["frames"] for b in batch])).to(device)      # [B,3,1+F,H,W]
        state = torch.from_numpy(np.stack([b["state"] for b in batch])).to(device)
        actions = torch.from_numpy(np.stack([b["actions"] for b in batch])).to(device)
        images, future = frames[:, :, 0], frames[:, :, 1:]
        for mode in ("idm", "vla"):
            out = model.generate(images, state, instr, mode=mode, steps=steps, future_frames=future, generator=g)
            sq[mode] += float(((out.actions.clamp(0, 1) - actions) ** 2).sum())
        count += actions.numel()
        wm = model.generate(images, state, instr, mode="wm", steps=steps, actions=actions, generator=g)
        with torch.no_grad():
            recon = model.decode_latents(model.encode_frames(frames))[:, :, 1:]
        real = to_uint8(future.cpu().numpy().transpose(0, 2, 1, 3, 4))                  # [B,F,H,W,3]
        pred = to_uint8(wm.frames.cpu().numpy().transpose(0, 2, 1, 3, 4))
        rec = to_uint8(recon.cpu().numpy().transpose(0, 2, 1, 3, 4))
        cond = to_uint8(images.cpu().numpy())                                            # [B,H,W,3]
        for b in range(real.shape[0]):
            for f in range(real.shape[1]):
                psnrs.append(psnr(pred[b, f], real[b, f]))
                ssims.append(ssim(pred[b, f], real[b, f]))
                ae_psnrs.append(psnr(rec[b, f], real[b, f]))
                ae_ssims.append(ssim(rec[b, f], real[b, f]))
                copy_psnrs.append(psnr(cond[b], real[b, f]))
                copy_ssims.append(ssim(cond[b], real[b, f]))
                frame_index.append(f)

    return {"windows": len(wins), "steps": steps or cfg.num_inference_steps,
            "idm_action_mse": sq["idm"] / count, "vla_action_mse": sq["vla"] / count,
            "wm_psnr_db": finite_mean(psnrs), "wm_ssim": float(np.mean(ssims)),
            "autoencoder_psnr_db": finite_mean(ae_psnrs), "autoencoder_ssim": float(np.mean(ae_ssims)),
            "copy_condition_frame_psnr_db": finite_mean(copy_psnrs),
            "copy_condition_frame_ssim": float(np.mean(copy_ssims)),
            "per_future_frame": per_future_frame(frame_index, psnrs, ssims, copy_psnrs, copy_ssims, ae_psnrs,
                                                 ae_ssims, cfg.num_future_frames, dataset.video_rate_hz),
            "units": "actions normalised to [0, 1] per dimension (dataset min/max); PSNR dB and SSIM on 0..255"}


def per_future_frame(frame_index, psnrs, ssims, copy_psnrs, copy_ssims, ae_psnrs, ae_ssims,
                     num_future: int, rate_hz: float) -> list[dict]:
    """World-model quality per future frame (+1/rate ... +F/rate s) beside the copy-the-condition-
    frame baseline and the autoencoder ceiling: where in the horizon a prediction stops helping."""
    idx = np.asarray(frame_index)

    def mean_at(values, f, finite=False):
        v = np.asarray(values, dtype=np.float64)[idx == f]
        if finite:
            v = v[np.isfinite(v)]
        return round(float(v.mean()), 3) if v.size else None

    return [{"frame": f + 1, "time_s": round((f + 1) / rate_hz, 3),
             "wm_psnr_db": mean_at(psnrs, f, True), "wm_ssim": mean_at(ssims, f),
             "copy_psnr_db": mean_at(copy_psnrs, f, True), "copy_ssim": mean_at(copy_ssims, f),
             "autoencoder_psnr_db": mean_at(ae_psnrs, f, True), "autoencoder_ssim": mean_at(ae_ssims, f)}
            for f in range(num_future)]


__all__ = ["EpisodeResult", "finite_mean", "mse", "offline_metrics", "per_future_frame", "percentile", "psnr",
           "spread", "ssim", "summarize"]
