"""Placeholder so `motus-ros --help` lists `bench`; the dispatch happens in cli.py."""
HELP = "run a benchmark (policy, execution, perception, recording, sim, soak) and print JSON"


def main(argv: list[str]) -> int:  # pragma: no cover - cli.py routes `bench` itself
    from motus_ros.cli import main as cli_main
    return cli_main(["bench", *argv])
