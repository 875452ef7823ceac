"""`motus-ros latent-actions`: latent actions from optical flow (Motus stage 2, arXiv 2512.13030 sec. 4).

    motus-ros latent-actions flow DATA [--ae DIR | --flow-preset P --estimate-size HxW --size HxW]
    motus-ros latent-actions train-ae DATA --out DIR [--preset cpu --max-steps N --max-minutes M --resume DIR ...]
    motus-ros latent-actions train-vae DATA --ae DIR --out DIR [--labeled-fraction 0.1 --align-weight 1 ...]
    motus-ros latent-actions label DATA --model DIR [--ae DIR]
    motus-ros latent-actions report DATA --model DIR [--ae DIR --val-pairs N]

DATA comes from `motus-ros convert BAG... --out DIR` or `python -m motus_ros.training.sim_episodes`.
flow computes (or checks) the per-episode flow cache (episodes/<name>/flow.npz) and prints flow
magnitudes, to choose --max-flow; train-ae trains the flow autoencoder (DC-AE) on the train split
and reports endpoint error on the val split; train-vae trains the latent-action VAE on the
autoencoder's tokens; label writes episodes/<name>/latent_actions.npz and latent_action_stats.json
(the contract in motus_ros/latent_actions/__init__.py); report measures the autoencoder's EPE and the
linear-probe R^2 of latent actions -> real actions on the val split. Both trainings resume from
--resume OUT (or OUT/checkpoint-last) and stop at --max-steps or after --max-minutes, saving.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from motus_ros.cli import CliError
from ._args import ints, size

HELP = "latent actions from optical flow: flow cache, flow autoencoder, latent-action VAE, label, report"


def _common_run(p: argparse.ArgumentParser, batch: int, lr: float) -> None:
    p.add_argument("--max-steps", "--steps", dest="steps", type=int, default=2000,
                   help="total optimizer steps (a resumed run continues to it; default 2000)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this many minutes")
    p.add_argument("--batch-size", type=int, default=batch, help=f"samples per step (default {batch})")
    p.add_argument("--lr", type=float, default=lr, help=f"peak AdamW learning rate (default {lr:g})")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--resume", default="", help="a previous --out (or its checkpoint-last/) to continue from")
    p.add_argument("--save-every", type=int, default=200, help="checkpoint + held-out evaluation every N steps")
    p.add_argument("--val-pairs", type=int, default=128, help="evenly spaced val pairs evaluated (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, sampling, the labelled subset")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The sub-commands and their options."""
    p = argparse.ArgumentParser(prog="motus-ros latent-actions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="{flow,train-ae,train-vae,label,report}")

    f = sub.add_parser("flow", help="compute or check the per-episode flow cache; print flow magnitudes")
    f.add_argument("data", type=Path, help="converted dataset folder")
    f.add_argument("--ae", default="", help="use this flow autoencoder's flow settings and max_flow")
    f.add_argument("--preset", default="cpu", help="flow autoencoder preset whose flow settings are used "
                                                   "(default cpu; see latent_actions/flow_ae.py)")
    _flow_options(f)
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = sub.add_parser("train-ae", help="train the flow autoencoder (DC-AE) on flow images (resumable)")
    a.add_argument("data", type=Path, help="converted dataset folder (train/val splits)")
    a.add_argument("--out", required=True, type=Path, help="output folder (the autoencoder, checkpoint-last/, metrics)")
    a.add_argument("--preset", default="cpu", help="architecture preset: cpu | paper | tiny (default cpu)")
    _flow_options(a)
    a.add_argument("--latent-channels", type=int, default=0, help="channels per latent token (default: preset's)")
    a.add_argument("--latent-tokens", type=int, default=0,
                   help="tokens per flow image, checked against size and stages (default: what they give)")
    a.add_argument("--channels", type=ints, default=None,
                   help="AutoencoderDC block_out_channels, one per stage (default: preset's)")
    _common_run(a, batch=16, lr=1e-3)

    v = sub.add_parser("train-vae", help="train the latent-action VAE on the autoencoder's tokens (resumable)")
    v.add_argument("data", type=Path, help="converted dataset folder (train/val splits)")
    v.add_argument("--ae", required=True, type=Path, help="flow autoencoder folder from train-ae (frozen)")
    v.add_argument("--out", required=True, type=Path, help="output folder (the VAE, its statistics, checkpoint-last/)")
    v.add_argument("--labeled-fraction", type=float, default=0.1,
                   help="share of training pairs whose real action is used for alignment (default 0.1)")
    v.add_argument("--align-weight", type=float, default=1.0, help="weight of the alignment MSE (default 1)")
    v.add_argument("--beta", type=float, default=1e-3, help="weight of the KL term (default 1e-3)")
    v.add_argument("--latent-dim", type=int, default=14, help="latent action size (default 14 = the action size)")
    v.add_argument("--hidden", type=int, default=256, help="MLP width (default 256)")
    v.add_argument("--token-dim", type=int, default=32, help="per-token projection before flattening (default 32)")
    _common_run(v, batch=64, lr=1e-3)

    lab = sub.add_parser("label", help="write latent_actions.npz per episode and latent_action_stats.json")
    lab.add_argument("data", type=Path, help="converted dataset folder")
    lab.add_argument("--model", required=True, type=Path, help="latent-action VAE folder from train-vae")
    lab.add_argument("--ae", default="", help="its flow autoencoder (default: the folder it was trained with)")
    lab.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="autoencoder EPE and linear-probe R^2 of latent -> real actions (val split)")
    r.add_argument("data", type=Path, help="converted dataset folder with a val split")
    r.add_argument("--model", required=True, type=Path, help="latent-action VAE folder from train-vae")
    r.add_argument("--ae", default="", help="its flow autoencoder (default: the folder it was trained with)")
    r.add_argument("--val-pairs", type=int, default=0, help="evenly spaced val pairs for the EPE (0 = all)")
    r.add_argument("--out", type=Path, default=None, help="also write the report to this JSON file")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _flow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flow-preset", default="", help="DIS quality preset: ultrafast | fast | medium")
    p.add_argument("--estimate-size", type=size, default=None, metavar="HxW",
                   help="frames are resized to this before flow estimation (pixels)")
    p.add_argument("--size", type=size, default=None, metavar="HxW",
                   help="flow image size = the autoencoder's input (pixels)")
    p.add_argument("--max-flow", type=float, default=0.0,
                   help="flow length (pixels of the flow image) at which the colour wheel saturates")


def command_line(argv: list[str]) -> str:
    """The command as typed, for the training record."""
    return shlex.join(["motus-ros", "latent-actions", *argv])


def _model_config(a: argparse.Namespace):
    """The preset with the command line's flow and architecture changes (latent_tokens follows them)."""
    from dataclasses import replace

    from motus_ros.latent_actions.flow_ae import FlowAEConfig, preset

    base = preset(a.preset)
    flow = base.flow
    if a.flow_preset:
        flow = replace(flow, preset=a.flow_preset)
    if a.estimate_size:
        flow = replace(flow, estimate_height=a.estimate_size[0], estimate_width=a.estimate_size[1])
    if a.size:
        flow = replace(flow, height=a.size[0], width=a.size[1])
    channels = getattr(a, "channels", None) or base.block_out_channels
    same_stages = len(channels) == len(base.block_out_channels)
    fields = {"flow": flow, "block_out_channels": channels,
              "layers_per_block": base.layers_per_block if same_stages else (),
              "block_types": base.block_types if same_stages else (),
              "max_flow": a.max_flow or base.max_flow,
              "latent_channels": getattr(a, "latent_channels", 0) or base.latent_channels}
    factor = 2 ** (len(channels) - 1)
    fields["latent_tokens"] = getattr(a, "latent_tokens", 0) or (flow.height // factor) * (flow.width // factor)
    return FlowAEConfig(**fields)


def _flow(a: argparse.Namespace) -> dict:
    import numpy as np

    from motus_ros.latent_actions import pairs as pr
    from motus_ros.latent_actions.flow_ae import read_ae_record

    if a.ae:
        if any((a.flow_preset, a.estimate_size, a.size, a.max_flow)):
            raise CliError("--ae fixes the flow settings; leave out --flow-preset, --estimate-size, --size, --max-flow")
        from motus_ros.latent_actions.flow_ae import FlowAEConfig

        cfg = FlowAEConfig.from_dict(read_ae_record(a.ae)["config"])
    else:
        cfg = _model_config(a)
    dataset = pr.load(a.data)
    counts: dict = {}
    mags, pairs = [], 0
    log = lambda s: print(s, file=sys.stderr, flush=True)   # noqa: E731
    for _, flow in pr.episode_flows(dataset, list(range(len(dataset.episodes))), cfg.flow, log,
                                    not a.no_progress, counts):
        pairs += len(flow)
        if len(flow):
            mags.append(np.hypot(flow[..., 0], flow[..., 1])[:, ::2, ::2].ravel())   # every 4th pixel
    m = np.concatenate(mags) if mags else np.zeros(1)
    return {"dataset": str(a.data.resolve()), "episodes": len(dataset.episodes), "pairs": pairs,
            "flow": cfg.flow.to_dict(), "cache": {k: round(v, 1) if isinstance(v, float) else v
                                                  for k, v in counts.items()},
            "magnitude_px": {f"p{q}": round(float(np.percentile(m, q)), 3) for q in (50, 90, 99, 99.9)}
            | {"max": round(float(m.max()), 3)},
            "max_flow": cfg.max_flow, "saturated_fraction": round(float((m > cfg.max_flow).mean()), 6),
            "note": "magnitudes in pixels of the flow image (flow.height x flow.width), over a quarter of its "
                    "pixels; the colour wheel saturates above max_flow"}


def main(argv: list[str]) -> int:
    from motus_ros.latent_actions._folders import LatentActionError
    from motus_ros.latent_actions.flow import FlowError
    from motus_ros.training.dataset import DatasetError

    a = build_parser().parse_args(argv)
    if not a.data.is_dir():
        raise CliError(f"DATA {a.data}: no such folder")
    if getattr(a, "threads", 0) > 0:
        import torch

        torch.set_num_threads(a.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)   # noqa: E731
    try:
        if a.action == "flow":
            result = _flow(a)
        elif a.action == "train-ae":
            from motus_ros.latent_actions.training import AETrainConfig, train_flow_ae

            cfg = AETrainConfig(data=str(a.data), out=str(a.out), model=_model_config(a), steps=a.steps,
                                batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps, seed=a.seed,
                                resume=a.resume, save_every=a.save_every, max_minutes=a.max_minutes,
                                val_pairs=a.val_pairs, command=command_line(argv), progress=not a.no_progress)
            record = train_flow_ae(cfg, log=log)
            result = {"out": str(a.out.resolve()), "steps": record["steps"], "stop_reason": record["stop_reason"],
                      "train_time_s": record["train_time_s"], "reconstruction": record["reconstruction"]}
        elif a.action == "train-vae":
            from motus_ros.latent_actions.training import VAETrainConfig, train_latent_vae

            if not a.ae.is_dir():
                raise CliError(f"--ae {a.ae}: no such folder")
            cfg = VAETrainConfig(data=str(a.data), ae=str(a.ae), out=str(a.out), steps=a.steps,
                                 batch_size=a.batch_size, lr=a.lr, warmup_steps=a.warmup_steps, seed=a.seed,
                                 resume=a.resume, save_every=a.save_every, max_minutes=a.max_minutes,
                                 val_pairs=a.val_pairs, latent_dim=a.latent_dim, hidden=a.hidden,
                                 token_dim=a.token_dim, beta=a.beta, align_weight=a.align_weight,
                                 labeled_fraction=a.labeled_fraction, command=command_line(argv),
                                 progress=not a.no_progress)
            record = train_latent_vae(cfg, log=log)
            result = {"out": str(a.out.resolve()), "steps": record["steps"], "stop_reason": record["stop_reason"],
                      "train_time_s": record["train_time_s"], "labeled": record["labeled"],
                      "evaluation": record["evaluation"], "linear_probe": record["linear_probe"]}
        elif a.action == "label":
            from motus_ros.latent_actions.labelling import label_dataset

            result = label_dataset(a.data, a.model, a.ae or None, log=log, progress=not a.no_progress)
        else:
            from motus_ros.latent_actions.labelling import report

            result = report(a.data, a.model, a.ae or None, val_pairs=a.val_pairs, log=log,
                            progress=not a.no_progress)
            if a.out is not None:
                a.out.write_text(json.dumps(result, indent=2) + "\n")
    except (LatentActionError, FlowError, DatasetError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result, indent=2))
    return 0
