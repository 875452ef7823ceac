"""`motus-ros train`: Motus training on converted episodes, stage 3 (fine-tuning on joint actions,
the default) or stage 2 (pretraining on latent actions from video without joint labels).

    motus-ros train --data DIR --preset small --out DIR [--epochs N --batch-size B --lr LR
                    --resume CKPT --device auto|cpu|cuda --max-steps N --max-minutes M]
    motus-ros latent-actions label DIR --model LAM && motus-ros train --stage 2 --data DIR --out S2
    motus-ros train --data ROBOT_DIR --init S2 --out S3          # stage 3 from the stage-2 weights

DIR comes from `motus-ros convert BAG... --out DIR`. The loop lives in motus_ros/training/trainer.py
(see its docstring for what lands in --out); `accelerate launch` runs it on several GPUs. The result
loads with load_policy(checkpoint=OUT, stats=OUT/stats.json) or the policy node's `checkpoint` and
`stats` parameters.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from motus_ros.cli import CliError

HELP = "train Motus on converted episodes: stage 3 on joint actions, stage 2 on latent actions (resumable)"


def build_parser() -> argparse.ArgumentParser:
    from motus_ros.motus.config import PRESETS

    p = argparse.ArgumentParser(prog="motus-ros train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="converted dataset folder (motus-ros convert --out)")
    p.add_argument("--out", required=True, type=Path, help="output folder (weights, stats, checkpoints, plots)")
    p.add_argument("--preset", default="small", choices=PRESETS, help="model preset (default small)")
    p.add_argument("--stage", type=int, default=3, choices=(2, 3),
                   help="3 (default): fine-tune on the episodes' joint actions; 2: pretrain on the latent "
                        "actions that `motus-ros latent-actions label DATA --model DIR` wrote beside every "
                        "episode (those without joint data too; the state input hidden); recorded in "
                        "OUT/training.json. Stage 3 starts from a stage-2 output with --init")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training windows (default 10)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step and process (default 8)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate (default 1e-4)")
    p.add_argument("--lr-scale", action="append", default=[], metavar="PREFIX=FACTOR",
                   help="learning rate times FACTOR for the parameters whose names start with PREFIX "
                        "(repeatable), e.g. video.frame_actions.=10 for a path --init just added at zero")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup-steps", type=int, default=50, help="linear warm-up steps (default 50)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = no cap)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many wall minutes of training, not counting the latent "
                   "cache's one-time encoding and the first validation (0 = no cap)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and noise")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: what accelerate finds (GPU when present)")
    p.add_argument("--resume", default="", help="checkpoint folder (or a previous --out) to continue from")
    p.add_argument("--init", default="",
                   help="start from these weights (a motus_ros or official checkpoint) with a fresh optimizer; "
                        "--set may still change shape-preserving model fields and the loss settings "
                        "(e.g. action_loss_weight; otherwise the checkpoint's are kept)")
    p.add_argument("--cache-dir", default="", help="latent cache folder (default DATA/.latent_cache)")
    p.add_argument("--val-windows", type=int, default=64,
                   help="validation windows for the sampled-action MSE (0 = all; default 64)")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (0 = epoch ends)")
    p.add_argument("--encode-batch", type=int, default=4, help="windows per batch of the encoding pass (default 4)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="training numerics: auto = bf16 autocast on CUDA (as the official code), float32 on CPU")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a MotusConfig field of the preset (e.g. --set num_layers=4) or a loss "
                        "setting (motus.flow.LossSettings: logit_mean, logit_std, uniform_shift, "
                        "video_loss_weight, action_loss_weight; recorded in OUT/training.json) (repeatable)")
    p.add_argument("--conventions", choices=("", "project", "official"), default="",
                   help="train with all official Motus conventions (condition frame shares t, text padded to "
                        "text_max_len, FlowMatchScheduler(shift=5) timesteps, video loss over all frames, spare "
                        "position row, chat prompt) or the project's; '' = the preset's or the checkpoint's. "
                        "--set items still win. From scratch the official ones trained at least as well here "
                        "(README, 'The model')")
    p.add_argument("--state-noise", type=float, default=0.0,
                   help="std of Gaussian noise on the state input while training, in normalised units (the "
                        "dataset's joint range is 0..1); makes the policy read the scene from the cameras")
    p.add_argument("--state-dropout", type=float, default=0.0,
                   help="probability that a training window's state input is hidden (set to mid-range)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default); 1 is much faster on a CPU shared with other jobs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def conventions_overrides(name: str) -> dict:
    """--conventions NAME -> overrides: every config.Conventions field, and the loss settings' shift
    that goes with its timestep distribution (official: OFFICIAL_TRAIN_SHIFT)."""
    if not name:
        return {}
    from motus_ros.motus.config import OFFICIAL_CONVENTIONS, OFFICIAL_TRAIN_SHIFT, PROJECT_CONVENTIONS

    conventions = OFFICIAL_CONVENTIONS if name == "official" else PROJECT_CONVENTIONS
    out = {f"conventions.{k}": v for k, v in conventions.to_dict().items()}
    out["uniform_shift"] = OFFICIAL_TRAIN_SHIFT if name == "official" else 1.0
    return out


def parse_overrides(items: list[str]) -> dict:
    """--set FIELD=JSON items -> overrides. FIELD is a MotusConfig field, `conventions.NAME` (one
    convention, e.g. conventions.timestep_sampling=flow_shift), the legacy `timestep_sampling`, or a
    LossSettings field (the training objective; the trainer splits them off, trainer.split_overrides)."""
    from motus_ros.motus.config import Conventions, MotusConfig
    from motus_ros.motus.flow import LossSettings
    import dataclasses

    known = {f.name for f in dataclasses.fields(MotusConfig)} | {"timestep_sampling"}
    known |= {f"conventions.{f.name}" for f in dataclasses.fields(Conventions)}
    known |= set(LossSettings.field_names())
    out = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--set {item!r}: expected FIELD=VALUE")
        key, raw = item.split("=", 1)
        if key not in known:
            raise CliError(f"--set {key}: not a MotusConfig or LossSettings field; known: {', '.join(sorted(known))}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str]) -> int:
    from motus_ros.training.dataset import DatasetError
    from motus_ros.training.trainer import TrainConfig, train

    a = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(a, name) < 1:
            raise CliError(f"--{name.replace('_', '-')}: got {getattr(a, name)}, expected >= 1")
    if a.lr <= 0:
        raise CliError(f"--lr: got {a.lr}, expected > 0")
    lr_scale = {}
    for item in a.lr_scale:
        prefix, _, raw = item.rpartition("=")
        try:
            factor = float(raw)
        except ValueError:
            factor = 0.0
        if not prefix or not factor > 0:
            raise CliError(f"--lr-scale {item!r}: expected PREFIX=FACTOR with FACTOR > 0")
        lr_scale[prefix] = factor
    if not a.data.is_dir():
        raise CliError(f"--data {a.data}: no such folder")
    cfg = TrainConfig(data=str(a.data), out=str(a.out), preset=a.preset, epochs=a.epochs, batch_size=a.batch_size,
                      lr=a.lr, lr_scale=lr_scale, weight_decay=a.weight_decay, warmup_steps=a.warmup_steps, max_steps=a.max_steps,
                      max_minutes=a.max_minutes, seed=a.seed, device=a.device, resume=a.resume, init=a.init,
                      cache_dir=a.cache_dir, val_windows=a.val_windows, save_every=a.save_every, encode_batch=a.encode_batch,
                      overrides={**conventions_overrides(a.conventions), **parse_overrides(a.set)},
                      progress=not a.no_progress,
                      state_noise=a.state_noise, state_dropout=a.state_dropout, precision=a.precision,
                      stage=a.stage)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    try:
        summary = train(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    summary.pop("history", None)
    print(json.dumps({k: summary[k] for k in ("stage", "steps", "stop_reason", "train_time_s", "initial", "final")
                      if k in summary}, indent=2))
    return 0
