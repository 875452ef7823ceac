"""`motus-ros bringup <profile|graph.yaml>`: start a robot profile's node graph without ros2 launch."""
from __future__ import annotations

import argparse
import signal
import threading
from dataclasses import replace
from pathlib import Path

from motus_ros.cli import CliError
from motus_ros.graph.spec import GraphError, available_profiles, check_parameters_file, load_graph

HELP = "start a profile's node graph (sim, mock, agilex_aloha2, ac_one) as separate processes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motus-ros bringup", description=__doc__)
    parser.add_argument("profile", help=f"profile name ({', '.join(available_profiles())}) or a graph YAML path")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to run before stopping everything (default: until Ctrl-C)")
    parser.add_argument("--only", default="", help="comma-separated node names to start (default: all)")
    parser.add_argument("--part", default="", help="start one named part of the graph (its 'parts' field), "
                        "e.g. robot or policy for a two-host deployment (README: Two machines)")
    parser.add_argument("--log-dir", type=Path, default=None, help="also write each node's output here")
    parser.add_argument("--params-file", type=Path, action="append", default=[], metavar="YAML",
                        help="extra ROS parameters file given to every node after its own (the last "
                             "file wins; sections for other node names are ignored); repeatable")
    parser.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
    return parser


def main(argv: list[str]) -> int:
    from motus_ros.graph.bringup import GraphRunner

    args = build_parser().parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        raise CliError(f"--duration: got {args.duration}, expected a positive number of seconds")
    try:
        graph = load_graph(args.profile)
    except GraphError as exc:
        raise CliError(str(exc)) from None
    if args.part:
        try:
            graph = graph.part(args.part)
        except GraphError as exc:
            raise CliError(f"--part: {exc}") from None
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        names = [n.name for n in graph.nodes]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise CliError(f"--only: unknown node(s) {unknown}; profile '{graph.profile}' has {names}")
        graph = replace(graph, nodes=tuple(n for n in graph.nodes if n.name in wanted))
    for extra in args.params_file:
        try:
            check_parameters_file(extra, "every node")
        except GraphError as exc:
            raise CliError(f"--params-file: {exc}") from None
    if args.params_file:
        graph = replace(graph, nodes=tuple(
            replace(n, parameters=tuple(n.parameters) + tuple(p.resolve() for p in args.params_file))
            for n in graph.nodes))
    if args.dry_run:
        for node in graph.processes():
            print(" ".join(node.command()))
        return 0
    runner = GraphRunner(graph, log_dir=args.log_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runner.start()
    except GraphError as exc:
        runner.stop()
        raise CliError(str(exc)) from None
    print(f"[bringup] profile '{graph.profile}': {len(graph.nodes)} node(s) running"
          + (f" for {args.duration:g} s" if args.duration else "; Ctrl-C stops them"), flush=True)
    code = runner.run(duration=args.duration, should_stop=stop.is_set)
    print(f"[bringup] stopped; exit codes: {runner.exit_codes}", flush=True)
    return code
