"""`motus-ros bag {info,repair} BAG...`: inspect recorded episodes, repair bags left by a crash."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "inspect recorded episode bags (info) or make a crashed recording readable (repair)"


def _info(bag: str) -> dict:
    from motus_ros.data import episode as ep
    from motus_ros.data.bag_repair import bag_files, has_footer, needs_repair, scan_file
    files = bag_files(bag)
    folder = files[0].parent
    topics: dict[str, dict] = {}
    per_file, start, end = [], None, None
    for path in files:
        scan = scan_file(path)
        for cid, n in sorted(scan.counts.items()):
            if cid not in scan.channels:
                continue
            topic, sid = scan.channels[cid][0], scan.channels[cid][1]
            entry = topics.setdefault(topic, {"type": scan.schemas.get(sid, ("",))[0], "count": 0})
            entry["count"] += n
        if scan.start_ns is not None:
            start = scan.start_ns if start is None else min(start, scan.start_ns)
            end = scan.end_ns if end is None else max(end, scan.end_ns)
        per_file.append({"file": path.name, "closed": has_footer(path),
                         "messages": scan.message_count,
                         "duration_s": (scan.end_ns - scan.start_ns) / 1e9
                         if scan.start_ns is not None else 0.0})
    sidecar = ep.read_sidecar(folder)
    return {"bag": bag, "needs_repair": needs_repair(bag),
            "messages": sum(t["count"] for t in topics.values()),
            "duration_s": (end - start) / 1e9 if start is not None else 0.0,
            "files": per_file, "topics": topics,
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
                fixed = (f", fixed {', '.join(report.repaired_files)}" if report.repaired_files
                         else "")
                print(f"{bag}: {state}, {report.messages} messages in {len(report.files)} "
                      f"file(s){fixed}"
                      + (f", {report.truncated_bytes} torn bytes cut" if report.truncated_bytes else ""))
        except (BagError, OSError, ValueError) as exc:
            failed += 1
            print(f"{bag}: error: {exc}", file=sys.stderr)
    return 1 if failed else 0
