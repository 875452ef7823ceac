"""Scripted-expert episodes straight from the MuJoCo world, written as converted episodes.

The faster in-process companion of `motus-ros demo --record N` + `motus-ros convert`: the same
world (motus_ros.sim.world, cameras 240x320 "fast" as the sim backend renders them by default), the
same scripted expert (motus_ros.sim.scripted_expert), the same tiling and array layout as
motus_ros/data/convert.py, but on simulated time without ROS, so each episode is the full ACT
episode (400 steps of 0.02 s) from the start pose, with exact 30 Hz / 5 Hz timelines.

    python -m motus_ros.training.sim_episodes --out DIR --episodes N [--seed S] [--merge]

--merge adds the episodes to an existing converted folder (e.g. one written by `motus-ros
convert` from recorded bags) and recomputes its splits and statistics over all episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from motus_ros import layout
from motus_ros.layout import SIM_IMAGE_SIZE, SIM_INSTRUCTION
from motus_ros.data import convert as cv

SEED_BASE = 1_000_000        # episode seeds SEED_BASE + seed * 10_000 + i: apart from evaluation sequences


def record_episode(world, seed: int, task: str, instruction: str, steps: int | None = None):
    """One scripted episode -> (ConvertedEpisode, frames (F,384,320,3) uint8, success)."""
    from motus_ros.sim import scripted_expert as se
    from motus_ros.sim import world as simworld

    tiler = cv.resolve_tiler()
    poses = world.reset(seed)
    expert = se.ScriptedExpert(task, poses, steps or se.EPISODE_STEPS)
    dt = simworld.CONTROL_DT
    n_ctrl = len(expert)
    video_every = int(round(1.0 / (layout.VIDEO_RATE_HZ * dt)))          # 10 physics steps = 0.2 s
    qpos = [world.qpos()]
    frames = []
    for k in range(n_ctrl):
        if k % video_every == 0:
            views = {c: world.render(c) for c in layout.CAMERAS}
            frames.append(tiler(views["high"], views["left_wrist"], views["right_wrist"]))
        world.step(expert.action(k))
        qpos.append(world.qpos())
    qpos = np.asarray(qpos)                                               # (n_ctrl+1, 14) at k * dt
    q_times = np.arange(len(qpos)) * dt
    duration = n_ctrl * dt
    ratio = int(round(layout.CONTROL_RATE_HZ / layout.VIDEO_RATE_HZ))     # 6 control steps per frame
    timestamps = np.arange(int(round(duration * layout.CONTROL_RATE_HZ))) / layout.CONTROL_RATE_HZ
    state = np.stack([np.interp(timestamps, q_times, qpos[:, j]) for j in range(layout.DOF)], 1)
    action = np.stack([expert.action_at(t) for t in timestamps])
    frame_steps = np.arange(len(frames), dtype=np.int64) * ratio
    episode = cv.ConvertedEpisode(
        name=f"sim_{task}_seed{seed}", source=f"motus_ros.training.sim_episodes seed {seed}", robot="sim",
        task=instruction, timestamps=timestamps, state=state.astype(np.float32),
        action=action.astype(np.float32), frame_steps=frame_steps, frame_times=timestamps[frame_steps],
        sync_error_s={c: 0.0 for c in layout.CAMERAS}, time_source="sim",
        time_source_reason="in-process simulation on simulated time")
    return episode, np.stack(frames), bool(world.success)


def _load_existing(root: Path) -> list[cv.ConvertedEpisode]:
    meta = json.loads((root / "dataset.json").read_text())
    out = []
    for e in meta["episodes"]:
        with np.load(root / "episodes" / e["name"] / "data.npz") as d:
            out.append(cv.ConvertedEpisode(
                name=e["name"], source=e.get("source", ""), robot=e["robot"], task=e["task"],
                timestamps=d["timestamps"], state=d["state"], action=d["action"], frame_steps=d["frame_steps"],
                frame_times=d["frame_times"], sync_error_s={}, time_source="", split=e.get("split", "train")))
    return out


def finalize(root: Path, episodes: list[cv.ConvertedEpisode], val_fraction: float = 0.1, seed: int = 0) -> None:
    """Splits, statistics and dataset.json over `episodes`, exactly as `motus-ros convert` writes them."""
    cv.finalize_dataset(root, episodes, cv.ConvertConfig(val_fraction=val_fraction, seed=seed), [],
                        "motus_ros training data")

def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from motus_ros.sim import world as simworld

    p = argparse.ArgumentParser(prog="python -m motus_ros.training.sim_episodes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="transfer_cube", choices=tuple(simworld.TASKS))
    p.add_argument("--instruction", default=SIM_INSTRUCTION)
    p.add_argument("--merge", action="store_true", help="add to the converted folder already in --out")
    p.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")
    a = p.parse_args(argv)
    root = a.out
    existing = _load_existing(root) if a.merge and (root / "dataset.json").is_file() else []
    world = simworld.SimWorld(a.task, SIM_IMAGE_SIZE, seed=0, render_quality="fast")
    new, failed = [], 0
    try:
        for i in tqdm(range(a.episodes), desc="sim episodes", file=sys.stderr):
            seed = SEED_BASE + a.seed * 10_000 + i
            episode, frames, success = record_episode(world, seed, a.task, a.instruction)
            if not success and not a.keep_failures:
                failed += 1
                continue
            cv.write_episode(root, episode, frames, compress=True)
            new.append(episode)
    finally:
        world.close()
    finalize(root, existing + new)
    print(json.dumps({"out": str(root), "new_episodes": len(new), "expert_failures_skipped": failed,
                      "total_episodes": len(existing) + len(new)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
