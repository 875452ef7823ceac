"""`motus-ros train-vae`: train the learned video autoencoder (vae_kind "learned") on recorded frames.

    motus-ros train-vae --data DIR --out DIR [--steps N --batch-size B --lr LR --resume DIR
                        --heldout DIR --crop HxW --threads N --seed S --max-minutes M]

DIR comes from `motus-ros convert BAG... --out DIR` or `python -m motus_ros.training.sim_episodes`;
its train split trains, its val split is the held-out report (PSNR / SSIM of the future frames of
windows, with the PatchAutoencoder stand-in measured on the same frames). The loop lives in
motus_ros/training/vae_trainer.py (see its docstring for what lands in --out). The result is a
folder a model config names:

    motus-ros train --preset small --set video_height=192 --set video_width=160 \\
        --set vae_kind=learned --set vae_path=/abs/path/to/OUT --set vae_temporal=1 ...

(a relative vae_path resolves against the package share folder, e.g. models/sim_video_ae).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from motus_ros.cli import CliError
from ._args import size

HELP = "train the learned video autoencoder (frames <-> latents) on converted episodes (resumable)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros train-vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="converted dataset folder (train/val splits)")
    p.add_argument("--out", required=True, type=Path, help="output folder (the autoencoder, checkpoint-last/, metrics)")
    p.add_argument("--steps", type=int, default=2000, help="total optimizer steps (a resumed run continues to it)")
    p.add_argument("--batch-size", type=int, default=8, help="frame groups per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the per-element KL term (default 1e-6)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--resume", default="", help="a previous --out (or its checkpoint-last/) to continue from")
    p.add_argument("--save-every", type=int, default=200, help="checkpoint + val evaluation every N steps")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and sampling")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--size", type=size, default=(192, 160), metavar="HxW",
                   help="frame size in pixels = the model's video_height x video_width (default 192x160)")
    p.add_argument("--crop", type=size, default=(0, 0), metavar="HxW",
                   help="train on random crops of this size (multiples of the spatial factor; default whole frames)")
    p.add_argument("--temporal", type=int, default=1,
                   help="frames per latent after the first = vae_temporal (default 1: per-frame latents; "
                        "4 = the Wan VAE's and the patch stand-in's groups, lower PSNR at 48 channels)")
    p.add_argument("--patch", type=int, default=4, help="pixel-unshuffle factor before the AutoencoderKL (default 4)")
    p.add_argument("--channels", default="32,64,64",
                   help="AutoencoderKL block_out_channels; spatial factor = patch x 2^(blocks-1) (default 32,64,64)")
    p.add_argument("--latent-channels", type=int, default=48, help="latent channels = latent_channels (default 48)")
    p.add_argument("--no-linear-path", action="store_true",
                   help="no PCA-initialised linear patch code beside the AutoencoderKL (see motus/video_ae.py)")
    p.add_argument("--linear-lr-scale", type=float, default=0.1,
                   help="learning rate of the linear path relative to --lr (default 0.1)")
    p.add_argument("--future-frames", type=int, default=8, help="future frames per held-out window (default 8)")
    p.add_argument("--val-windows", type=int, default=32, help="held-out windows evaluated (0 = all; default 32)")
    p.add_argument("--heldout", default="", help="another converted dataset, every episode held out (final report)")
    p.add_argument("--heldout-windows", type=int, default=0,
                   help="evenly spaced --heldout windows evaluated (0 = all, one per frame; default 0)")
    p.add_argument("--stats-groups", type=int, default=256, help="training groups for the latent statistics")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    from motus_ros.motus.video_ae import VideoAEError
    from motus_ros.training.dataset import DatasetError
    from motus_ros.training.vae_trainer import VaeTrainConfig, command_line, train_vae

    a = build_parser().parse_args(argv)
    if not a.data.is_dir():
        raise CliError(f"--data {a.data}: no such folder")
    if a.heldout and not Path(a.heldout).is_dir():
        raise CliError(f"--heldout {a.heldout}: no such folder")
    try:
        channels = tuple(int(c) for c in a.channels.split(","))
    except ValueError:
        raise CliError(f"--channels {a.channels!r}: expected comma-separated integers, e.g. 32,64,64") from None
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    cfg = VaeTrainConfig(data=str(a.data), out=str(a.out), steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                         kl_weight=a.kl_weight, linear_path=not a.no_linear_path,
                         linear_lr_scale=a.linear_lr_scale, warmup_steps=a.warmup_steps, seed=a.seed, resume=a.resume,
                         save_every=a.save_every, max_minutes=a.max_minutes, height=a.size[0], width=a.size[1],
                         temporal=a.temporal, patch=a.patch, channels=channels, latent_channels=a.latent_channels,
                         crop=a.crop, future_frames=a.future_frames, val_windows=a.val_windows, heldout=a.heldout,
                         heldout_windows=a.heldout_windows,
                         stats_groups=a.stats_groups, command=command_line(argv), progress=not a.no_progress)
    try:
        record = train_vae(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    except (DatasetError, VideoAEError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"out": str(a.out.resolve()), "steps": record["steps"], "stop_reason": record["stop_reason"],
                      "train_time_s": record["train_time_s"], "reconstruction": record["reconstruction"]}, indent=2))
    return 0
