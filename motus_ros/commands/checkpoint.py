"""`motus-ros checkpoint inspect PATH` / `motus-ros checkpoint convert PATH OUT`.

inspect prints JSON (format, tensor counts, chunk size, conventions, tokenizer status, parameters
per part, inferred sizes, and the key report against the model); convert turns an official
DeepSpeed checkpoint (or our own) into our safetensors + config.json folder, refusing checkpoints
whose keys or shapes do not fit. An official checkpoint gets the official conventions; its
wan_config.json and vlm_config.json (beside it, or --wan-config / --vlm-config) are folded in.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "inspect or convert Motus checkpoints (official DeepSpeed .pt or motus_ros safetensors)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros checkpoint", description=HELP)
    sub = p.add_subparsers(dest="action", required=True)
    i = sub.add_parser("inspect", help="print a JSON description of a checkpoint")
    i.add_argument("path", help="mp_rank_00_model_states.pt, a folder holding it, or a motus_ros folder")
    i.add_argument("--preset", default="paper", help="preset giving the encoder sizes of official files (default paper)")
    _official_args(i)
    c = sub.add_parser("convert", help="write a motus_ros checkpoint folder (model.safetensors + config.json)")
    c.add_argument("path")
    c.add_argument("out", help="output folder")
    c.add_argument("--preset", default="paper", help="preset giving the encoder sizes of official files (default paper)")
    _official_args(c)
    return p


def _official_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wan-config", default=None,
                   help="official checkpoints: the video expert's Wan config JSON (default: wan_config.json beside it)")
    p.add_argument("--vlm-config", default=None,
                   help="official checkpoints: the Qwen3-VL config JSON (default: vlm_config.json beside it)")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from motus_ros.motus.checkpoint import CheckpointError, convert_official, inspect_checkpoint
    from motus_ros.motus.config import preset

    try:
        base = preset(args.preset)
        extra = {"wan_config": args.wan_config, "vlm_config": args.vlm_config}
        if args.action == "inspect":
            print(json.dumps(inspect_checkpoint(args.path, config=base, **extra), indent=2))
            return 0
        report = convert_official(args.path, args.out, config=base, **extra)
        print(json.dumps({"converted": args.path, "out": args.out, "report": report.to_dict()}, indent=2))
        return 0
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"motus-ros checkpoint: error: {exc}", file=sys.stderr)
        return 2
