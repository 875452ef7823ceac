"""`motus-ros export onnx --preset tiny [--checkpoint PATH] --out DIR`: the per-step denoising network
as ONNX (step.onnx) plus its sidecar (step.json); see motus_ros/motus/backends/onnx_export.py.

The export is what the `onnxruntime` and `tensorrt` backends run (policy parameter `onnx_path`).
With --checkpoint, the preset is the checkpoint's own (its config.json); a --preset that disagrees
is refused. Relative paths are taken relative to the current directory.
Prints a JSON summary (files, inputs, outputs, opset, sha256) and exits 0; 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "export the Motus per-step denoising network to ONNX with a sidecar JSON"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros export", description=HELP)
    sub = p.add_subparsers(dest="format", required=True)
    o = sub.add_parser("onnx", help="write step.onnx + step.json to --out")
    o.add_argument("--preset", default=None, help="model preset: tiny, small, paper (default: the checkpoint's "
                                                  "own, tiny without --checkpoint)")
    o.add_argument("--checkpoint", default=None, help="weights (motus_ros folder or official .pt); "
                                                      "default: the preset's random weights for --seed")
    o.add_argument("--seed", type=int, default=0, help="seed of the random weights without --checkpoint (default 0)")
    o.add_argument("--robot", default="sim", help="robot whose normalization statistics are recorded (default sim)")
    o.add_argument("--stats", default=None, help="statistics file to record instead of the robot's default")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    o.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from motus_ros.motus.backends.onnx_export import export_step_onnx
    from motus_ros.motus.checkpoint import CheckpointError, load_checkpoint
    from motus_ros.motus.config import PRESETS, preset
    from motus_ros.motus.model import build_model
    from motus_ros.paths import from_cli
    from motus_ros.policy.runtime import stats_path

    from ._weights import agreed_preset

    try:
        if args.preset is not None and args.preset not in PRESETS:
            raise ValueError(f"--preset '{args.preset}' is not one of {', '.join(PRESETS)}")
        if not 7 <= args.opset <= 23:
            raise ValueError(f"--opset={args.opset}, expected 7..23 (17 is tested)")
        stats = str(from_cli(args.stats)) if args.stats else str(stats_path(args.robot))
        checkpoint = str(from_cli(args.checkpoint)) if args.checkpoint else None
        name = agreed_preset(args.preset, checkpoint) or "tiny"
        if checkpoint:
            # An official checkpoint takes its encoder sizes from the preset; our own ignores it.
            model, _ = load_checkpoint(checkpoint, config=preset(name if name in PRESETS else "paper"))
        else:
            model = build_model(preset(name), seed=args.seed)
        sidecar = export_step_onnx(model, args.out, preset=name, checkpoint=checkpoint, seed=args.seed,
                                   stats=stats, robot=args.robot, opset=args.opset)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"motus-ros export: error: {exc}", file=sys.stderr)
        return 2
    d = sidecar.data
    print(json.dumps({"onnx": str(sidecar.onnx_path), "sidecar": str(sidecar.path), "preset": d["preset"],
                      "opset": d["opset"], "onnx_sha256": d["onnx_sha256"], "weights": d["weights"],
                      "inputs": d["inputs"], "outputs": d["outputs"]}, indent=2))
    return 0
