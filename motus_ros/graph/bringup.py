"""Start a graph description as separate node processes, without `ros2 launch`.

Each node runs in its own process group with its output prefixed by its name. Ctrl-C, SIGTERM or
the end of `duration` stop every node: SIGINT first (rclpy shuts down cleanly), then SIGTERM,
then SIGKILL for anything still alive. A node that exits on its own is reported with its exit
code; if it is `required`, the whole graph stops and bringup exits non-zero.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from motus_ros.graph.spec import GraphError, GraphSpec, NodeSpec


@dataclass
class NodeProcess:
    spec: NodeSpec
    popen: subprocess.Popen
    reader: threading.Thread

    @property
    def pid(self) -> int:
        return self.popen.pid


def resolve_executable(executable: str) -> str:
    """Node executables live beside the Python running bringup (the venv's bin/) or on PATH."""
    if os.sep in executable:
        return executable
    beside = Path(sys.executable).parent / executable
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(executable)
    if found is None:
        raise GraphError(f"executable '{executable}' not found beside {sys.executable} or on PATH "
                         f"(is motus_ros installed? run `make setup`)")
    return found


class GraphRunner:
    """Owns the node processes of one graph."""

    def __init__(self, graph: GraphSpec, out: TextIO = sys.stdout, log_dir: Path | None = None,
                 extra_environment: dict[str, str] | None = None):
        self.graph = graph
        self.out = out
        self.log_dir = log_dir
        self.environment = graph.process_environment()
        self.environment.update(extra_environment or {})
        self.processes: list[NodeProcess] = []
        self.exit_codes: dict[str, int] = {}
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _pump(self, name: str, stream, log: TextIO | None) -> None:
        for line in iter(stream.readline, ""):
            self._say(f"[{name}] {line.rstrip()}")
            if log is not None:
                log.write(line)
                log.flush()
        stream.close()
        if log is not None:
            log.close()

    def start(self) -> None:
        commands = [(spec, [resolve_executable(spec.executable), *spec.command()[1:]])
                    for spec in self.graph.processes()]  # resolve all first: fail before starting any
        for spec, cmd in commands:
            log = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = open(self.log_dir / f"{spec.name}.log", "w")
            popen = subprocess.Popen(cmd, env=self.environment, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                     bufsize=1, start_new_session=True)
            reader = threading.Thread(target=self._pump, args=(spec.name, popen.stdout, log), daemon=True)
            reader.start()
            self.processes.append(NodeProcess(spec, popen, reader))
            self._say(f"[bringup] started {spec.name} (pid {popen.pid}): {' '.join(cmd)}")

    def poll(self) -> NodeProcess | None:
        """Record newly exited nodes; return the first required node that died, if any."""
        failed = None
        for proc in self.processes:
            code = proc.popen.poll()
            if code is not None and proc.spec.name not in self.exit_codes:
                self.exit_codes[proc.spec.name] = code
                self._say(f"[bringup] node {proc.spec.name} exited with code {code}")
                if proc.spec.required and failed is None:
                    failed = proc
        return failed

    def run(self, duration: float | None = None, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Wait until duration elapses, should_stop() is true or a required node dies."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            failed = self.poll()
            if failed is not None:
                self._say(f"[bringup] required node {failed.spec.name} died; stopping the graph")
                self.stop()
                return 1
            if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                self.stop()
                return 0
            if all(p.popen.poll() is not None for p in self.processes):
                return 0
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT every node, then SIGTERM, then SIGKILL whatever is left (whole process groups)."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.processes if p.popen.poll() is None]
            if not alive:
                break
            for proc in alive:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(p.popen.poll() is None for p in alive):
                time.sleep(0.05)
            if sig != signal.SIGINT:
                still = [p.spec.name for p in alive if p.popen.poll() is None]
                self._say(f"[bringup] sent {sig.name} to {', '.join(p.spec.name for p in alive)}"
                          + (f"; still alive: {still}" if still else ""))
        for proc in self.processes:
            proc.reader.join(timeout=2.0)
            # A clean exit leaves no children: kill any grandchild left in the process group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.poll()


class RunnerGroup:
    """Several GraphRunners as one (the parts of a graph split over hosts, each with its own
    environment): start, poll and stop them together, in the GraphRunner interface the monitor uses."""

    def __init__(self, runners: list[GraphRunner]):
        self.runners = runners

    @property
    def processes(self) -> list[NodeProcess]:
        return [p for r in self.runners for p in r.processes]

    @property
    def exit_codes(self) -> dict[str, int]:
        return {k: v for r in self.runners for k, v in r.exit_codes.items()}

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    def poll(self) -> NodeProcess | None:
        failed = [r.poll() for r in self.runners]   # every runner records its exits
        return next((f for f in failed if f is not None), None)

    def stop(self, timeout: float = 10.0) -> None:
        for runner in self.runners:
            runner.stop(timeout)
