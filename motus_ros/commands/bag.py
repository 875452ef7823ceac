"""`motus-ros bag {info,repair} BAG...`: inspect recorded episodes, repair bags left by a crash."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "inspect recorded episode bags (info) or make a crashed recording readable (repair)"


def _info(bag: str) -> dict:
    from motus_ros.data import episode as ep
    from motus_ros.data.bag_repair import find_mcap, needs_repair, scan_mcap
    scan = scan_mcap(find_mcap(bag))
    duration = (scan.end_ns - scan.start_ns) / 1e9 if scan.start_ns is not None else 0.0
    sidecar = ep.read_sidecar(find_mcap(bag).parent)
    return {"bag": bag, "needs_repair": needs_repair(find_mcap(bag).parent),
            "messages": scan.message_count, "duration_s": duration,
            "topics": {scan.channels[c][0]: {"type": scan.schemas.get(scan.channels[c][1], ("",))[0],
                                             "count": n}
                       for c, n in sorted(scan.counts.items()) if c in scan.channels},
            "episode": {k: sidecar.get(k) for k in ("episode_id", "status", "task", "operator",
                                                      "robot_profile", "stop_reason")} if sidecar else None}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="motus-ros bag", description=HELP)
    parser.add_argument("action", choices=["info", "repair"])
    parser.add_argument("bags", nargs="+", metavar="BAG", help="bag folders (or .mcap files)")
    args = parser.parse_args(argv)
    from motus_ros.data.bag_repair import BagError, recover_episode
    failed = 0
    for bag in args.bags:
        try:
            if args.action == "info":
                print(json.dumps(_info(bag), indent=2))
            else:
                report = recover_episode(bag)
                state = "repaired" if report.repaired else "already complete"
                print(f"{bag}: {state}, {report.messages} messages"
                      + (f", {report.truncated_bytes} torn bytes cut" if report.truncated_bytes else ""))
        except (BagError, OSError, ValueError) as exc:
            failed += 1
            print(f"{bag}: error: {exc}", file=sys.stderr)
    return 1 if failed else 0
