"""Stage-2 pretraining and stage-3 fine-tuning of Motus on converted episodes (arXiv 2512.13030,
Sec. 4, Tab. 1).

Stages (TrainConfig.stage): 3, the default, fine-tunes on the target robot's joint actions (the
episodes with joint data); 2 pretrains on latent actions, the motion between video frames that
`motus-ros latent-actions label` extracts, so episodes without joint data teach the action expert
too (dataset.py, targets "latent_actions": the state input hidden in every window). Stage 1 (the
video and understanding backbones) is the released weights. A stage-3 run starts from a stage-2
output with `init`; the action expert is shared, so the latent dimension must be the action_dim.

Objective: the joint video + action rectified-flow loss with independently drawn video and action
timesteps (motus.flow.flow_matching_loss): the model config's conventions choose its form,
TrainConfig.loss (motus.flow.LossSettings: timestep parameters, loss weights) its numbers. A run
started from a checkpoint keeps that checkpoint's loss settings unless told otherwise
(starting_loss / resumed_loss); `overrides` (`--set`) change single fields. The frozen encoders'
outputs come from the latent cache (latent_cache.py), so epochs after the first never re-encode
video. HuggingFace accelerate runs the same loop on one CPU or many GPUs (`accelerate launch
motus-ros train ...`); batches are sharded by process in a seeded order, so a run is reproducible
and resumable mid-epoch.

Outputs in `out/`:
  model.safetensors, config.json   final weights (motus.checkpoint format: load_policy(checkpoint=out))
  stats.json                       the normalisation statistics used (load_policy(stats=out/stats.json));
                                   stage 2: latent_action_stats.json instead (its actions are latent)
  checkpoint-last/                 weights + training_state.pt (optimizer, scheduler, step, epoch,
                                   position in the epoch, RNG states, history): `--resume`
  metrics.json                     per-step and per-epoch losses, validation action MSE, timings
  training.json                    summary: stage, hardware, data size, duration, final numbers, tasks,
                                   the loss settings ("loss"; also in "config")
  loss.png                         loss curves (matplotlib, Agg backend)
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from motus_ros.motus.checkpoint import save_checkpoint
from motus_ros.motus.flow import LossSettings, flow_matching_loss
from motus_ros.motus.sampler import FlowMatchEulerSampler

from . import dataset as ds
from .latent_cache import LatentCache, build_or_open

STATE_FILE = "training_state.pt"
SUMMARY_FILE = "training.json"
LAST = "checkpoint-last"
VAL_SEED_OFFSET = 1_000_003    # validation noise is drawn from its own generator: comparable across epochs
STAGES = {2: "latent_actions", 3: "actions"}    # stage -> dataset targets (dataset.py)
STATS_FILE = "stats.json"      # the joint statistics a stage-3 output is run with


@dataclass
class TrainConfig:
    data: str
    out: str
    preset: str = "small"
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    # Parameter-name prefix -> learning-rate multiplier (e.g. {"video.frame_actions.": 10}): a new,
    # zero-initialised path in a trained model otherwise grows at the trained weights' pace.
    lr_scale: dict = field(default_factory=dict)
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_steps: int = 0                # 0 = epochs * batches
    max_minutes: float = 0.0          # 0 = no cap; else stop (and save) after this long of training (the
                                      # latent cache's encoding and the first validation not counted)
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    resume: str = ""
    init: str = ""                    # weights to start from (stage 3 starts from a pretrained Motus)
    cache_dir: str = ""               # default <data>/.latent_cache
    val_windows: int = 64             # validation windows used for the sampled-action MSE (0 = all)
    val_steps: int = 0                # Euler steps of the sampled actions (0 = the preset's)
    save_every: int = 0               # also checkpoint every N steps (0 = at epoch ends only)
    encode_batch: int = 4
    # `--set` items: MotusConfig fields changed from the preset, and LossSettings fields changed from
    # the loss settings below (split by split_overrides).
    overrides: dict = field(default_factory=dict)
    # The training objective's numbers; None = the starting point's: the resumed run's, the --init
    # checkpoint's (starting_loss), or the defaults for a fresh preset. The run records the result here.
    loss: LossSettings | None = None
    progress: bool = True
    # Proprioception augmentation (normalised units, where the dataset's range of a joint is 0..1).
    # Scripted and teleoperated trajectories make the joint state reveal where the arm is heading, so
    # a policy can learn to read its target from the state and ignore the cameras, then fail from
    # the start pose where only the cameras say where the object is. Noise on the state input
    # (and hiding it in a fraction of windows) makes the images the reliable source.
    state_noise: float = 0.0          # std of Gaussian noise added to the state input
    state_dropout: float = 0.0        # probability that a window's state input is replaced by 0.5
    # Numerics of the training forward: "auto" = bf16 autocast on CUDA GPUs that have it (as the
    # official code trains), float32 otherwise; "fp32"; "bf16" (CUDA only). Weights stay float32.
    precision: str = "auto"
    # 3: fine-tune on joint actions; 2: pretrain on latent actions (module docstring).
    stage: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):                 # e.g. rebuilt from a recorded asdict()
            self.loss = LossSettings.from_dict(self.loss)


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """(MotusConfig overrides, LossSettings overrides) of TrainConfig.overrides."""
    names = set(LossSettings.field_names())
    return ({k: v for k, v in overrides.items() if k not in names},
            {k: v for k, v in overrides.items() if k in names})


def check_config(cfg: "TrainConfig") -> None:
    """Clear errors for values the loop cannot use."""
    if cfg.stage not in STAGES:
        raise ValueError(f"stage: got {cfg.stage}, expected one of {sorted(STAGES)} (stage 1 is the released "
                         "video and understanding backbones)")
    if cfg.stage == 2 and (cfg.state_noise or cfg.state_dropout):
        raise ValueError("state_noise / state_dropout: stage 2 hides the state input in every window (latent "
                         "actions have no joint state); they apply to stage 3")
    if cfg.state_noise < 0:
        raise ValueError(f"state_noise: got {cfg.state_noise}, expected >= 0 (normalised units)")
    if not 0.0 <= cfg.state_dropout < 1.0:
        raise ValueError(f"state_dropout: got {cfg.state_dropout}, expected a probability in [0, 1)")
    for prefix, factor in cfg.lr_scale.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
            raise ValueError(f"lr_scale: {prefix}={factor!r}, expected a number > 0")
    if cfg.loss is not None and not isinstance(cfg.loss, LossSettings):
        raise ValueError(f"loss: got {type(cfg.loss).__name__}, expected a LossSettings (or None)")
    LossSettings().replace(**split_overrides(cfg.overrides)[1])     # bad loss values fail before any work
    mixed_precision(cfg.precision, cfg.device)


def param_groups(named: list, lr: float, lr_scale: dict) -> list[dict]:
    """AdamW groups: the parameters under each lr_scale prefix at lr * factor (the first matching
    prefix counts), the rest at lr. A prefix that names no trainable parameter is an error."""
    groups = {prefix: [] for prefix in lr_scale}
    rest = []
    for name, p in named:
        prefix = next((pre for pre in lr_scale if name.startswith(pre)), None)
        (groups[prefix] if prefix is not None else rest).append(p)
    empty = [pre for pre, ps in groups.items() if not ps]
    if empty:
        raise ValueError(f"lr_scale: {empty[0]!r} matches no trainable parameter, expected a parameter-name "
                         "prefix such as 'video.frame_actions.'")
    out = [{"params": rest, "lr": lr}] if rest else []
    return out + [{"params": ps, "lr": lr * float(lr_scale[pre])} for pre, ps in groups.items()]


def mixed_precision(precision: str, device: str) -> str:
    """TrainConfig.precision -> accelerate's mixed_precision ("bf16" or "no")."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision: got '{precision}', expected auto, fp32 or bf16")
    cuda = device != "cpu" and torch.cuda.is_available()
    if precision == "bf16" and not cuda:
        raise ValueError("precision bf16 needs a CUDA device; use fp32 (or auto) on a CPU")
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    return "bf16" if precision == "bf16" else "no"


class FlowObjective(nn.Module):
    """Wraps Motus so the loss runs through forward() (what DDP synchronises)."""

    def __init__(self, model, settings: LossSettings, state_noise: float = 0.0, state_dropout: float = 0.0):
        super().__init__()
        self.model = model
        self.settings = settings
        self.state_noise, self.state_dropout = float(state_noise), float(state_dropout)

    def forward(self, batch: dict, generator: torch.Generator):
        cond = conditioning(self.model, batch)
        state = batch["state"]
        if self.training:
            state = augment_state(state, self.state_noise, self.state_dropout, generator)
        return flow_matching_loss(self.model, batch["latents"], batch["actions"], state, cond, self.settings,
                                  generator=generator)


def augment_state(state: torch.Tensor, noise: float, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """TrainConfig.state_noise / state_dropout applied to a [B, state_dim] normalised state batch."""
    if noise > 0:
        state = state + noise * torch.randn(state.shape, generator=generator).to(state)
    if dropout > 0:
        hidden = torch.rand((state.shape[0], 1), generator=generator).to(state.device) < dropout
        state = torch.where(hidden, torch.full_like(state, 0.5), state)
    return state


def conditioning(model, batch: dict):
    mask = batch["vlm_mask"]
    return model.conditioning_from_features(batch["vlm"], batch["text"], batch["latents"][:, :, :1],
                                            None if bool(mask.all()) else mask)


# Data ----------------------------------------------------------------------------------------------
class WindowTable:
    """Cached encoder outputs + normalised state/actions of a list of windows (the dataset's
    targets: joint actions, or latent actions with the state hidden)."""

    def __init__(self, dataset: ds.Dataset, cache: LatentCache, wins: list[ds.Window], config):
        index = cache.index()
        self.rows = np.asarray([index[w] for w in wins], dtype=np.int64)
        self.cache = cache
        self.state = np.zeros((len(wins), config.state_dim), dtype=np.float32)
        self.actions = np.zeros((len(wins), config.chunk_size, config.action_dim), dtype=np.float32)
        for i, w in enumerate(wins):
            self.state[i], self.actions[i] = ds.window_targets(dataset, w, config)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, items: list[int], device) -> dict[str, torch.Tensor]:
        rows = self.rows[items]
        order = np.argsort(rows)                        # memory-mapped reads in file order
        inv = np.argsort(order)
        latents = np.asarray(self.cache.latents[rows[order]])[inv].astype(np.float32)
        vlm = np.asarray(self.cache.vlm[rows[order]])[inv]
        mask = np.asarray(self.cache.vlm_mask[rows[order]])[inv]
        texts = [self.cache.text[int(t)] for t in self.cache.task[rows]]
        length = max(len(t) for t in texts)
        text = np.zeros((len(texts), length, texts[0].shape[-1]), dtype=np.float32)
        for i, t in enumerate(texts):
            text[i, : len(t)] = t
        keep = int(mask.any(0).nonzero()[0].max()) + 1   # drop columns that are padding in every row
        out = {"latents": latents, "vlm": vlm[:, :keep], "vlm_mask": mask[:, :keep], "text": text,
               "state": self.state[items], "actions": self.actions[items]}
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in out.items()}


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Seeded permutation of n items cut into batches; process `rank` of `world` takes every world-th."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    batches = [perm[i: i + batch_size] for i in range(0, n, batch_size)]
    usable = len(batches) - len(batches) % world if world > 1 and len(batches) >= world else len(batches)
    return batches[:usable][rank::world]


# Schedule ------------------------------------------------------------------------------------------
def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up, then cosine decay to min_ratio of the peak at `total` steps."""
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# Validation ----------------------------------------------------------------------------------------
@torch.no_grad()
def sample_actions_vla(model, batch: dict, steps: int, generator: torch.Generator) -> torch.Tensor:
    """VLA mode from cached conditioning: future video held at noise (t=1), actions 1 -> 0
    (the same loop as Motus.generate, without re-running the frozen encoders)."""
    cfg = model.config
    cond = conditioning(model, batch)
    b = batch["state"].shape[0]
    device = batch["state"].device
    h, w = cfg.latent_size
    future_noise = torch.randn((b, cfg.latent_channels, cfg.latent_frames - 1, h, w), generator=generator).to(device)
    act = torch.randn((b, cfg.chunk_size, cfg.action_dim), generator=generator).to(device)
    video = torch.cat([batch["latents"][:, :, :1], future_noise], dim=2)
    sampler = FlowMatchEulerSampler(steps, cfg.sampler_shift)
    ones = torch.ones(b, device=device)
    for i in range(steps):
        _, v_action = model.denoise(cond, video, ones, act, float(sampler.sigmas[i]) * ones, batch["state"],
                                    need_video=False)
        act = sampler.step(v_action, i, act)
    return act


@torch.no_grad()
def validate(model, table: WindowTable | None, batch_size: int, seed: int, device, sample_windows: int,
             steps: int, settings: LossSettings) -> dict[str, float]:
    """Flow loss (fixed noise) on every validation window + VLA action MSE on the first ones."""
    if table is None or len(table) == 0:
        return {}
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed + VAL_SEED_OFFSET)
    totals = {"loss": 0.0, "video": 0.0, "action": 0.0}
    n = len(table)
    for start in range(0, n, batch_size):
        items = list(range(start, min(n, start + batch_size)))
        batch = table.batch(items, device)
        loss = flow_matching_loss(model, batch["latents"], batch["actions"], batch["state"],
                                  conditioning(model, batch), settings, generator=g)
        for key, value in (("loss", loss.total), ("video", loss.video), ("action", loss.action)):
            totals[key] += float(value) * len(items)
    out = {f"val_{k}": v / n for k, v in totals.items()}
    count = n if sample_windows <= 0 else min(n, sample_windows)
    g = torch.Generator().manual_seed(seed + 2 * VAL_SEED_OFFSET)
    sq, elems = 0.0, 0
    for start in range(0, count, batch_size):
        items = list(range(start, min(count, start + batch_size)))
        batch = table.batch(items, device)
        pred = sample_actions_vla(model, batch, steps, g).clamp(0.0, 1.0)   # the runtime clips too
        sq += float(((pred - batch["actions"]) ** 2).sum())
        elems += batch["actions"].numel()
    out["val_action_mse_vla"] = sq / max(1, elems)
    out["val_action_mse_windows"] = count
    model.train(was_training)
    return out


# Checkpoints ---------------------------------------------------------------------------------------
def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save_training_checkpoint(folder: Path, model, stats_path: Path, state: dict,
                             stats_name: str = STATS_FILE) -> Path:
    """Weights (safetensors) + stats (as `stats_name`) + training_state.pt, written to a temp
    folder then renamed."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tmp)
    shutil.copyfile(stats_path, tmp / stats_name)
    torch.save(state, tmp / STATE_FILE)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def resolve_resume(path: str | Path) -> Path:
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    if (p / LAST / STATE_FILE).is_file():
        return p / LAST
    raise FileNotFoundError(f"--resume {path}: no {STATE_FILE} in it or in {p / LAST}")


def load_training_state(folder: Path) -> dict:
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)


# Plot ----------------------------------------------------------------------------------------------
def plot_losses(history: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.asarray([h["step"] for h in history["steps"]])
    for key, label in (("loss", "train total"), ("video", "train video"), ("action", "train action")):
        vals = np.asarray([h[key] for h in history["steps"]], dtype=np.float64)
        k = max(1, len(vals) // 20)   # running mean over ~5% of the run keeps the trend readable
        smooth = np.convolve(vals, np.ones(k) / k, mode="valid") if len(vals) >= k else vals
        ax.plot(steps[len(steps) - len(smooth):], smooth, label=label, lw=1)
    ep = [e for e in history["epochs"] if "val_loss" in e]
    if ep:
        ax.plot([e["step"] for e in ep], [e["val_loss"] for e in ep], "o-", label="val total")
        ax2.plot([e["step"] for e in ep], [e["val_action_mse_vla"] for e in ep], "s-", color="C3")
    ax.set_xlabel("step")
    ax.set_ylabel("rectified-flow loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("val action MSE, VLA mode (normalised units)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def hardware(accelerator) -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "device": str(accelerator.device),
            "processes": accelerator.num_processes, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# The loop ------------------------------------------------------------------------------------------
VAE_FIELDS = {"vae_kind", "vae_path", "vae_config"}   # --init may swap the frozen video autoencoder
FRAME_ACTION_PREFIX = "video.frame_actions."          # video_action_conditioning "frame" (--init may add it)


def init_model(path: str, preset_config, overrides: dict, seed: int):
    """A model holding the weights of checkpoint `path` (either format), its config changed by the
    MotusConfig `overrides` (e.g. sampler_shift, or another video autoencoder: VAE_FIELDS); an
    override that changes a trained weight's shape is refused. video_action_conditioning may be
    switched: 'frame' adds its zero-output layers, 'attention' leaves out the checkpoint's."""
    from motus_ros.motus.checkpoint import load_checkpoint
    from motus_ros.motus.model import build_model
    from motus_ros.motus.tokenization import attach_tokenizers

    loaded, _ = load_checkpoint(path, config=preset_config, device="cpu")
    if not overrides:
        return loaded.train()
    mcfg = loaded.config.with_overrides(overrides)
    model = build_model(mcfg, device="cpu", seed=seed)
    if loaded.tokenizer_folder is not None:
        attach_tokenizers(model, loaded.tokenizer_folder)
    mine, theirs = model.state_dict(), loaded.state_dict()
    if VAE_FIELDS & set(overrides):
        # Another frozen video autoencoder (e.g. a learned one for a patch one): its weights come from
        # its own folder (vae_path), the experts' from the checkpoint.
        theirs = {**{k: v for k, v in theirs.items() if not k.startswith("vae.")},
                  **{k: v for k, v in mine.items() if k.startswith("vae.")}}
    if mcfg.video_action_conditioning != loaded.config.video_action_conditioning:
        # A path the checkpoint does not have (frame actions): its layers start as built, with a
        # zero output, so the model starts out computing what the checkpoint did.
        theirs = {**theirs, **{k: v for k, v in mine.items() if k.startswith(FRAME_ACTION_PREFIX)}}
        theirs = {k: v for k, v in theirs.items() if k in mine or not k.startswith(FRAME_ACTION_PREFIX)}
    changed = sorted(k for k in mine if k in theirs and mine[k].shape != theirs[k].shape)
    if changed or mine.keys() != theirs.keys():
        raise ValueError(f"--init {path}: --set {', '.join(sorted(overrides))} changes the model's weights "
                         f"({len(changed)} shapes differ, e.g. {changed[:3]}); only shape-preserving fields "
                         "(e.g. sampler_shift, conventions.timestep_sampling) and the loss settings can be "
                         "changed when starting from a checkpoint")
    model.load_state_dict(theirs)
    if mcfg.conventions.video_prediction != loaded.config.conventions.video_prediction:
        # The video head's output changes meaning (velocity <-> clean sample): start its output layer
        # at zero, which under video_target 'residual' and 'sample' imagines "nothing moves".
        with torch.no_grad():
            model.video.wan.proj_out.weight.zero_()
            model.video.wan.proj_out.bias.zero_()
    return model.train()


def starting_loss(path: str | Path, model_config) -> LossSettings:
    """The loss settings a run started from checkpoint `path` (--init) begins with, before --set:
    the training-objective fields of an older config.json (config.LOSS_FIELDS, missing ones at
    their defaults); else the "loss" of the training.json beside the weights (this trainer's
    output); else, for a model with the official conventions (an official checkpoint or its
    conversion), the official settings (shift 5); else the defaults."""
    from motus_ros.motus.checkpoint import detect_format, own_folder, read_legacy_loss
    from motus_ros.motus.config import OFFICIAL_CONVENTIONS

    legacy = read_legacy_loss(path)
    if legacy:
        return LossSettings.from_dict(legacy)
    record = own_folder(path) / SUMMARY_FILE
    if detect_format(path) == "motus_ros" and record.is_file():
        try:
            recorded = json.loads(record.read_text()).get("loss")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{record}: unreadable ({exc})") from exc
        if recorded is not None:
            return LossSettings.from_dict(recorded)
    if model_config.conventions == OFFICIAL_CONVENTIONS:
        return LossSettings.official()
    return LossSettings()


def recorded_stage(path: str | Path) -> int | None:
    """The stage recorded in the training.json beside checkpoint `path` (runs from before stages
    were recorded: 3); None for weights this trainer did not write (e.g. an official checkpoint)."""
    from motus_ros.motus.checkpoint import detect_format, own_folder

    try:
        record = own_folder(path) / SUMMARY_FILE if detect_format(path) == "motus_ros" else None
    except (OSError, ValueError):
        return None
    if record is None or not record.is_file():
        return None
    try:
        return int(json.loads(record.read_text()).get("stage", 3))
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def resumed_loss(state: dict, folder: Path, model_config) -> LossSettings:
    """The loss settings recorded in a training state (TrainConfig.loss); states written before
    the field existed had them in the checkpoint's config.json (starting_loss reads those)."""
    recorded = json.loads(state.get("config") or "{}").get("loss")
    if recorded is not None:
        return LossSettings.from_dict(recorded)
    return starting_loss(folder, model_config)


def train(cfg: TrainConfig, log=print) -> dict:
    """Run (or resume) a training; returns the summary written to training.json."""
    check_config(cfg)
    run = _TrainingRun(cfg, log)
    run.load_model()
    run.load_data()
    run.make_optimizer()
    run.restore()
    run.loop()
    return run.finish()


class _TrainingRun:
    """The steps of `train`, in order; the state they share lives on the instance. Order matters:
    the seeded model build, data order and noise generators must be created as in every run."""

    def __init__(self, cfg: TrainConfig, log):
        from accelerate import Accelerator

        self.cfg, self.log = cfg, log
        self.started = time.perf_counter()
        self.out = Path(cfg.out)
        self.accelerator = Accelerator(cpu=cfg.device == "cpu",
                                       mixed_precision=mixed_precision(cfg.precision, cfg.device))
        self.device = self.accelerator.device
        self.resume_dir = resolve_resume(cfg.resume) if cfg.resume else None
        self.state = load_training_state(self.resume_dir) if self.resume_dir else None
        if self.resume_dir and cfg.init:
            raise ValueError("--init and --resume: give one; --resume already restores the weights")
        if self.state:
            resumed = int(json.loads(self.state.get("config") or "{}").get("stage", 3))
            if resumed != cfg.stage:
                raise ValueError(f"--resume {cfg.resume}: a stage-{resumed} run, but stage {cfg.stage} was asked "
                                 f"for; resume it with --stage {resumed}, or start stage {cfg.stage} from its "
                                 "weights with --init")
        self.history: dict = {"steps": [], "epochs": []}
        self.step, self.epoch, self.done_in_epoch, self.train_s = 0, 0, 0, 0.0
        self.stop_reason = ""

    # Set-up -------------------------------------------------------------------------------------
    def load_model(self) -> None:
        """The weights to train: a resumed checkpoint, --init weights, or the (overridden) preset's;
        and the loss settings (TrainConfig.loss, else the starting point's, then the overrides)."""
        from motus_ros.motus.checkpoint import load_checkpoint
        from motus_ros.motus.config import preset as make_preset
        from motus_ros.motus.model import build_model

        cfg = self.cfg
        model_overrides, loss_overrides = split_overrides(cfg.overrides)
        if self.resume_dir:
            model, _ = load_checkpoint(self.resume_dir, device="cpu")
            base = resumed_loss(self.state, self.resume_dir, model.config)
        elif cfg.init:
            model = init_model(cfg.init, make_preset(cfg.preset), model_overrides, cfg.seed)
            base = starting_loss(cfg.init, model.config)
        else:
            mcfg = make_preset(cfg.preset)
            if model_overrides:
                mcfg = mcfg.with_overrides({**model_overrides, "name": f"{cfg.preset}-custom"})
            model = build_model(mcfg, device="cpu", seed=cfg.seed)
            base = LossSettings()
        self.model = model.to(self.device)
        self.mcfg = model.config
        self.loss = (cfg.loss if cfg.loss is not None else base).replace(**loss_overrides)
        self.cfg = replace(cfg, loss=self.loss)           # recorded in training_state.pt and training.json
        self.log(f"[train] {self.loss.describe()}")

    def load_data(self) -> None:
        """Dataset, train/val windows and the latent cache (encoded once, by the main process)."""
        cfg = self.cfg
        data = ds.load_dataset(cfg.data, targets=STAGES[cfg.stage])
        ds.check_rates(data, self.mcfg)
        ds.check_targets(data, self.mcfg)
        self.train_eps, self.val_eps = data.trainable(data.split("train")), data.trainable(data.split("val"))
        if not self.train_eps:
            kind = "with joint data " if cfg.stage == 3 else "with latent actions "
            raise ds.DatasetError(f"{cfg.data}: no episode {kind}in the 'train' split")
        if cfg.stage == 3 and len(self.train_eps) < len(data.split("train")):
            self.log(f"[train] stage 3: {len(data.split('train')) - len(self.train_eps)} train episode(s) without "
                     "joint data left out (they serve stage 2)")
        self.train_wins, self.val_wins = ds.windows(data, self.train_eps), ds.windows(data, self.val_eps)
        cache_root = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.data) / ".latent_cache"
        t0 = time.perf_counter()
        with self.accelerator.main_process_first():
            self.cache = build_or_open(self.model, data, self.train_wins + self.val_wins, cache_root, cfg.encode_batch,
                                       cfg.progress and self.accelerator.is_main_process)
        self.encode_s = time.perf_counter() - t0
        self.log(f"[train] latent cache {self.cache.folder} ({'encoded' if self.cache.built else 'reused'}, "
                 f"{self.encode_s:.1f} s): {len(self.train_wins)} train / {len(self.val_wins)} val windows from "
                 f"{len(self.train_eps)} / {len(self.val_eps)} episodes")
        self.data = data
        self.train_table = WindowTable(data, self.cache, self.train_wins, self.mcfg)
        self.val_table = WindowTable(data, self.cache, self.val_wins, self.mcfg) if self.val_wins else None

    def make_optimizer(self) -> None:
        """AdamW with warm-up and cosine decay over the planned epochs, prepared by accelerate."""
        cfg, acc = self.cfg, self.accelerator
        objective = FlowObjective(self.model, self.loss, cfg.state_noise, cfg.state_dropout)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        optimizer = torch.optim.AdamW(param_groups(named, cfg.lr, cfg.lr_scale), lr=cfg.lr,
                                      weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
        per_epoch = len(epoch_batches(len(self.train_table), cfg.batch_size, cfg.seed, 0, acc.process_index,
                                      acc.num_processes))
        total = cfg.epochs * per_epoch      # the schedule follows the epochs; max_steps / max_minutes only stop early
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(min(cfg.warmup_steps, total // 10 or 1),
                                                                           total, cfg.min_lr_ratio))
        self.objective, self.optimizer, self.scheduler = acc.prepare(objective, optimizer, scheduler)
        self.inner = acc.unwrap_model(self.objective).model
        self.flow_gen = torch.Generator().manual_seed(cfg.seed + acc.process_index)

    def restore(self) -> None:
        """Continue where a --resume checkpoint stopped: optimizer, schedule, position, RNG states."""
        state = self.state
        if not state:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.done_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        self.history = json.loads(state["history"])
        self.train_s = float(state.get("train_s", 0.0))
        self.flow_gen.set_state(state["flow_generator"])
        set_rng_state(state["rng"])
        self.log(f"[train] resumed from {self.resume_dir}: step {self.step}, epoch {self.epoch}, "
                 f"batch {self.done_in_epoch}")

    # The loop -----------------------------------------------------------------------------------
    @property
    def stats_file(self) -> tuple[Path, str]:
        """(the statistics the targets were normalised with, their name in the outputs)."""
        if self.cfg.stage == 2:
            return self.data.latent_stats_path, ds.LATENT_STATS_FILE
        return self.data.stats_path, STATS_FILE

    def checkpoint(self, folder: Path) -> None:
        if self.accelerator.is_main_process:
            stats_path, stats_name = self.stats_file
            save_training_checkpoint(folder, self.inner, stats_path, {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.done_in_epoch, "rng": rng_state(),
                "flow_generator": self.flow_gen.get_state(), "history": json.dumps(self.history),
                "train_s": self.train_s, "config": json.dumps(asdict(self.cfg))}, stats_name)
        self.accelerator.wait_for_everyone()

    def run_validation(self) -> dict:
        t = time.perf_counter()
        res = validate(self.inner, self.val_table, self.cfg.batch_size, self.cfg.seed, self.device,
                       self.cfg.val_windows, self.cfg.val_steps or self.mcfg.num_inference_steps, self.loss)
        res.update({"epoch": self.epoch, "step": self.step, "validation_s": round(time.perf_counter() - t, 2)})
        return res

    def _limit_reached(self) -> bool:
        """max_steps or max_minutes reached (epochs are counted by the loop)."""
        cfg = self.cfg
        return (cfg.max_steps > 0 and self.step >= cfg.max_steps) or bool(
            self.deadline and time.perf_counter() > self.deadline)

    def _why_stop(self) -> str:
        cfg = self.cfg
        if cfg.max_steps > 0 and self.step >= cfg.max_steps:
            return "max_steps"
        if self.epoch >= cfg.epochs:
            return "epochs"
        if self.deadline and time.perf_counter() > self.deadline:
            return "max_minutes"
        return ""

    def loop(self) -> None:
        """Epochs of optimizer steps, each followed by validation and a checkpoint, until a limit."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.state:
            self.history["epochs"].append(self.run_validation())   # epoch 0: before any update
            self.log(f"[train] before training: {_fmt(self.history['epochs'][-1])}")
        # The budget is for training: the latent cache's one-time encoding (minutes on a CPU) and the
        # first validation are behind us, and counting them once stopped a short run at 0 steps.
        self.deadline = time.perf_counter() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
        self.objective.train()
        while not (reason := self._why_stop()):
            epoch_losses = self.train_epoch()
            res = self.run_validation()
            res["train_loss"] = float(np.mean(epoch_losses)) if epoch_losses else None
            self.history["epochs"].append(res)
            self.log(f"[train] epoch {self.epoch} step {self.step}: {_fmt(res)}")
            self.checkpoint(self.out / LAST)
        self.stop_reason = reason

    def train_epoch(self) -> list[float]:
        """The rest of the current epoch (or up to a limit); returns its step losses."""
        from tqdm import tqdm

        cfg, acc = self.cfg, self.accelerator
        batches = epoch_batches(len(self.train_table), cfg.batch_size, cfg.seed, self.epoch, acc.process_index,
                                acc.num_processes)
        bar = tqdm(total=len(batches), initial=self.done_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not (cfg.progress and acc.is_main_process), file=sys.stderr)
        epoch_losses = []
        for items in batches[self.done_in_epoch:]:
            rec = self.train_step(items)
            epoch_losses.append(rec["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", act=f"{rec['action']:.4f}")
            if cfg.save_every and self.step % cfg.save_every == 0 and self.done_in_epoch < len(batches):
                self.checkpoint(self.out / LAST)
            if self._limit_reached():
                break
        bar.close()
        if self.done_in_epoch >= len(batches):
            self.epoch += 1
            self.done_in_epoch = 0
        return epoch_losses

    def train_step(self, items) -> dict:
        """One optimizer step on the windows `items`; returns (and records) its losses."""
        t = time.perf_counter()
        batch = self.train_table.batch(items, self.device)
        loss = self.objective(batch, self.flow_gen)
        self.accelerator.backward(loss.total)
        if self.cfg.grad_clip > 0:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.done_in_epoch += 1
        self.train_s += time.perf_counter() - t
        rec = {"step": self.step, "epoch": self.epoch + 1, "loss": float(loss.total.detach()),
               "video": float(loss.video.detach()), "action": float(loss.action.detach()),
               "lr": float(self.scheduler.get_last_lr()[0])}
        self.history["steps"].append(rec)
        return rec

    # Results ------------------------------------------------------------------------------------
    def finish(self) -> dict:
        """Final weights, stats, metrics, plot and training.json (main process); the summary."""
        summary = {}
        if self.accelerator.is_main_process:
            save_checkpoint(self.inner, self.out)
            stats_path, stats_name = self.stats_file
            shutil.copyfile(stats_path, self.out / stats_name)
            (self.out / "metrics.json").write_text(json.dumps(self.history, indent=1))
            plot_losses(self.history, self.out / "loss.png")
            summary = self.summary()
            (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
            self.log(f"[train] done: {self.step} steps in {self.train_s:.0f} s of training ({self.stop_reason}); "
                     f"weights in {self.out}")
        self.accelerator.wait_for_everyone()
        summary["history"] = self.history
        return summary

    def summary(self) -> dict:
        cfg, history, data = self.cfg, self.history, self.data
        last = history["epochs"][-1] if history["epochs"] else {}
        first = history["epochs"][0] if history["epochs"] else {}
        return {
            "stage": cfg.stage, "targets": "latent actions" if cfg.stage == 2 else "joint actions",
            "preset": cfg.preset, "model": self.mcfg.name,
            "parameters": {k: v for k, v in self.inner.parameter_counts().items()},
            "trainable_parameters": int(sum(p.numel() for p in self.params)),
            "hardware": hardware(self.accelerator),
            "data": {"root": str(Path(cfg.data).resolve()), "episodes": len(data.episodes),
                     "train_episodes": len(self.train_eps), "val_episodes": len(self.val_eps),
                     "train_windows": len(self.train_wins), "val_windows": len(self.val_wins), "tasks": data.tasks},
            "steps": self.step, "epochs_completed": self.epoch, "stop_reason": self.stop_reason,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "initialized_from": cfg.init or None,
            "initialized_from_stage": recorded_stage(cfg.init) if cfg.init else None,
            "loss": self.loss.to_dict(),
            "latent_cache": {"folder": str(self.cache.folder), "encoded_this_run": self.cache.built,
                             "encode_s": round(self.encode_s, 1)},
            "train_time_s": round(self.train_s, 1), "wall_time_s": round(time.perf_counter() - self.started, 1),
            "initial": {k: v for k, v in first.items() if k.startswith("val_")},
            "final": {k: v for k, v in last.items() if k.startswith("val_") or k == "train_loss"},
            "final_train_loss_last_50_steps": (float(np.mean([h["loss"] for h in history["steps"][-50:]]))
                                               if history["steps"] else None),
            "instruction": data.tasks[0] if data.tasks else "",
            "config": asdict(cfg),
        }


def _fmt(res: dict) -> str:
    keys = ("train_loss", "val_loss", "val_video", "val_action", "val_action_mse_vla")
    return ", ".join(f"{k} {res[k]:.4f}" for k in keys if res.get(k) is not None)


__all__ = ["FlowObjective", "STAGES", "TrainConfig", "epoch_batches", "lr_lambda", "plot_losses", "recorded_stage",
           "resolve_resume", "resumed_loss", "sample_actions_vla", "split_overrides", "starting_loss", "train",
           "validate"]
