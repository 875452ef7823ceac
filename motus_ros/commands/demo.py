"""`motus-ros demo`: the whole Motus loop in simulation, with a summary at the end.

Default: bring up the `sim` graph (MuJoCo arms and cameras, policy, executor, world model,
visualizer, recorder), record one episode of the transfer-cube task while the policy acts, write a
snapshot PNG, stop everything and print what happened.
`--record N`: bring up `sim_teleop` instead and record N scripted-expert episodes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from motus_ros.cli import CliError
from motus_ros.execution.chunks import STRATEGIES
from motus_ros.graph.monitor import GraphMonitor, GraphMonitorError
from motus_ros.layout import SIM_INSTRUCTION

HELP = "run the whole loop in simulation and print a summary (--record N: collect expert episodes)"
# The sim profile runs gym-aloha's transfer-cube scene (config/sim/arm_driver.yaml sets the task).
TASK = "transfer_cube"
INSTRUCTION = SIM_INSTRUCTION
SETTLE_AFTER_SUCCESS_S = 1.0  # wall seconds recorded after the task succeeds
POLICY_START_S = 180.0        # wall seconds for the policy's first chunk (model loading on a CPU)
WORLD_MODEL_GRACE_S = 60.0    # then for the world model's first future (it starts at the same time)


@dataclass
class DemoObservations:
    """What the demo monitor saw on the graph's topics (filled from callbacks); the chunks are in
    GraphMonitor.chunks."""

    joint_states: int = 0
    first_positions: list[float] | None = None
    last_positions: list[float] | None = None
    predicted_futures: int = 0
    wm_futures: int = 0
    dropped_steps: int = 0
    success: bool = False
    max_reward: float = 0.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motus-ros demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="wall-clock seconds the policy episode runs (default 60)")
    parser.add_argument("--record", type=int, default=0, metavar="N",
                        help="record N scripted-expert episodes with the sim_teleop graph instead")
    parser.add_argument("--episode-timeout", type=float, default=90.0,
                        help="wall-clock seconds per expert episode with --record (default 90)")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="policy episode: cap on simulated seconds per wall second (default 1.0, real "
                             "time: on 2 CPU cores a chunk arrives ~0.3-0.7 s after its observation; on a slower "
                             "machine lower it, e.g. 0.3, so the world waits for the policy as it would on a GPU)")
    parser.add_argument("--strategy", default="temporal_ensemble", choices=STRATEGIES,
                        help="policy episode: chunk executor blending (default temporal_ensemble)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder for logs and the snapshot (default runs/demo-<time>)")
    return parser


class DemoMonitor(GraphMonitor):
    """Watches the demo graph; calls the recorder and sim services (GraphMonitor)."""

    def __init__(self):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64

        from motus_msgs.msg import ChunkExecutionStats, PredictedFuture
        from motus_ros.layout import TOPICS

        self.seen = DemoObservations()      # before the base class starts spinning our callbacks
        super().__init__("demo_monitor")
        n = self.node
        n.create_subscription(JointState, TOPICS["joint_states"], self._on_joints, 10)
        n.create_subscription(PredictedFuture, TOPICS["predicted_future"],
                              lambda _: self._bump("predicted_futures"), 2)
        n.create_subscription(PredictedFuture, TOPICS["wm_future"], lambda _: self._bump("wm_futures"), 2)
        n.create_subscription(ChunkExecutionStats, TOPICS["execution_stats"], self._on_stats, 10)
        n.create_subscription(Bool, TOPICS["task_success"], self._on_success, 10)
        n.create_subscription(Float64, "/sim/reward", self._on_reward, 10)

    def _bump(self, name: str) -> None:
        with self._lock:
            setattr(self.seen, name, getattr(self.seen, name) + 1)

    def _on_joints(self, msg) -> None:
        with self._lock:
            self.seen.joint_states += 1
            if self.seen.first_positions is None:
                self.seen.first_positions = list(msg.position)
            self.seen.last_positions = list(msg.position)

    def _on_stats(self, msg) -> None:
        with self._lock:
            self.seen.dropped_steps += int(msg.dropped_steps)

    def _on_success(self, msg) -> None:
        with self._lock:
            self.seen.success = self.seen.success or bool(msg.data)

    def _on_reward(self, msg) -> None:
        with self._lock:
            self.seen.max_reward = max(self.seen.max_reward, float(msg.data))

def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _policy_episode(args, monitor: DemoMonitor, runner, run_dir: Path) -> dict:
    from motus_msgs.srv import StartEpisode, StopEpisode
    from motus_ros.layout import SERVICES

    if not monitor.wait_for(lambda: monitor.seen.joint_states > 0, 120, runner):
        raise CliError("no joint states from the simulated arms within 120 s")
    _fresh_scene(monitor, runner)
    started = monitor.call(StartEpisode, SERVICES["start_episode"],
                           StartEpisode.Request(task=INSTRUCTION, operator_name="motus policy"))
    if not started.success:
        raise CliError(f"recorder refused to start: {started.message}")
    monitor.wait_for(lambda: monitor.seen.success, args.duration, runner)
    snapshot = run_dir / "snapshot.png"
    snap = subprocess.run([str(Path(sys.executable).parent / "motus-ros"), "snapshot", "--out", str(snapshot),
                           "--duration", "8"], capture_output=True, text=True, timeout=120)
    stopped = monitor.call(StopEpisode, SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    seen = monitor.seen
    moved = 0.0
    if seen.first_positions and seen.last_positions:
        moved = max(abs(a - b) for a, b in zip(seen.first_positions, seen.last_positions))
    with monitor._lock:
        chunks = list(monitor.chunks)
    lat = [latency for _, latency in chunks]
    return {
        "task": TASK,
        "chunks": len(chunks),
        "chunk_latency_s": ({"median": statistics.median(lat), "p90": _percentile(lat, 0.9)} if lat else None),
        "chunks_stamped_with_observation_time": sum(1 for stamp, _ in chunks if stamp > 0),
        "dropped_stale_steps": seen.dropped_steps,
        "predicted_futures": seen.predicted_futures,
        "world_model_futures": seen.wm_futures,
        "largest_joint_motion_rad": round(moved, 4),
        "success": seen.success,
        "max_reward": seen.max_reward,
        "episode_bag": stopped.path if stopped.success else f"not kept: {stopped.message}",
        "episode_id": started.episode_id,
        "snapshot_png": str(snapshot) if snap.returncode == 0 else f"failed: {snap.stderr.strip()[-300:]}",
    }


def _record_episodes(args, monitor: DemoMonitor, runner) -> dict:
    from motus_msgs.srv import StartEpisode, StopEpisode
    from motus_ros.layout import SERVICES

    if not monitor.wait_for(lambda: monitor.seen.joint_states > 0, 120, runner):
        raise CliError("no joint states from the simulated arms within 120 s")
    episodes = []
    for index in range(args.record):
        # Recorder first, then the reset that starts the expert: the bag holds the whole
        # demonstration from its first step (only a few old messages precede the reset).
        started = monitor.call(StartEpisode, SERVICES["start_episode"],
                               StartEpisode.Request(task=INSTRUCTION, operator_name="scripted expert"))
        if not started.success:
            raise CliError(f"recorder refused to start episode {index}: {started.message}")
        monitor.seen.success = False
        try:
            monitor.reset_episode()
        except GraphMonitorError:
            monitor.call(StopEpisode, SERVICES["stop_episode"], StopEpisode.Request(keep=False))
            raise
        monitor.wait_for(lambda: monitor.seen.success, args.episode_timeout, runner)
        success = monitor.seen.success
        if success:  # keep recording the settled hand-over for a moment, as a full episode would
            monitor.wait_for(lambda: False, SETTLE_AFTER_SUCCESS_S, runner)
        stopped = monitor.call(StopEpisode, SERVICES["stop_episode"], StopEpisode.Request(keep=True))
        episodes.append({"episode": index, "success": success, "bag": stopped.path, "message": stopped.message})
        print(f"[demo] episode {index + 1}/{args.record}: success={success} bag={stopped.path}", flush=True)
    return {"task": TASK, "episodes": episodes,
            "successes": sum(e["success"] for e in episodes)}


def live_view_url(graph) -> str | None:
    """ws:// address of the graph's Foxglove bridge (None when the graph has none)."""
    if not any("foxglove_bridge" in spec.ros_nodes for spec in graph.nodes):
        return None
    from motus_ros.nodes.foxglove_bridge_node import PARAMS, view_url

    default = {p.name: p.default for p in PARAMS}
    return view_url(graph.parameter("foxglove_bridge", "address", default["address"]),
                    graph.parameter("foxglove_bridge", "port", default["port"]))


def _fresh_scene(monitor: DemoMonitor, runner) -> None:
    """Start the episode as `motus-ros eval` does (GraphMonitor.start_fresh_episode) once the policy
    has published a chunk and the world model a future, or WORLD_MODEL_GRACE_S after the chunk:
    start-up loads models on the same cores. The recorded episode starts at the scene's start pose."""

    seen = monitor.seen
    if not monitor.wait_for(lambda: len(monitor.chunks) > 0, POLICY_START_S, runner):
        raise CliError(f"the policy published no chunk within {POLICY_START_S:.0f} s: {seen.joint_states} joint "
                       f"state(s) seen; nodes visible: {', '.join(sorted(monitor.node.get_node_names())) or 'none'} "
                       "(see logs/policy.log in the run folder)")
    # The world model only imagines futures; the loop does not need it, so a silent one is reported
    # (summary: world_model_futures 0) rather than failing the demo.
    if not monitor.wait_for(lambda: seen.wm_futures > 0, WORLD_MODEL_GRACE_S, runner):
        print(f"[demo] warning: the world model published nothing {WORLD_MODEL_GRACE_S:.0f} s after the policy's "
              "first chunk (see logs/world_model.log in the run folder); the episode runs without it",
              file=sys.stderr, flush=True)

    def forget_the_old_scene() -> None:
        with monitor._lock:
            monitor.seen.success, monitor.seen.max_reward = False, 0.0
            monitor.seen.first_positions = monitor.seen.last_positions

    monitor.start_fresh_episode(runner, 120, before_enable=forget_the_old_scene)


def main(argv: list[str]) -> int:
    from motus_ros.graph.bringup import GraphRunner
    from motus_ros.graph.spec import GraphError, load_graph, with_parameter_overrides

    args = build_parser().parse_args(argv)
    if args.duration <= 0:
        raise CliError(f"--duration: got {args.duration}, expected a positive number of seconds")
    if args.record < 0:
        raise CliError(f"--record: got {args.record}, expected a number of episodes >= 1")
    if args.real_time_factor <= 0:
        raise CliError(f"--real-time-factor: got {args.real_time_factor}, expected > 0")
    run_dir = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    profile = "sim_teleop" if args.record else "sim"
    try:
        graph = load_graph(profile)
    except GraphError as exc:
        raise CliError(str(exc)) from None
    if not args.record:
        graph = with_parameter_overrides(graph, run_dir / "overrides.yaml", {
            "sim": {"ros__parameters": {"real_time_factor": args.real_time_factor}},
            "chunk_executor": {"ros__parameters": {"strategy": args.strategy}}})
    runner = GraphRunner(graph, log_dir=run_dir / "logs")
    # The demo monitor joins the same graph, so it needs the graph's environment too.
    for key, value in graph.process_environment().items():
        os.environ.setdefault(key, value)
    print(f"[demo] bringing up '{profile}' ({len(graph.nodes)} nodes); logs in {run_dir / 'logs'}", flush=True)
    url = live_view_url(graph)
    if url:
        print(f"[demo] live view: open Foxglove (https://app.foxglove.dev or the desktop app), "
              f"Open connection > Foxglove WebSocket > {url}; layout: config/foxglove_layout.json", flush=True)
    monitor = None
    try:
        runner.start()
        monitor = DemoMonitor()
        if args.record:
            summary = _record_episodes(args, monitor, runner)
        else:
            summary = _policy_episode(args, monitor, runner, run_dir)
    finally:
        runner.stop()
        if monitor is not None:
            monitor.close()
    summary["run_dir"] = str(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print("[demo] summary:")
    print(json.dumps(summary, indent=2))
    return 0
