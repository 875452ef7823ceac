"""`motus-ros` command line: dispatches to one module per sub-command.

Each module in motus_ros/commands/ is a sub-command (`motus-ros <name> ...`) and each module in
motus_ros/bench/ a benchmark (`motus-ros bench <name> ...`). A module defines
`HELP: str` (one line) and `main(argv: list[str]) -> int`. Modules are imported only when
their command runs, so `motus-ros --help` stays fast and never imports torch.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


class CliError(Exception):
    """An error meant for the user: printed as one line, exit status 2."""


def _discover(folder: str) -> dict[str, str]:
    """Map command name -> HELP line for the modules of motus_ros/<folder>/ (read, not imported)."""
    commands = {}
    for path in sorted((PACKAGE_DIR / folder).glob("*.py")):
        if path.name.startswith("_"):
            continue
        help_line = ""
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HELP" for t in node.targets):
                help_line = ast.literal_eval(node.value)
        commands[path.stem.replace("_", "-")] = help_line
    return commands


def _usage(prog: str, commands: dict[str, str]) -> str:
    width = max((len(name) for name in commands), default=0)
    lines = [f"usage: {prog} <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_line}" for name, help_line in commands.items()]
    lines += ["", f"`{prog} <command> --help` describes a command."]
    return "\n".join(lines)


def _dispatch(folder: str, prog: str, argv: list[str]) -> int:
    commands = _discover(folder)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(prog, commands))
        return 0
    name = argv[0]
    if name not in commands:
        raise CliError(f"unknown command '{name}' for {prog}; expected one of: {', '.join(commands)}")
    module = importlib.import_module(f"motus_ros.{folder}.{name.replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


def main(argv: list[str] | None = None) -> int:
    from motus_ros.graph.monitor import GraphMonitorError  # noqa: PLC0415 - no ROS at import

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":
            return _dispatch("bench", "motus-ros bench", argv[1:])
        return _dispatch("commands", "motus-ros", argv)
    except (CliError, GraphMonitorError) as exc:   # a watched graph that failed is a CLI error too
        print(f"motus-ros: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
