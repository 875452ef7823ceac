"""Closed-loop episodes of a policy in the MuJoCo world, in process (no ROS, no transport, no latency).

`motus-ros eval --in-process` runs this; `motus-ros eval` (the default) runs the real ROS graph. The
two together separate what the model can do from what the system around it costs: here the
simulation waits for every chunk, so the policy acts on the observation it was given with zero
delay in simulated time.

Per episode: reset the world (the same seed sequence as the sim driver's /sim/reset for the same
--seed, so both evaluations see the same cube placements), then every `replan_s` of simulated time
render the three cameras, infer a chunk from them and the joint positions, and play it. Chunk row i
is the joint target for `(i + 1) / CONTROL_RATE_HZ` after the observation (the training windows'
alignment, motus_ros/training/dataset.py). Chunks go through the chunk executor node's own core
(motus_ros.execution.executor.ChunkExecutor: scheduler, blending, per-tick step limits, policy
timeout) with the parameters the sim graph gives that node (config/sim/chunk_executor.yaml), ticked
at every 50 Hz physics step with the step limits scaled to that rate; it is reset at every episode,
so the old scene's plan is dropped at once. An episode ends at success (gym-aloha reward at its
maximum) or after `episode_s` of simulated time.
"""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from motus_ros import layout
from motus_ros.layout import SIM_IMAGE_SIZE
from motus_ros.execution.chunks import STRATEGIES, Chunk
from motus_ros.execution.executor import ChunkExecutor, ExecutorSettings
from motus_ros.training.evaluation import EpisodeResult

IMAGE_SIZE = SIM_IMAGE_SIZE   # what the sim graph's cameras render


class ChunkPolicy(Protocol):
    """MotusPolicy's interface. The observation also carries "time_s" (simulated seconds since the
    reset); a policy with a `begin_episode(object_poses)` method is told each new scene."""

    def infer(self, observation: dict) -> dict: ...


class ScriptedChunkPolicy:
    """The scripted expert (motus_ros.sim.scripted_expert) as a chunk policy: the reference that shows
    the task can be done through this loop, and what the training demonstrations contain."""

    def __init__(self, task: str, chunk_size: int = layout.CHUNK_SIZE):
        self.task, self.chunk_size, self.expert = task, chunk_size, None

    def begin_episode(self, object_poses: dict) -> None:
        from motus_ros.sim.scripted_expert import ScriptedExpert

        self.expert = ScriptedExpert(self.task, object_poses)

    def infer(self, observation: dict) -> dict:
        if self.expert is None:
            raise RuntimeError("ScriptedChunkPolicy.infer before begin_episode")
        t = float(observation["time_s"]) + (np.arange(self.chunk_size) + 1) / layout.CONTROL_RATE_HZ
        return {"actions": np.stack([self.expert.action_at(x) for x in t]), "mode": "scripted",
                "timing": {"total_s": 0.0}}


class FirstChunks:
    """Wraps a chunk policy and keeps, per episode, the scene (object poses) and the first chunk: the
    one inferred at the start pose, where the joint state is the same in every episode and only the
    cameras tell where the object is."""

    def __init__(self, policy: ChunkPolicy):
        self.policy, self.poses, self.chunks = policy, [], []
        self._fresh = False

    def begin_episode(self, object_poses: dict) -> None:
        self.poses.append(object_poses)
        self._fresh = True
        if hasattr(self.policy, "begin_episode"):
            self.policy.begin_episode(object_poses)

    def infer(self, observation: dict) -> dict:
        out = self.policy.infer(observation)
        if self._fresh and out.get("actions") is not None:
            self.chunks.append(np.asarray(out["actions"], dtype=np.float64))
            self._fresh = False
        return out


def scene_dependence(first: FirstChunks, task: str) -> dict:
    """Does the first chunk follow the scene? Compared with the scripted expert's chunk for the same
    scenes, on the chunk's last row, over the 12 arm joints (radians).

    - correlation: per joint whose expert target varies with the scene, the correlation over
      episodes between policy and expert, averaged. A policy that reads the object's place from the
      cameras approaches 1; one that ignores them is near 0, however its samples spread (a flow
      policy that cannot see the object samples the whole distribution of demonstrated approaches,
      so its spread alone proves nothing).
    - error vs scene_blind_error: the policy's mean absolute error, beside that of always playing the
      expert's average chunk (a policy that ignores the scene but gets the average right).
    """
    n = min(len(first.chunks), len(first.poses))
    if n < 3:
        return {"episodes": n, "note": "needs >= 3 episodes"}
    expert = ScriptedChunkPolicy(task, chunk_size=len(first.chunks[0]))
    expert_last = []
    for poses in first.poses[:n]:
        expert.begin_episode(poses)
        expert_last.append(expert.infer({"time_s": 0.0})["actions"][-1])
    arm = [i for i in range(layout.DOF) if i not in layout.GRIPPER_INDICES]
    policy = np.stack([c[-1] for c in first.chunks[:n]])[:, arm]
    ref = np.stack(expert_last)[:, arm]
    corr = []
    for j in np.flatnonzero(ref.std(0) > 1e-6):      # joints whose target depends on the scene
        if policy[:, j].std() < 1e-9:
            corr.append(0.0)       # a constant cannot follow the scene
        else:
            corr.append(float(np.corrcoef(policy[:, j], ref[:, j])[0, 1]))
    return {"episodes": n, "row_s": round(len(first.chunks[0]) / layout.CONTROL_RATE_HZ, 3),
            "correlation": round(float(np.mean(corr)), 3) if corr else None, "joints_compared": len(corr),
            "error_rad": round(float(np.abs(policy - ref).mean()), 4),
            "scene_blind_error_rad": round(float(np.abs(ref.mean(0) - ref).mean()), 4),
            "policy_spread_rad": round(float(policy.std(0).mean()), 4),
            "expert_spread_rad": round(float(ref.std(0).mean()), 4)}


def executor_settings(strategy: str = "") -> dict:
    """The parameters the sim graph gives its chunk executor (its parameter files over the node's
    defaults); `strategy`, when given, replaces the graph's."""
    import dataclasses

    from motus_ros.graph.spec import load_graph

    graph = load_graph("sim")
    params = {}
    for field in dataclasses.fields(ExecutorSettings):
        value = graph.parameter("chunk_executor", field.name)
        params[field.name] = field.default if value is None else value
    if strategy:
        params["strategy"] = strategy
    return params


def run_episodes(policy: ChunkPolicy, task: str, episodes: int, seed: int, instruction: str,
                 episode_s: float = 8.0, replan_s: float = 0.4, strategy: str = "", image_size=IMAGE_SIZE,
                 on_episode=None):
    """Run `episodes` seeded episodes; returns (list of EpisodeResult, inference seconds per chunk).
    `strategy`: the executor's blending ('' = config/sim/chunk_executor.yaml's)."""
    from motus_ros.sim import world as simworld

    if replan_s <= 0 or episode_s <= 0:
        raise ValueError(f"replan_s={replan_s}, episode_s={episode_s}: expected both > 0 seconds")
    if strategy and strategy not in STRATEGIES:
        raise ValueError(f"strategy: got {strategy!r}, expected one of {list(STRATEGIES)}")
    dt = simworld.CONTROL_DT
    steps = int(round(episode_s / dt))
    replan_steps = max(1, int(round(replan_s / dt)))
    # The graph's executor core with the graph's parameters, ticked at every physics step.
    executor = ChunkExecutor(ExecutorSettings.from_params(executor_settings(strategy)), tick_s=dt)
    world = simworld.SimWorld(task, image_size, seed=seed, render_quality="fast")
    results, latencies = [], []
    try:
        world.reset()       # as the sim backend's connect(): its start-up scene takes the sequence's first draw
        for index in range(episodes):
            wall0 = time.monotonic()
            poses = world.reset()
            if hasattr(policy, "begin_episode"):
                policy.begin_episode(poses)
            executor.reset()
            command = world.qpos()          # held until the first chunk's plan gives a command
            rewards, chunks = [], 0
            for k in range(steps):
                if k % replan_steps == 0:
                    views = {c: world.render(c) for c in layout.CAMERAS}
                    out = policy.infer({"images": views, "state": world.qpos(), "instruction": instruction,
                                        "time_s": k * dt})
                    if out.get("actions") is None:
                        raise ValueError(f"policy returned no actions (mode {out.get('mode')!r}); expected mode vla or joint")
                    chunk = Chunk(k * dt, 1.0 / layout.CONTROL_RATE_HZ, np.asarray(out["actions"], dtype=np.float64),
                                  chunks)
                    executor.add(chunk, now=k * dt)   # zero latency: the sim waited for the chunk
                    chunks += 1
                    latencies.append(float(out.get("timing", {}).get("total_s", 0.0)))
                planned = executor.tick((k + 1) * dt, measured=world.qpos())
                if planned is not None:
                    command = planned
                rewards.append(float(world.step(command)))
                if world.success:
                    break
            result = EpisodeResult(index=index, seed=world.seed, success=bool(world.success),
                                   max_reward=float(world.max_reward), reward_samples=rewards,
                                   sim_duration_s=round(len(rewards) * dt, 3),
                                   wall_duration_s=round(time.monotonic() - wall0, 2), chunks=chunks,
                                   reset_message=f"in-process reset, seed {world.seed}")
            results.append(result)
            if on_episode is not None:
                on_episode(result)
    finally:
        world.close()
    return results, latencies


__all__ = ["ChunkPolicy", "FirstChunks", "IMAGE_SIZE", "ScriptedChunkPolicy", "executor_settings",
           "run_episodes", "scene_dependence"]
