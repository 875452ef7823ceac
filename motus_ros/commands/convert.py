"""`motus-ros convert BAG... --out DIR`: recorded episode bags -> training episodes."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from motus_ros import layout

HELP = "convert recorded episode bags to training episodes (motus npz or LeRobot v3)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="motus-ros convert", description=HELP,
        epilog="Bad bags are reported (name and problem) and skipped; the exit status is 1 only "
               "when no bag could be converted. Output layout: motus_ros/data/convert.py.")
    p.add_argument("bags", nargs="+", metavar="BAG",
                   help="episode bag folders, or folders holding them (e.g. data/episodes)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=["motus", "lerobot"], default="motus",
                   help="motus: npz per episode (default); lerobot: LeRobot dataset v3 layout")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share (0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument("--control-rate", type=float, default=layout.CONTROL_RATE_HZ,
                   help="action/state rate in Hz (30)")
    p.add_argument("--video-rate", type=float, default=layout.VIDEO_RATE_HZ,
                   help="frame rate of the tiled video in Hz (5; motus format)")
    p.add_argument("--time-source", choices=["auto", "header", "log"], default="auto",
                   help="message times: header stamps, receive times, or auto (header when set)")
    p.add_argument("--state-topic", default=layout.TOPICS["joint_states"])
    p.add_argument("--action-topic", action="append", default=None,
                   help="action topic(s), first with data wins (default: leader joint states, "
                        "then joint commands)")
    p.add_argument("--robot-type", default=None, help="lerobot: robot_type in info.json "
                   "(default: the episodes' robot profile)")
    p.add_argument("--no-actions", action="store_true",
                   help="motus: write no joint data (state, action) even when the bags have it: "
                        "label-free episodes for stage-2 pretraining on latent actions, or the ablation "
                        "with joint data withheld (bags with cameras only are label-free anyway)")
    p.add_argument("--no-compress", action="store_true", help="motus: plain (faster) npz")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from motus_ros.data.convert import ConvertConfig, convert, expand_bag_paths
    cfg = ConvertConfig(control_rate_hz=args.control_rate, video_rate_hz=args.video_rate,
                        state_topic=args.state_topic, val_fraction=args.val_fraction,
                        seed=args.seed, time_source=args.time_source,
                        compress=not args.no_compress, actions=not args.no_actions)
    if args.action_topic:
        cfg.action_topics = tuple(args.action_topic)
    if not 0.0 <= args.val_fraction < 1.0:
        print(f"motus-ros convert: --val-fraction: got {args.val_fraction}, expected 0 <= v < 1",
              file=sys.stderr)
        return 2
    if args.no_actions and args.format == "lerobot":
        print("motus-ros convert: --no-actions: a LeRobot dataset needs joint data; use --format motus",
              file=sys.stderr)
        return 2
    bags = expand_bag_paths(args.bags)
    if args.format == "lerobot":
        from motus_ros.data.lerobot import LeRobotUnavailable, export_lerobot
        try:
            report = export_lerobot(bags, args.out, cfg, progress=not args.no_progress,
                                    robot_type=args.robot_type)
        except LeRobotUnavailable as exc:
            print(f"motus-ros convert: {exc}", file=sys.stderr)
            return 2
    else:
        report = convert(bags, args.out, cfg, progress=not args.no_progress)
    done, failed = len(report.episodes), len(report.failures)
    print(f"converted {done} of {done + failed} bag(s) into {args.out}"
          + (f"; {failed} skipped:" if failed else ""), file=sys.stderr)
    for bag, problem in report.failures:
        print(f"  {bag}: {problem}", file=sys.stderr)
    return 0 if report.ok else 1
