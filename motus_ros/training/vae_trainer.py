"""Training of the learned video autoencoder (motus/video_ae.py) on converted episodes.

Samples are what the model encodes: groups of `temporal` consecutive frames of a train-split
episode (groups running past the end repeat the last frame, as training windows do), and, as often
as a window has a condition frame among its latent frames, one frame repeated `temporal` times
(the first-frame group). Frames are resized to the model's video size (dataset.window_arrays'
resize). Optionally a random crop aligned to the spatial factor keeps a CPU step short; evaluation
always runs on whole frames.

Loss: L1 + MSE of the reconstruction from the posterior mean, plus kl_weight x the KL divergence
of the posterior per latent element (keeps the latent scale bounded; the model later sees
normalised latents anyway). AdamW, linear warm-up, cosine decay to min_lr_ratio at `steps`;
the resumable loop and checkpoint-last/ are training/step_loop.py's.

Held-out report: windows of the val-split episodes (1 condition + future_frames frames, padded at
the end as training windows are) go through encode -> decode exactly as the model calls them;
PSNR / SSIM (training.evaluation) over the future frames, the condition frame reported apart,
and the parameter-free PatchAutoencoder on the same frames as the baseline. `heldout` names a
second converted dataset whose every episode is held out (e.g. sim episodes of another seed).

Outputs in `out/`:
  config.json, model.safetensors   the autoencoder (video_ae.save_video_ae), latent statistics over
                                   stats_groups training groups, the training record under "training"
  checkpoint-last/                 weights (no statistics) + training_state.pt: `--resume`
  metrics.json                     loss per step, evaluations
  reconstruction.png               one held-out window: real future frames above, reconstructions below
"""
from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from motus_ros.motus.video_ae import LearnedVideoAE, autoencoder_kl_config, load_video_ae, save_video_ae
from motus_ros.policy.transforms import resize_image

from . import dataset as ds
from .evaluation import psnr, ssim, to_uint8
# The resumable loop; checkpoint-last/ and training_state.pt as `motus-ros train` names them.
from .step_loop import LAST, STATE_FILE, StepLoop  # noqa: F401  (LAST, STATE_FILE: also named from here)

PREVIEW_FILE = "reconstruction.png"
PATCH_BASELINE = {"spatial": 16, "temporal": 4, "channels": 48}   # the small preset's PatchAutoencoder


@dataclass
class VaeTrainConfig:
    data: str
    out: str
    steps: int = 2000
    batch_size: int = 8               # groups per step
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    kl_weight: float = 1e-6
    seed: int = 0
    resume: str = ""
    save_every: int = 200             # checkpoint-last and a held-out evaluation every N steps
    max_minutes: float = 0.0          # 0 = no wall-clock cap; else stop (and save) after this long
    # Architecture (a resumed run keeps its checkpoint's).
    height: int = 192                 # pixels: the model's video_height / video_width
    width: int = 160
    temporal: int = 1                 # frames per latent after the first (vae_temporal; see models/sim_video_ae)
    patch: int = 4                    # pixel-unshuffle before the AutoencoderKL
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 48
    linear_path: bool = True          # PCA-initialised linear patch code beside the AutoencoderKL
    linear_fit_groups: int = 256      # whole-frame training groups the PCA is fitted on
    linear_lr_scale: float = 0.1      # the linear path's learning rate relative to lr
    crop: tuple[int, int] = (0, 0)    # training crop (height, width) in pixels; 0 = whole frames
    # Evaluation.
    future_frames: int = 8            # future frames per held-out window (num_future_frames)
    val_windows: int = 32             # evenly spaced held-out windows (0 = all)
    heldout: str = ""                 # another converted dataset, all episodes held out
    heldout_windows: int = 0          # evenly spaced windows of `heldout` evaluated (0 = all)
    stats_groups: int = 256           # training groups the latent statistics are measured on
    command: str = ""                 # recorded in the training record
    progress: bool = True

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.crop = tuple(int(c) for c in self.crop)


def check_config(cfg: VaeTrainConfig) -> None:
    """ValueError naming the field for values the loop cannot use."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(msg)
    for name in ("batch_size", "temporal", "patch", "latent_channels", "layers_per_block"):
        need(getattr(cfg, name) >= 1, f"{name}: got {getattr(cfg, name)}, expected >= 1")
    need(cfg.steps >= 0, f"steps: got {cfg.steps}, expected >= 0")
    need(cfg.lr > 0, f"lr: got {cfg.lr}, expected > 0")
    need(cfg.kl_weight >= 0, f"kl_weight: got {cfg.kl_weight}, expected >= 0")
    need(cfg.save_every >= 1, f"save_every: got {cfg.save_every}, expected >= 1")
    spatial = cfg.patch * 2 ** (len(cfg.channels) - 1)
    need(cfg.height % spatial == 0 and cfg.width % spatial == 0,
         f"height x width: got {cfg.height}x{cfg.width}, expected multiples of the spatial factor {spatial} "
         f"(patch {cfg.patch} x 2^{len(cfg.channels) - 1})")
    need(cfg.future_frames % cfg.temporal == 0,
         f"future_frames: got {cfg.future_frames}, expected a multiple of temporal={cfg.temporal}")
    ch, cw = cfg.crop
    need((ch, cw) == (0, 0) or (0 < ch <= cfg.height and 0 < cw <= cfg.width and ch % spatial == 0
                                 and cw % spatial == 0),
         f"crop: got {ch}x{cw}, expected 0x0 (whole frames) or multiples of {spatial} within {cfg.height}x{cfg.width}")


# Frames ---------------------------------------------------------------------------------------------
class FrameStore:
    """uint8 frames (H,W,3) at the model's video size of some episodes, all in memory."""

    def __init__(self, dataset: ds.Dataset, episode_ids: list[int], height: int, width: int):
        self.names = [dataset.episodes[i].name for i in episode_ids]
        self.frames = [np.stack([resize_image(f, height, width) for f in dataset.episodes[i].frames])
                       for i in episode_ids]                                   # each (F,H,W,3) uint8
        self.counts = np.asarray([len(f) for f in self.frames], dtype=np.int64)

    @property
    def total_frames(self) -> int:
        return int(self.counts.sum())

    def window(self, episode: int, anchor: int, future: int) -> np.ndarray:
        """(1+future, H, W, 3) uint8: condition frame + future frames, the tail padded."""
        idx = np.minimum(np.arange(anchor, anchor + future + 1), self.counts[episode] - 1)
        return self.frames[episode][idx]


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-1, 1] (policy.transforms.to_model_pixels)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(frames, -1, -3))).float() / 127.5 - 1.0


def sample_groups(store: FrameStore, n: int, temporal: int, first_share: float, crop: tuple[int, int],
                  spatial: int, g: torch.Generator) -> torch.Tensor:
    """n training groups [n, temporal*3, h, w] in [-1, 1] (see the module docstring)."""
    weights = torch.from_numpy(store.counts.astype(np.float64))
    eps = torch.multinomial(weights, n, replacement=True, generator=g).tolist()  # episodes by frame count
    out = []
    for e in eps:
        count = int(store.counts[e])
        if float(torch.rand((), generator=g)) < first_share:
            idx = [int(torch.randint(count, (), generator=g))] * temporal          # first-frame group
        else:
            start = int(torch.randint(1, max(2, count), (), generator=g))
            idx = [min(start + k, count - 1) for k in range(temporal)]
        out.append(store.frames[e][idx])                                        # [temporal,H,W,3]
    x = np.stack(out)                                                           # [n,temporal,H,W,3]
    if crop != (0, 0):
        h, w = x.shape[2:4]
        ys = torch.randint(0, (h - crop[0]) // spatial + 1, (n,), generator=g).tolist()
        xs = torch.randint(0, (w - crop[1]) // spatial + 1, (n,), generator=g).tolist()
        x = np.stack([x[i, :, y * spatial: y * spatial + crop[0], c * spatial: c * spatial + crop[1]]
                      for i, (y, c) in enumerate(zip(ys, xs))])
    return to_pixels(x).flatten(1, 2)                                           # [n,temporal*3,h,w]


# Loss and statistics ------------------------------------------------------------------------------
def reconstruction_loss(ae: LearnedVideoAE, groups: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
    """L1 + MSE of the reconstruction from the posterior mean, + kl_weight x KL per latent element."""
    posterior = ae.encode_groups(groups)
    recon = ae.decode_groups(posterior.mode())
    l1, mse = F.l1_loss(recon, groups), F.mse_loss(recon, groups)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return {"loss": l1 + mse + kl_weight * kl, "l1": l1, "mse": mse, "kl": kl}


@torch.no_grad()
def latent_statistics(ae: LearnedVideoAE, store: FrameStore, groups: int, seed: int, first_share: float,
                      batch: int = 16) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior mean over `groups` whole-frame training groups
    (first-frame groups in the share the model sees them)."""
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(ae.latent_channels, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, groups, batch):
        x = sample_groups(store, min(batch, groups - start), ae.temporal, first_share, (0, 0), ae.spatial, g)
        z = ae.encode_groups(x).mode().double()                                 # [n,C,h,w]
        total += z.sum((0, 2, 3))
        total_sq += (z * z).sum((0, 2, 3))
        count += z.shape[0] * z.shape[2] * z.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float().tolist(), std.float().tolist()


# Held-out evaluation ------------------------------------------------------------------------------
def eval_windows(store: FrameStore, count: int) -> list[tuple[int, int]]:
    """(episode, anchor) of `count` evenly spaced windows (every frame anchors one; 0 = all)."""
    wins = [(e, f) for e in range(len(store.frames)) for f in range(int(store.counts[e]))]
    if 0 < count < len(wins):
        wins = [wins[i] for i in np.linspace(0, len(wins) - 1, count).round().astype(int)]
    return wins


@torch.no_grad()
def evaluate(ae: torch.nn.Module, store: FrameStore, wins: list[tuple[int, int]], future: int,
             batch: int = 4) -> dict:
    """PSNR / SSIM of encode -> decode over the future frames of the windows (condition frame apart)."""
    was_training = ae.training
    ae.eval()
    future_psnr, future_ssim, cond_psnr = [], [], []
    for start in range(0, len(wins), batch):
        real = np.stack([store.window(e, f, future) for e, f in wins[start: start + batch]])   # [B,1+F,H,W,3]
        frames = to_pixels(real).transpose(1, 2)                                             # [B,3,1+F,H,W]
        rec = to_uint8(ae.decode(ae.encode(frames)).transpose(1, 2).numpy())                  # [B,1+F,H,W,3]
        for b in range(real.shape[0]):
            cond_psnr.append(psnr(rec[b, 0], real[b, 0]))
            for f in range(1, real.shape[1]):
                future_psnr.append(psnr(rec[b, f], real[b, f]))
                future_ssim.append(ssim(rec[b, f], real[b, f]))
    ae.train(was_training)

    def finite_mean(v):
        v = [x for x in v if math.isfinite(x)]
        return round(float(np.mean(v)), 3) if v else float("inf")

    return {"windows": len(wins), "future_frames": len(future_psnr), "psnr_db": finite_mean(future_psnr),
            "ssim": round(float(np.mean(future_ssim)), 4), "condition_frame_psnr_db": finite_mean(cond_psnr)}


def patch_baseline(store: FrameStore, wins: list[tuple[int, int]], future: int) -> dict | None:
    """The same report for the small preset's parameter-free PatchAutoencoder (None when the frames
    do not fit its geometry)."""
    from motus_ros.motus.encoders import PatchAutoencoder

    h, w = store.frames[0].shape[1:3]
    p = PATCH_BASELINE
    if h % p["spatial"] or w % p["spatial"] or future % p["temporal"]:
        return None
    return evaluate(PatchAutoencoder(p["spatial"], p["temporal"], p["channels"]), store, wins, future)


def save_preview(ae: LearnedVideoAE, store: FrameStore, win: tuple[int, int], future: int, path: Path) -> Path:
    """Real future frames (top row) over their reconstructions (bottom row), one PNG."""
    import cv2

    real = store.window(*win, future)[None]                                                 # [1,1+F,H,W,3]
    with torch.no_grad():
        rec = to_uint8(ae.decode(ae.encode(to_pixels(real).transpose(1, 2))).transpose(1, 2).numpy())
    grid = np.concatenate([np.concatenate(list(real[0, 1:]), 1), np.concatenate(list(rec[0, 1:]), 1)], 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path


# Checkpoints --------------------------------------------------------------------------------------
def _sources(data: ds.Dataset) -> dict:
    """Where a dataset's episodes come from (dataset.json 'source', per-episode seeds kept apart):
    {source: number of episodes}, plus the first and last episode name."""
    entries = json.loads((data.root / "dataset.json").read_text())["episodes"]
    counts: dict[str, int] = {}
    for e in entries:
        key = str(e.get("source", "")).rsplit(" seed ", 1)[0] or str(e.get("robot", ""))
        counts[key] = counts.get(key, 0) + 1
    names = sorted(e["name"] for e in entries)
    return {"by_source": counts, "first": names[0], "last": names[-1]}


def train_vae(cfg: VaeTrainConfig, log=print) -> dict:
    """Run (or resume) an autoencoder training; returns the training record (also in out/config.json)."""
    run = _VaeRun(cfg, log)
    run.loop()
    return run.finish()


class _VaeRun(StepLoop):
    """The steps of train_vae (the loop and checkpoints: step_loop.StepLoop)."""

    name = "train-vae"
    # The architecture and data geometry are the checkpoint's; run-length settings are this call's.
    architecture = ("height", "width", "temporal", "patch", "channels", "layers_per_block", "latent_channels",
                    "linear_path")
    checkpoint_note = "training checkpoint, no statistics"

    def check(self, cfg: VaeTrainConfig) -> None:
        check_config(cfg)

    def build(self, checkpoint: Path | None) -> None:
        cfg = self.cfg
        if checkpoint is not None:
            self.ae = load_video_ae(checkpoint.resolve()).requires_grad_(True)
        else:
            kl = autoencoder_kl_config(cfg.channels, cfg.latent_channels, cfg.temporal, cfg.patch, cfg.layers_per_block)
            self.ae = LearnedVideoAE(kl, cfg.temporal, cfg.patch, linear_path=cfg.linear_path)
        self.ae.train()
        self.model = self.ae

    def param_groups(self) -> list[tuple[list[torch.nn.Parameter], float]]:
        """The linear path learns at linear_lr_scale x lr."""
        linear = [p for n, p in self.ae.named_parameters() if n.startswith("linear_")]
        body = [p for n, p in self.ae.named_parameters() if not n.startswith("linear_")]
        return [(body, 1.0)] + ([(linear, self.cfg.linear_lr_scale)] if linear else [])

    def start(self) -> None:
        if self.ae.linear_path:
            self.fit_linear_path()

    def fit_linear_path(self) -> None:
        """PCA start (LearnedVideoAE.fit_linear_path), then its held-out numbers as step 0."""
        cfg = self.cfg
        t0 = time.perf_counter()
        groups = sample_groups(self.train_store, cfg.linear_fit_groups, cfg.temporal, self.first_share, (0, 0),
                               self.ae.spatial, torch.Generator().manual_seed(cfg.seed + 2))
        explained = self.ae.fit_linear_path(groups)
        self.history["linear_fit"] = {"groups": cfg.linear_fit_groups, "explained_variance": round(explained, 5),
                                      "seconds": round(time.perf_counter() - t0, 1)}
        self.log(f"[train-vae] linear path: principal components of {cfg.linear_fit_groups} groups explain "
                 f"{100 * explained:.2f}% of the patch variance")
        self.evaluate_heldout()

    def load_data(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        data = ds.load_dataset(cfg.data)
        train_ids, val_ids = data.split("train"), data.split("val")
        if not train_ids:
            raise ds.DatasetError(f"{cfg.data}: no episode in the 'train' split")
        self.data_info = {"root": str(Path(cfg.data).resolve()), "episodes": len(data.episodes),
                          "train_episodes": len(train_ids), "val_episodes": len(val_ids), "sources": _sources(data)}
        self.train_store = FrameStore(data, train_ids, cfg.height, cfg.width)
        self.val_store = FrameStore(data, val_ids, cfg.height, cfg.width) if val_ids else None
        self.data_info.update({"train_frames": self.train_store.total_frames,
                               "val_frames": self.val_store.total_frames if self.val_store else 0})
        self.heldout_store = None
        if cfg.heldout:
            held = ds.load_dataset(cfg.heldout)
            self.heldout_store = FrameStore(held, list(range(len(held.episodes))), cfg.height, cfg.width)
            self.data_info["heldout"] = {"root": str(Path(cfg.heldout).resolve()), "episodes": len(held.episodes),
                                         "frames": self.heldout_store.total_frames,
                                         "sources": _sources(held)}
        self.val_wins = eval_windows(self.val_store, cfg.val_windows) if self.val_store else []
        self.log(f"[train-vae] frames {cfg.height}x{cfg.width}: {self.train_store.total_frames} train "
                 f"({len(train_ids)} episodes), {self.data_info['val_frames']} val ({len(val_ids)}) "
                 f"[{time.perf_counter() - t0:.1f} s]")

    # Steps ----------------------------------------------------------------------------------------
    @property
    def first_share(self) -> float:
        """How often a group is a repeated condition frame: 1 of the window's latent frames."""
        return 1.0 / (1 + self.cfg.future_frames // self.cfg.temporal)

    def losses(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x = sample_groups(self.train_store, cfg.batch_size, cfg.temporal, self.first_share, cfg.crop,
                          self.ae.spatial, self.gen)
        return reconstruction_loss(self.ae, x, cfg.kl_weight)

    def evaluate_heldout(self) -> dict:
        if not self.val_wins:
            return {}
        res = {"step": self.step, **evaluate(self.ae, self.val_store, self.val_wins, self.cfg.future_frames)}
        self.history["evaluations"].append(res)
        self.log(f"[train-vae] step {self.step}: val PSNR {res['psnr_db']:.2f} dB, SSIM {res['ssim']:.3f} "
                 f"(future frames of {res['windows']} windows)")
        return res

    def save_weights(self, folder: Path, training: dict) -> None:
        save_video_ae(self.ae, folder, self.cfg.height, self.cfg.width, training)

    # Finish ---------------------------------------------------------------------------------------
    def finish(self) -> dict:
        cfg = self.cfg
        self.save_state()
        self.ae.eval()
        val = self.evaluate_heldout() if self.val_wins else {}
        t0 = time.perf_counter()
        mean, std = latent_statistics(self.ae, self.train_store, cfg.stats_groups, cfg.seed + 1,
                                       self.first_share)
        self.ae.latents_mean.copy_(torch.tensor(mean).view_as(self.ae.latents_mean))
        self.ae.latents_std.copy_(torch.tensor(std).view_as(self.ae.latents_std))
        stats_s = time.perf_counter() - t0
        report: dict = {}
        if self.val_wins:
            report["val"] = {**{k: v for k, v in val.items() if k != "step"},
                             "patch_autoencoder": patch_baseline(self.val_store, self.val_wins, cfg.future_frames)}
        if self.heldout_store is not None:
            wins = eval_windows(self.heldout_store, cfg.heldout_windows)
            report["heldout"] = {**evaluate(self.ae, self.heldout_store, wins, cfg.future_frames),
                                 "patch_autoencoder": patch_baseline(self.heldout_store, wins, cfg.future_frames)}
        kl = self.ae.ae.config
        record = self.record({
            "parameters": {"total": sum(p.numel() for p in self.ae.parameters()),
                           "autoencoder_kl": sum(p.numel() for p in self.ae.ae.parameters())},
            "final_train_loss_last_50_steps": self.final_train_loss(),
            "latent_statistics": {"groups": cfg.stats_groups, "seconds": round(stats_s, 1)},
            "reconstruction": report,
            "metric_note": "PSNR (dB) and SSIM on 0..255 (training.evaluation) of encode -> decode over each "
                           "window's future frames; condition frame reported apart",
            "architecture_note": f"AutoencoderKL blocks {list(kl.block_out_channels)}, patch {self.ae.patch}, "
                                 f"temporal {self.ae.temporal} frames stacked per latent"})
        save_video_ae(self.ae, self.out, cfg.height, cfg.width, record)
        self.write_metrics()
        preview = self.val_store or self.heldout_store
        if preview is not None:
            save_preview(self.ae, preview, eval_windows(preview, 1)[0], cfg.future_frames, self.out / PREVIEW_FILE)
        return record


def command_line(argv: list[str]) -> str:
    """The command as typed, for the training record."""
    return shlex.join(["motus-ros", "train-vae", *argv])


__all__ = ["FrameStore", "VaeTrainConfig", "check_config", "evaluate", "latent_statistics", "patch_baseline",
           "reconstruction_loss", "sample_groups", "train_vae"]
