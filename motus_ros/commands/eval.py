"""`motus-ros eval`: closed-loop success of a trained Motus in simulation, plus offline metrics.

    motus-ros eval [--checkpoint CKPT --preset P] --task transfer_cube --episodes N
                   [--seed S --episode-timeout SIM_S --out report.json]
    motus-ros eval --offline --data DIR --checkpoint CKPT [--out report.json]

Without --checkpoint it evaluates the weights the sim graph runs (the policy's checkpoint, stats
and preset in config/sim/policy.yaml) and says so; `--checkpoint ''` evaluates the preset's random
weights. With a checkpoint, the preset is the checkpoint's own: a --preset that disagrees is refused.
Relative paths are taken relative to the current directory.

Closed loop: brings up the real `sim` graph (config/graphs/sim.yaml: MuJoCo arms and cameras,
policy, chunk executor; the optional world model, visualizer and recorder are left out unless
--full-graph) with parameter overrides written to <run>/overrides.yaml (checkpoint, stats, preset,
instruction, sim seed). For every episode it disables the arms, calls /sim/reset (the next seed of
the sequence seeded by --seed, so runs are reproducible), waits until the policy has published
chunks computed from the new scene and the old plan has run out (one chunk horizon), enables the
arms and watches /sim/task_success and /sim/reward for --episode-timeout seconds of simulated time.
Chunk latencies come from ActionChunk.inference_latency.

Remote policy: --split starts the graph's `robot` part (sim, executor) and `policy` part as two
process groups (two hosts' worth of processes, each with its lifecycle manager); --transport udp
turns shared memory off (FASTDDS_BUILTIN_TRANSPORTS=UDPv4) so every byte crosses the UDP stack as
between hosts; --image-transport compressed has the sim publish JPEG CompressedImage and the policy
decode it. The report then also gives the cameras' stamp to chunk receipt time.

--counterfactual: from --starts saved sim states, the world model predicts the future under the
expert's next chunk, perturbed ones and holding still; the report has the K x K distance matrix
(prediction under a vs true future under b) and the fraction of ordered pairs where the matching
truth is the nearest (0.5 = the actions are ignored).

--mode joint runs the policy in Joint mode (actions and the predicted frames from one denoising loop,
the paper's 87.0 vs 83.9 % for VLA on RoboTwin); the default vla predicts actions only. Compare the
two with the same weights and --seed.

--in-process runs the same seeded episodes without ROS (motus_ros/training/sim_closed_loop.py): the
simulation waits for each chunk, so the result is what the model can do with zero latency; beside the
graph's result it tells a model problem from a system (latency, transport, blending) problem. With --data the offline metrics (IDM
action MSE, WM PSNR/SSIM; motus_ros/training/evaluation.py) are added to the report.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from motus_ros.cli import CliError
from motus_ros.execution.chunks import STRATEGIES
from motus_ros.graph.monitor import GraphMonitor, GraphMonitorError
from motus_ros.layout import SIM_INSTRUCTION
from motus_ros.paths import from_cli

HELP = "evaluate a checkpoint: closed-loop episodes in the sim graph and offline IDM/WM metrics"
KEEP_NODES = ("arm_driver", "chunk_executor", "policy")
DEFAULT_INSTRUCTION = SIM_INSTRUCTION


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="trained folder (motus-ros train --out) or model folder "
                   "(default: the sim graph's policy checkpoint); '' = the preset's random weights")
    p.add_argument("--preset", default=None, help="model preset (default: the checkpoint's own; without one, "
                                                  "the sim graph's policy preset)")
    p.add_argument("--stats", default="", help="normalisation statistics (default CHECKPOINT/stats.json)")
    p.add_argument("--task", default="transfer_cube", help="sim task (transfer_cube | insertion)")
    p.add_argument("--instruction", default="", help="instruction (default: the one the checkpoint was trained on)")
    p.add_argument("--episodes", type=int, default=20, help="closed-loop episodes (default 20)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the sim's episode sequence (default 1: `motus-ros demo --record` runs the sim's "
                        "default sequence 0, so 1 keeps evaluation placements apart from recorded demos)")
    p.add_argument("--episode-timeout", type=float, default=12.0,
                   help="simulated seconds per episode after the arms are enabled (default 12)")
    p.add_argument("--real-time-factor", type=float, default=1.0,
                   help="cap on simulated seconds per wall second (lower gives a slow policy more time)")
    p.add_argument("--steps", type=int, default=0, help="Euler steps per chunk (0 = config/sim/policy.yaml's "
                   "steps; there 0 = the model's default)")
    p.add_argument("--mode", default="vla", choices=("vla", "joint"),
                   help="policy inference mode: vla (actions only) or joint (actions and predicted frames, "
                        "the paper's Joint mode); the same weights and seeds either way")
    p.add_argument("--strategy", default="", choices=("", *STRATEGIES),
                   help="chunk executor blending ('' = config/sim/chunk_executor.yaml)")
    p.add_argument("--device", default="cpu", help="torch device of the policy node")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="wall seconds for the graph to come up")
    p.add_argument("--threads", type=int, default=0,
                   help="OMP_NUM_THREADS of the node processes (0 = inherit); 1 helps on a shared CPU")
    p.add_argument("--full-graph", action="store_true", help="also start the world model, visualizer, recorder")
    p.add_argument("--split", action="store_true",
                   help="start the graph's robot and policy parts as two process groups (remote policy)")
    p.add_argument("--transport", choices=("default", "udp"), default="default",
                   help="udp: no shared memory, every byte through UDP as between two hosts "
                        "(default: the graph's FASTDDS_BUILTIN_TRANSPORTS, LARGE_DATA)")
    p.add_argument("--image-transport", choices=("raw", "compressed"), default="raw",
                   help="compressed: the sim publishes JPEG CompressedImage and the policy decodes it")
    p.add_argument("--in-process", action="store_true",
                   help="closed loop without ROS: same seeds, the sim waits for every chunk (zero latency)")
    p.add_argument("--scripted", action="store_true",
                   help="--in-process: evaluate the scripted expert (the demonstrations' source) instead of a model")
    p.add_argument("--replan", type=float, default=0.4,
                   help="--in-process: simulated seconds between chunks (default 0.4; a chunk spans 1.6)")
    p.add_argument("--offline", action="store_true", help="only the offline metrics (needs --data)")
    p.add_argument("--counterfactual", action="store_true",
                   help="world model under K different chunks from the same sim states: K x K distance "
                        "matrix and the accuracy (training/counterfactual.py)")
    p.add_argument("--starts", type=int, default=8, help="--counterfactual: start states (default 8)")
    p.add_argument("--data", default="", help="converted dataset for the offline metrics (val split)")
    p.add_argument("--offline-windows", type=int, default=16, help="windows for the offline metrics")
    p.add_argument("--offline-split", choices=("val", "all"), default="val",
                   help="episodes of --data the offline metrics use: its val split (default; all when it has "
                        "none) or all of them (a dataset generated apart, e.g. with a new seed, is all held out)")
    p.add_argument("--out", type=Path, default=Path("eval_report.json"), help="report JSON path")
    p.add_argument("--run-dir", type=Path, default=None, help="folder for node logs (default beside --out)")
    return p


def _graph_weights() -> dict:
    """The sim graph's policy weights: {checkpoint, stats (absolute or ''), preset, source}."""
    from motus_ros import paths
    from motus_ros.graph.spec import GraphError, load_graph

    try:
        graph = load_graph("sim")
    except GraphError as exc:
        raise CliError(str(exc)) from None
    files = graph.node("policy").parameters
    source = ", ".join(str(p.relative_to(paths.share_root())) if p.is_relative_to(paths.share_root()) else str(p)
                       for p in files)
    ckpt, stats = (graph.parameter("policy", key, "") for key in ("checkpoint", "stats"))
    # Paths in the shipped YAML are relative to the package share folder, not to the current one.
    return {"checkpoint": str(paths.resolve(ckpt)) if ckpt else "", "stats": str(paths.resolve(stats)) if stats else "",
            "preset": graph.parameter("policy", "preset", "tiny"), "source": f"the sim graph's policy ({source})"}


def choose_weights(args) -> str:
    """Fill args.checkpoint, args.preset and args.stats from the sim graph where the user gave none;
    return where the weights come from (printed and written to the report)."""
    from motus_ros.paths import from_cli

    from ._weights import agreed_preset

    graph = _graph_weights()
    if args.checkpoint is None:
        args.checkpoint, source = graph["checkpoint"], graph["source"]
        if not args.stats and graph["checkpoint"]:
            args.stats = graph["stats"]
    else:
        source = "--checkpoint"
        args.checkpoint = str(from_cli(args.checkpoint)) if args.checkpoint else ""
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise CliError(f"--checkpoint {args.checkpoint}: no such file or folder (from {source})")
    try:
        preset = agreed_preset(args.preset, args.checkpoint or None)
    except ValueError as exc:
        hint = "" if source == "--checkpoint" else f" (from {source}; --checkpoint '' evaluates random weights)"
        raise CliError(f"{exc}{hint}") from None
    args.preset = preset or graph["preset"]
    if not args.checkpoint:
        return f"none: random weights of preset {args.preset} (seed {args.seed})"
    return f"{args.checkpoint} (preset {args.preset}), from {source}"


def _checkpoint_files(args) -> tuple[str, str, str]:
    """(checkpoint, stats, instruction) with defaults taken from a `motus-ros train` folder;
    args.checkpoint is absolute or '' (choose_weights)."""
    ckpt = args.checkpoint or ""
    stats = args.stats
    instruction = args.instruction
    if ckpt:
        folder = Path(ckpt)
        if not folder.exists():
            raise CliError(f"--checkpoint {args.checkpoint}: no such file or folder")
        if not stats and (folder / "stats.json").is_file():
            stats = str(folder / "stats.json")
        summary = folder / "training.json"
        if not instruction and summary.is_file():
            instruction = json.loads(summary.read_text()).get("instruction", "")
    return ckpt, str(from_cli(stats)) if stats else "", instruction or DEFAULT_INSTRUCTION


class EvalMonitor(GraphMonitor):
    """Episode control (arm enable/disable, /sim/reset) and watching, on simulated time."""

    def __init__(self):
        from std_msgs.msg import Bool, Float64

        from motus_ros.layout import TOPICS

        super().__init__("eval_monitor")
        self.success_times: list[float] = []
        self.rewards: list[tuple[float, float]] = []       # (sim time s, reward)
        self.node.create_subscription(Bool, TOPICS["task_success"], self._on_success, 10)
        self.node.create_subscription(Float64, "/sim/reward", self._on_reward, 10)

    def _on_success(self, msg) -> None:
        if msg.data:
            with self._lock:
                self.success_times.append(self.now())

    def _on_reward(self, msg) -> None:
        with self._lock:
            self.rewards.append((self.now(), float(msg.data)))


def run_episode(monitor: EvalMonitor, runner, index: int, timeout_s: float, horizon_s: float, rtf: float):
    """One seeded episode; returns an EpisodeResult and the latencies of its chunks."""
    from motus_ros.layout import SERVICES
    from motus_ros.sim.world import MAX_REWARD
    from motus_ros.training.evaluation import EpisodeResult

    wall0 = time.monotonic()
    wall_budget = lambda sim_s: 60.0 + 3.0 * sim_s / rtf  # noqa: E731 - sim time may run slower than wall
    n_chunks0 = len(monitor.chunks)            # chunks (and latencies) of this episode: from its reset on
    try:
        start = monitor.start_fresh_episode(runner, wall_budget(horizon_s))
    except GraphMonitorError as exc:
        raise CliError(f"episode {index}: {exc}") from None
    t_start = monitor.now()
    succeeded = lambda: any(t >= t_start for t in monitor.success_times)  # noqa: E731
    monitor.wait_for(lambda: succeeded() or monitor.now() - t_start >= timeout_s, wall_budget(timeout_s), runner)
    t_end = monitor.now()
    monitor.trigger(SERVICES["disable"])
    with monitor._lock:
        rewards = [r for t, r in monitor.rewards if t_start <= t <= t_end]
        chunks = monitor.chunks[n_chunks0:]
    # /sim/reward is sampled at the status rate (10 Hz) while /sim/task_success latches the world's
    # max reward over every physics step, so a brief reward-4 moment can fall between samples.
    max_reward = max(rewards, default=0.0)
    if succeeded():
        max_reward = max(max_reward, float(MAX_REWARD))
    result = EpisodeResult(index=index, seed=start.seed, success=succeeded(),
                           max_reward=max_reward, reward_samples=rewards,
                           sim_duration_s=round(t_end - t_start, 3), wall_duration_s=round(time.monotonic() - wall0, 2),
                           chunks=len(chunks), reset_message=start.message)
    return result, [lat for _, lat in chunks]


def closed_loop(args, ckpt: str, stats: str, instruction: str, run_dir: Path) -> dict:
    from motus_ros.graph.spec import GraphError, load_graph, with_parameter_overrides
    from motus_ros.layout import CONTROL_RATE_HZ
    from motus_ros.training.evaluation import spread, summarize

    try:
        graph = load_graph("sim")
    except GraphError as exc:
        raise CliError(str(exc)) from None
    overrides = {
        "sim": {"ros__parameters": {"task": args.task, "seed": args.seed,
                                    "real_time_factor": args.real_time_factor}},
        **({"chunk_executor": {"ros__parameters": {"strategy": args.strategy}}} if args.strategy else {}),
        "policy": {"ros__parameters": {"preset": args.preset, "checkpoint": ckpt, "stats": stats,
                                       "instruction": instruction, "device": args.device, "seed": args.seed,
                                       "mode": args.mode,
                                       # 0 keeps config/sim/policy.yaml's steps (tuned for the shipped model)
                                       **({"steps": args.steps} if args.steps else {})}},
    }
    if args.image_transport != "raw":
        for node in ("sim", "policy"):
            overrides[node]["ros__parameters"]["image_transport"] = args.image_transport
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.full_graph:
        graph = replace(graph, nodes=tuple(n for n in graph.nodes if set(n.ros_nodes) & set(KEEP_NODES)))
    graph = with_parameter_overrides(graph, run_dir / "overrides.yaml", overrides)
    log = open(run_dir / "bringup.log", "w")
    extra = {"OMP_NUM_THREADS": str(args.threads)} if args.threads > 0 else {}
    if args.transport == "udp":
        extra["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"     # this monitor too
    runner = _runner(graph, args.split, log, run_dir / "logs", extra)
    for key, value in graph.process_environment().items():
        os.environ.setdefault(key, value)
    print(f"[eval] bringing up {[n.name for n in graph.nodes]}; logs in {run_dir / 'logs'}", file=sys.stderr,
          flush=True)
    monitor = None
    results, latencies = [], []
    wall0 = time.monotonic()
    try:
        runner.start()
        monitor = EvalMonitor()
        if not monitor.wait_for(lambda: len(monitor.chunks) > 0, args.startup_timeout, runner):
            raise CliError(f"no ActionChunk within {args.startup_timeout:.0f} s of start-up; see {run_dir / 'logs'}")
        from motus_ros.motus.checkpoint import read_own_config
        from motus_ros.motus.config import preset as make_preset

        cfg = read_own_config(ckpt) if ckpt else make_preset(args.preset)
        horizon_s = cfg.chunk_size / CONTROL_RATE_HZ
        for i in range(args.episodes):
            result, lat = run_episode(monitor, runner, i, args.episode_timeout, horizon_s, args.real_time_factor)
            results.append(result)
            latencies.extend(lat)
            print(f"[eval] episode {i + 1}/{args.episodes}: success={result.success} "
                  f"max_reward={result.max_reward:g} chunks={result.chunks} ({result.reset_message})",
                  file=sys.stderr, flush=True)
    except GraphMonitorError as exc:   # a required node died, a service went silent: one line
        raise CliError(f"{exc}; see {run_dir / 'logs'}") from None
    finally:
        runner.stop()
        if monitor is not None:
            monitor.close()
        log.close()
    meta = {"task": args.task, "instruction": instruction, "checkpoint": ckpt or None, "stats": stats or None,
            "preset": args.preset, "seed": args.seed, "episode_timeout_sim_s": args.episode_timeout,
            "real_time_factor_cap": args.real_time_factor,
            "euler_steps": graph.parameter("policy", "steps", 0) or "model default", "mode": args.mode,
            "node_threads": args.threads or "default",
            "executor_strategy": args.strategy or "config/sim/chunk_executor.yaml", "graph": "sim (" + ", ".join(name for n in graph.nodes for name in n.ros_nodes) + ")",
            "split": "robot and policy parts as two process groups" if args.split else "one process group",
            "transport": "UDPv4 only (no shared memory)" if args.transport == "udp"
                         else graph.process_environment().get("FASTDDS_BUILTIN_TRANSPORTS", "default"),
            "image_transport": args.image_transport,
            "observation_to_chunk_receipt_sim_s": spread(monitor.chunk_ages if monitor is not None else []),
            "wall_time_s": round(time.monotonic() - wall0, 1),
            "success_criterion": "gym-aloha reward reached 4 (ACT, Zhao et al. 2023)",
            "reference": "ACT: 90% transfer-cube success with 50 scripted demonstrations (Zhao et al. 2023)"}
    return summarize(results, latencies, meta)


def _runner(graph, split: bool, log, log_dir: Path, extra: dict):
    """One GraphRunner, or with split one per part (robot, policy) as a RunnerGroup."""
    from motus_ros.graph.bringup import GraphRunner, RunnerGroup
    from motus_ros.graph.spec import GraphError

    if not split:
        return GraphRunner(graph, out=log, log_dir=log_dir, extra_environment=extra)
    try:
        parts = [graph.part(name) for name in ("robot", "policy")]
    except GraphError as exc:
        raise CliError(f"--split: {exc}") from None
    return RunnerGroup([GraphRunner(part, out=log, log_dir=log_dir / part.part_name, extra_environment=extra)
                        for part in parts])


def _configured_steps() -> int | None:
    """config/sim/policy.yaml's Euler steps (None: the model's default), so that the in-process loop
    evaluates what the graph runs."""
    from motus_ros.graph.spec import load_graph

    return load_graph("sim").parameter("policy", "steps", 0) or None


def in_process(args, ckpt: str, stats: str, instruction: str) -> dict:
    import torch

    from motus_ros.policy.runtime import load_policy
    from motus_ros.training.evaluation import summarize
    from motus_ros.training.sim_closed_loop import (FirstChunks, ScriptedChunkPolicy, executor_settings,
                                                     run_episodes, scene_dependence)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.scripted:
        policy, ckpt, stats = ScriptedChunkPolicy(args.task), "", ""
    else:
        policy = load_policy(preset=args.preset, checkpoint=ckpt or None, stats=stats or None, device=args.device,
                             mode=args.mode, steps=args.steps or _configured_steps(), seed=args.seed)
    wall0 = time.monotonic()

    def report(r) -> None:
        print(f"[eval] episode {r.index + 1}/{args.episodes}: success={r.success} max_reward={r.max_reward:g} "
              f"chunks={r.chunks} (seed {r.seed})", file=sys.stderr, flush=True)

    try:
        watched = FirstChunks(policy)
        results, latencies = run_episodes(watched, args.task, args.episodes, args.seed, instruction,
                                          episode_s=args.episode_timeout, replan_s=args.replan, strategy=args.strategy,
                                          on_episode=report)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    meta = {"task": args.task, "instruction": instruction, "checkpoint": ckpt or None, "stats": stats or None,
            "preset": args.preset, "seed": args.seed, "episode_timeout_sim_s": args.episode_timeout,
            "graph": "none (in process: motus_ros.training.sim_closed_loop, zero latency)",
            "policy": "scripted expert" if args.scripted else "motus",
            "euler_steps": None if args.scripted else policy.steps, "mode": "scripted" if args.scripted else args.mode,
            "replan_sim_s": args.replan, "executor_strategy": executor_settings(args.strategy)["strategy"],
            "torch_threads": torch.get_num_threads(), "wall_time_s": round(time.monotonic() - wall0, 1),
            "success_criterion": "gym-aloha reward reached 4 (ACT, Zhao et al. 2023)",
            "reference": "ACT: 90% transfer-cube success with 50 scripted demonstrations (Zhao et al. 2023)"}
    out = summarize(results, latencies, meta)
    out["chunk_latency_note"] = "wall seconds of inference; the simulation waited for each chunk"
    out["scene_dependence"] = scene_dependence(watched, args.task)
    return out


def offline(args, ckpt: str, stats: str) -> dict:
    from motus_ros.motus.checkpoint import load_checkpoint
    from motus_ros.motus.config import preset as make_preset
    from motus_ros.motus.model import build_model
    from motus_ros.training import dataset as ds
    from motus_ros.training.evaluation import offline_metrics

    try:
        data = ds.load_dataset(args.data, stats=stats or None)
    except ds.DatasetError as exc:
        raise CliError(str(exc)) from None
    model = load_checkpoint(ckpt, device=args.device)[0] if ckpt else build_model(make_preset(args.preset), args.device)
    everything = list(range(len(data.episodes)))
    held_out = everything if args.offline_split == "all" else (data.split("val") or everything)
    held_out = data.trainable(held_out)      # episodes with joint data: the metrics need real actions
    if not held_out:
        raise CliError(f"--data {args.data}: no held-out episode with joint data (label-free episodes, "
                       "\"has_actions\": false, have no actions to compare with)")
    res = offline_metrics(model, data, held_out, args.offline_windows, steps=args.steps or None, seed=args.seed)
    res["episodes"] = [data.episodes[i].name for i in held_out]
    res["split"] = ("all" if args.offline_split == "all" else "val") if data.split("val") else "all (no val split)"
    return res


def counterfactual(args, ckpt: str, stats: str, instruction: str) -> dict:
    """World model under different chunks from the same states (training/counterfactual.py)."""
    import torch

    from motus_ros.policy.runtime import load_policy
    from motus_ros.training.counterfactual import evaluate

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    policy = load_policy(preset=args.preset, checkpoint=ckpt or None, stats=stats or None, device=args.device,
                         steps=args.steps or _configured_steps(), seed=args.seed)
    result = evaluate(policy, args.task, instruction, args.starts, args.seed)
    result["euler_steps"] = policy.steps
    return result


def check_arguments(args) -> None:
    """Refuse bad options before anything starts; each error names the option and what it expects."""
    if args.episodes < 1 and not args.offline:
        raise CliError(f"--episodes: got {args.episodes}, expected >= 1 closed-loop episodes "
                       "(--offline --data DIR runs none)")
    if args.episode_timeout <= 0:
        raise CliError(f"--episode-timeout: got {args.episode_timeout}, expected > 0 simulated seconds")
    if args.offline and not args.data:
        raise CliError("--offline needs --data DIR (a converted dataset; its val split is held out)")
    if args.steps < 0:
        raise CliError(f"--steps: got {args.steps}, expected >= 1 Euler steps (or 0 for config/sim/policy.yaml's)")
    if args.replan <= 0:
        raise CliError(f"--replan: got {args.replan}, expected > 0 simulated seconds")
    if args.scripted and not args.in_process:
        raise CliError("--scripted needs --in-process (the graph runs the policy node)")
    if args.offline and args.in_process:
        raise CliError("--offline and --in-process: give one (--offline runs no episode)")
    if args.counterfactual and (args.offline or args.in_process or args.scripted or args.split):
        raise CliError("--counterfactual runs on its own: drop --offline/--in-process/--scripted/--split")
    if args.mode != "vla" and (args.offline or args.counterfactual or args.scripted):
        raise CliError(f"--mode {args.mode}: only for closed-loop episodes of a model (drop --offline/"
                       "--counterfactual/--scripted)")
    if args.starts < 1:
        raise CliError(f"--starts: got {args.starts}, expected >= 1 start states")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    if args.scripted:
        args.checkpoint, args.preset, weights = "", None, "scripted expert"
    else:
        weights = choose_weights(args)
    print(f"[eval] weights: {weights}", file=sys.stderr, flush=True)
    ckpt, stats, instruction = _checkpoint_files(args)
    run_dir = args.run_dir or args.out.parent / (args.out.stem + "_run")
    report: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "weights": weights}
    if args.counterfactual:
        report["counterfactual"] = counterfactual(args, ckpt, stats, instruction)
    elif not args.offline:
        if args.in_process:
            report["closed_loop"] = in_process(args, ckpt, stats, instruction)
        else:
            report["closed_loop"] = closed_loop(args, ckpt, stats, instruction, run_dir)
    if args.data:
        report["offline"] = offline(args, ckpt, stats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    closed = report.get("closed_loop", {})
    short = {k: closed[k] for k in ("episodes", "successes", "success_rate", "mean_return", "chunk_latency_s")
             if k in closed}
    if "counterfactual" in report:
        short["counterfactual"] = {k: report["counterfactual"][k] for k in ("starts", "accuracy", "chance")}
    if "offline" in report:
        short["offline"] = {k: v for k, v in report["offline"].items() if k != "episodes"}
    print(json.dumps({"report": str(args.out), **short}, indent=2))
    return 0
