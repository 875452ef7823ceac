"""`motus-ros checkpoint inspect PATH` / `convert PATH OUT` / `assemble --motus ... --out OUT`.

inspect prints JSON (format, tensor counts, chunk size, conventions, tokenizer status, parameters
per part, inferred sizes, and the key report against the model); convert turns an official
DeepSpeed checkpoint (or our own) into our safetensors + config.json folder, refusing checkpoints
whose keys or shapes do not fit. An official checkpoint gets the official conventions; its
wan_config.json and vlm_config.json (beside it, or --wan-config / --vlm-config) are folded in.
assemble turns the released files (Motus checkpoint, Wan2.2_VAE.pth, the umT5 encoder and its
tokenizer, the Qwen3-VL-2B-Instruct folder) into one self-contained motus_ros checkpoint folder
(motus_ros/motus/released.py) that the policy and `train --init` load without a network.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "inspect, convert or assemble Motus checkpoints (official DeepSpeed .pt, released files, motus_ros)"


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
    a = sub.add_parser(
        "assemble", help="released Motus + Wan2.2 VAE + umT5 + Qwen3-VL files -> one self-contained checkpoint folder",
        description="Build a self-contained motus_ros checkpoint folder from the released files: weights of the "
                    "three experts and all encoders (safetensors shards), config.json with the sizes read from the "
                    "tensors and the official conventions, the Qwen3-VL processor and umT5 tokenizer files, and "
                    "assembled.json naming every source. Nothing is written unless every file is present and fits. "
                    "Example: motus-ros checkpoint assemble --motus pretrained_models/Motus_robotwin2 "
                    "--vae pretrained_models/Wan2.2-TI2V-5B/Wan2.2_VAE.pth --t5 pretrained_models/Wan2.2-TI2V-5B "
                    "--vlm pretrained_models/Qwen3-VL-2B-Instruct --out models/motus_robotwin2")
    a.add_argument("--motus", required=True,
                   help="the released Motus checkpoint: mp_rank_00_model_states.pt or the folder holding it "
                        "(directly or in pytorch_model/)")
    a.add_argument("--vae", required=True, help="Wan2.2_VAE.pth, or the Wan2.2-TI2V-5B folder holding it")
    a.add_argument("--t5", required=True,
                   help="the umT5 encoder models_t5_umt5-xxl-enc-bf16.pth, or the folder holding it (Wan2.2-TI2V-5B)")
    a.add_argument("--t5-tokenizer", default=None,
                   help="the google/umt5-xxl tokenizer folder (default: google/umt5-xxl beside the umT5 file)")
    a.add_argument("--vlm", required=True,
                   help="the Qwen3-VL-2B-Instruct folder (config, tokenizer, processor, chat template; its weights "
                        "are used only when the Motus checkpoint holds none)")
    a.add_argument("--wan-config", default=None,
                   help="the video expert's Wan config JSON giving text_len (default: wan_config.json beside the "
                        "Motus file, else the config.json of the Wan2.2-TI2V-5B folder)")
    a.add_argument("--preset", default="paper",
                   help="preset giving what the files do not carry: video size, frames, inference steps "
                        "(default paper)")
    a.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
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
        if args.action == "assemble":
            from motus_ros.motus.released import assemble

            info = assemble(args.motus, args.vae, args.t5, args.vlm, args.out, t5_tokenizer=args.t5_tokenizer,
                            wan_config=args.wan_config, base=base,
                            log=lambda msg: print(f"[assemble] {msg}", file=sys.stderr))
            print(json.dumps({"assembled": args.out, **info}, indent=2))
            return 0
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
