"""Closed-loop episodes of a policy in the MuJoCo world, in process (no ROS, no transport, no latency).

`motus-ros eval --in-process` runs this; `motus-ros eval` (the default) runs the real ROS graph. The
two together separate what the model can do from what the system around it costs: here the
simulation waits for every chunk, so the policy acts on the observation it was given with zero
delay in simulated time.

Per episode: reset the world (the same seed sequence as the sim driver's /sim/reset for the same
--seed, so both evaluations see the same cube placements), then every `replan_s` of simulated time
render the three cameras, infer a chunk from them and the joint positions, and play it. Chunk row i
is the joint target for `(i + 1) / CONTROL_RATE_HZ` after the observation (the training windows'
alignment, motus_ros/training/dataset.py); the 50 Hz control steps take the targets linearly
interpolated between rows, as the chunk executor does. An episode ends at success (gym-aloha reward
at its maximum) or after `episode_s` of simulated time.
"""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from motus_ros import layout
from motus_ros.training.evaluation import EpisodeResult

IMAGE_SIZE = (240, 320)    # the sim backend's default camera size (sim_image_height / sim_image_width)


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


def chunk_target(chunk: np.ndarray, elapsed_s: float) -> np.ndarray:
    """The joint target `elapsed_s` after the chunk's observation (row i at (i + 1) / rate), linearly
    interpolated; before row 0 it is row 0, past the last row the last row (hold)."""
    x = elapsed_s * layout.CONTROL_RATE_HZ - 1.0
    last = len(chunk) - 1
    i0 = int(np.clip(np.floor(x), 0, last))
    i1 = min(i0 + 1, last)
    w = float(np.clip(x - i0, 0.0, 1.0))
    return (1.0 - w) * chunk[i0] + w * chunk[i1]


def run_episodes(policy: ChunkPolicy, task: str, episodes: int, seed: int, instruction: str,
                 episode_s: float = 8.0, replan_s: float = 0.4, image_size=IMAGE_SIZE, on_episode=None):
    """Run `episodes` seeded episodes; returns (list of EpisodeResult, inference seconds per chunk)."""
    from motus_ros.sim import world as simworld

    if replan_s <= 0 or episode_s <= 0:
        raise ValueError(f"replan_s={replan_s}, episode_s={episode_s}: expected both > 0 seconds")
    dt = simworld.CONTROL_DT
    steps = int(round(episode_s / dt))
    replan_steps = max(1, int(round(replan_s / dt)))
    world = simworld.SimWorld(task, image_size, seed=seed, render_quality="fast")
    results, latencies = [], []
    try:
        world.reset()       # as the sim backend's connect(): its start-up scene takes the sequence's first draw
        for index in range(episodes):
            wall0 = time.monotonic()
            poses = world.reset()
            if hasattr(policy, "begin_episode"):
                policy.begin_episode(poses)
            rewards, chunk, k_obs, chunks = [], None, 0, 0
            for k in range(steps):
                if k % replan_steps == 0:
                    views = {c: world.render(c) for c in layout.CAMERAS}
                    out = policy.infer({"images": views, "state": world.qpos(), "instruction": instruction,
                                        "time_s": k * dt})
                    if out.get("actions") is None:
                        raise ValueError(f"policy returned no actions (mode {out.get('mode')!r}); expected mode vla or joint")
                    chunk, k_obs, chunks = np.asarray(out["actions"], dtype=np.float64), k, chunks + 1
                    latencies.append(float(out.get("timing", {}).get("total_s", 0.0)))
                rewards.append(float(world.step(chunk_target(chunk, (k + 1 - k_obs) * dt))))
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


__all__ = ["ChunkPolicy", "ScriptedChunkPolicy", "chunk_target", "run_episodes", "IMAGE_SIZE"]
