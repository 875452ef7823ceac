"""Scripted-expert episodes straight from the MuJoCo world, written as converted episodes.

The faster in-process companion of `motus-ros demo --record N` + `motus-ros convert`: the same
world (motus_ros.sim.world, cameras 240x320 "fast" as the sim backend renders them by default), the
same scripted expert (motus_ros.sim.scripted_expert), the same tiling and array layout as
motus_ros/data/convert.py, but on simulated time without ROS, so each episode is the full ACT
episode (400 steps of 0.02 s) from the start pose, with exact 30 Hz / 5 Hz timelines.

    python -m motus_ros.training.sim_episodes --out DIR --episodes N [--seed S] [--merge]
                                              [--random-motion | --perturbed] [--no-actions]

--merge adds the episodes to an existing converted folder (e.g. one written by `motus-ros
convert` from recorded bags) and recomputes its splits and statistics over all episodes.

--random-motion records task-agnostic episodes instead of the scripted expert's: the paper's
AnyPos-style "task-agnostic" data of its data pyramid (level 4), random smooth joint-space moves of each arm
within its joint limits and grippers opening and closing at random, in the same scene (the cube
placed from the seed, so it is in view and sometimes in the way). They are all kept (there is no
task to fail). --perturbed records the scripted expert with smooth random offsets added to its arm
joint targets (grippers untouched), under the task's instruction: the same scenes and plans, but
actions that the scene does not determine, so that a world model trained on them must read the
actions to predict the arms (the counterfactual evaluation, motus_ros/training/counterfactual.py,
asks exactly that). The plan may fail under the offsets; every episode is kept. Not for
policy training: it would imitate the offsets. --no-actions writes the episodes without joint data (label-free, as
`motus-ros convert --no-actions`; see motus_ros/data/convert.py): video for stage-2 pretraining on
latent actions, or the ablation with the joint data withheld.
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

# Task-agnostic random motion (--random-motion). Each arm moves from target to target, each drawn
# uniformly within RANDOM_SPAN of the start pose per joint and clipped to the joint limits
# (motus_ros.sim.world.LOWER/UPPER = calibration/sim/joints.yaml): the whole range would send the
# arms through the table and each other and out of the cameras' view. Moves follow a minimum-jerk
# profile (smooth: zero speed and acceleration at every target), peak speed 1.875 x distance / time.
RANDOM_SPAN = np.array([0.8, 0.5, 0.5, 0.8, 0.7, 1.0])  # rad, waist .. wrist_rotate
RANDOM_MOVE_S = (0.6, 1.6)       # s, drawn duration of one move (lengthened to respect the speed cap)
RANDOM_MAX_SPEED = 1.0           # rad/s, peak joint speed of a move (the sim driver allows 3-4)
GRIPPER_SEGMENT_S = (0.6, 2.0)   # s, each gripper draws open (1) or closed (0) this often: holds or moves
GRIPPER_MAX_SPEED = 2.0          # normalised units/s, peak gripper speed (the sim driver allows 4)
MIN_JERK_PEAK = 1.875            # peak speed of a minimum-jerk move, in distance / duration
RANDOM_INSTRUCTION = "move both arms at random"

# --perturbed: per arm joint, minimum-jerk moves between offsets drawn uniformly within
# PERTURB_SPAN_RAD (a third of them back to zero: stretches of the plain plan), each move
# PERTURB_MOVE_S long. The counterfactual evaluation ramps 0.25-0.5 rad onto expert chunks of 1.6 s.
PERTURB_SPAN_RAD = 0.5
PERTURB_MOVE_S = (0.8, 2.0)
PERTURB_ZERO_FRACTION = 1 / 3


def _min_jerk(tau):
    """Minimum-jerk position fraction at time fraction tau in [0, 1]."""
    return tau ** 3 * (10 - 15 * tau + 6 * tau ** 2)


def _moves(times: np.ndarray, start: np.ndarray, draw_target, draw_duration) -> np.ndarray:
    """(len(times), len(start)) positions: minimum-jerk moves from `start` through targets
    draw_target(current), each taking draw_duration(current, target) s. times: s, increasing."""
    out = np.empty((len(times), len(start)))
    t0, q0 = 0.0, np.asarray(start, dtype=np.float64)
    q1 = draw_target(q0)
    dur = draw_duration(q0, q1)
    for i, t in enumerate(times):
        while t > t0 + dur:
            t0, q0 = t0 + dur, q1
            q1 = draw_target(q0)
            dur = draw_duration(q0, q1)
        out[i] = q0 + (q1 - q0) * _min_jerk((t - t0) / dur)
    return out


def random_motion_targets(rng: np.random.Generator, steps: int, dt: float) -> np.ndarray:
    """(steps, 14) joint targets at k * dt (s): each arm moves smoothly between random targets near
    the start pose within the joint limits, each gripper opens and closes at random (radians,
    grippers normalised 0 closed .. 1 open). Starts at the sim's start pose."""
    from motus_ros.sim import world as simworld

    start = simworld.qpos16_to_layout(simworld.START_ARM_POSE)
    times = np.arange(steps) * dt
    out = np.empty((steps, layout.DOF))
    arm_lo, arm_hi = simworld.ARM_LOWER, simworld.ARM_UPPER

    def arm_duration(q0, q1):
        return max(rng.uniform(*RANDOM_MOVE_S), MIN_JERK_PEAK * float(np.abs(q1 - q0).max()) / RANDOM_MAX_SPEED)

    def grip_duration(q0, q1):
        return max(rng.uniform(*GRIPPER_SEGMENT_S), MIN_JERK_PEAK * float(np.abs(q1 - q0).max()) / GRIPPER_MAX_SPEED)

    for side in ("left", "right"):
        arm = np.arange(layout.ARM_JOINTS) + (0 if side == "left" else layout.ARM_JOINTS + 1)
        grip = layout.GRIPPER_INDICES[0 if side == "left" else 1]
        home = start[arm]
        out[:, arm] = _moves(times, home, lambda q: np.clip(home + rng.uniform(-RANDOM_SPAN, RANDOM_SPAN),
                                                            arm_lo, arm_hi), arm_duration)
        out[:, grip] = _moves(times, start[[grip]], lambda q: np.array([float(rng.integers(0, 2))]),
                              grip_duration)[:, 0]
    return out


def _row_at_step(rows: np.ndarray, step: int) -> np.ndarray:
    """Row `step` of a per-control-step table (held at the last one after the end)."""
    return rows[int(np.clip(step, 0, len(rows) - 1))].copy()


def _row_at_time(rows: np.ndarray, t: float, dt: float) -> np.ndarray:
    """A per-control-step table (rows k at k * dt s) at t s, linear between rows."""
    x = float(np.clip(t / dt, 0, len(rows) - 1))
    k = int(np.floor(x))
    nxt = min(k + 1, len(rows) - 1)
    return (1 - (x - k)) * rows[k] + (x - k) * rows[nxt]


class RandomMotion:
    """Random-motion targets drawn from `seed`, played as the scripted expert plays its plan:
    action(k) per control step of dt s, action_at(t) linear between them, len()."""

    def __init__(self, seed: int, steps: int, dt: float):
        self.dt = dt
        self.targets = random_motion_targets(np.random.default_rng(seed), steps, dt)   # (steps, 14)

    def __len__(self) -> int:
        return len(self.targets)

    def action(self, step: int) -> np.ndarray:
        """(14,) targets of control step `step` (held at the last one after the end)."""
        return _row_at_step(self.targets, step)

    def action_at(self, t: float) -> np.ndarray:
        """(14,) targets at t s since the episode started, linear between control steps."""
        return _row_at_time(self.targets, t, self.dt)


class PerturbedExpert:
    """A scripted expert's plan plus smooth random offsets on its arm joints (same interface)."""

    def __init__(self, expert, seed: int, dt: float):
        from motus_ros.sim import world as simworld

        self.expert, self.dt = expert, dt
        rng = np.random.default_rng(seed)
        times = np.arange(len(expert)) * dt
        self.offsets = np.zeros((len(expert), layout.DOF))
        arm = [j for j in range(layout.DOF) if j not in layout.GRIPPER_INDICES]

        def draw(_q):
            zero = rng.random(len(arm)) < PERTURB_ZERO_FRACTION
            return np.where(zero, 0.0, rng.uniform(-PERTURB_SPAN_RAD, PERTURB_SPAN_RAD, len(arm)))

        self.offsets[:, arm] = _moves(times, np.zeros(len(arm)), draw, lambda q0, q1: rng.uniform(*PERTURB_MOVE_S))
        self._lower, self._upper = simworld.LOWER, simworld.UPPER      # (14,) layout order

    def __len__(self) -> int:
        return len(self.expert)

    def action(self, step: int) -> np.ndarray:
        return np.clip(self.expert.action(step) + _row_at_step(self.offsets, step), self._lower, self._upper)

    def action_at(self, t: float) -> np.ndarray:
        return np.clip(self.expert.action_at(t) + _row_at_time(self.offsets, t, self.dt), self._lower, self._upper)


def record_perturbed_episode(world, seed: int, task: str, instruction: str, steps: int | None = None,
                             actions: bool = True):
    """One scripted episode with random offsets on the arm joints -> (ConvertedEpisode, frames)."""
    from motus_ros.sim import scripted_expert as se
    from motus_ros.sim import world as simworld

    poses = world.reset(seed)
    expert = PerturbedExpert(se.ScriptedExpert(task, poses, steps or se.EPISODE_STEPS), seed, simworld.CONTROL_DT)
    return _play(world, expert, f"sim_{task}_perturbed_seed{seed}",
                 f"motus_ros.training.sim_episodes --perturbed seed {seed}", instruction, actions)


def record_episode(world, seed: int, task: str, instruction: str, steps: int | None = None, actions: bool = True):
    """One scripted episode -> (ConvertedEpisode, frames (F,384,320,3) uint8, success);
    actions False: without joint data (a label-free episode)."""
    from motus_ros.sim import scripted_expert as se

    poses = world.reset(seed)
    expert = se.ScriptedExpert(task, poses, steps or se.EPISODE_STEPS)
    episode, frames = _play(world, expert, f"sim_{task}_seed{seed}", f"motus_ros.training.sim_episodes seed {seed}",
                            instruction, actions)
    return episode, frames, bool(world.success)


def record_random_episode(world, seed: int, instruction: str = RANDOM_INSTRUCTION, steps: int | None = None,
                          actions: bool = True):
    """One task-agnostic random-motion episode -> (ConvertedEpisode, frames (F,384,320,3) uint8)."""
    from motus_ros.sim import scripted_expert as se
    from motus_ros.sim import world as simworld

    world.reset(seed)                      # the objects placed from the seed, as for the expert
    player = RandomMotion(seed, steps or se.EPISODE_STEPS, simworld.CONTROL_DT)
    return _play(world, player, f"sim_random_seed{seed}",
                 f"motus_ros.training.sim_episodes --random-motion seed {seed}", instruction, actions)


def _play(world, expert, name: str, source: str, instruction: str, actions: bool):
    """Replay `expert`'s targets from the world's reset state, rendering at 5 Hz -> (episode, frames)."""
    from motus_ros.sim import world as simworld

    tiler = cv.resolve_tiler()
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
        name=name, source=source, robot="sim",
        task=instruction, timestamps=timestamps, state=state.astype(np.float32) if actions else None,
        action=action.astype(np.float32) if actions else None, frame_steps=frame_steps,
        frame_times=timestamps[frame_steps], sync_error_s={c: 0.0 for c in layout.CAMERAS}, time_source="sim",
        time_source_reason="in-process simulation on simulated time")
    return episode, np.stack(frames)


def _load_existing(root: Path) -> list[cv.ConvertedEpisode]:
    meta = json.loads((root / "dataset.json").read_text())
    out = []
    for e in meta["episodes"]:
        labeled = e.get("has_actions", True)
        with np.load(root / "episodes" / e["name"] / "data.npz") as d:
            out.append(cv.ConvertedEpisode(
                name=e["name"], source=e.get("source", ""), robot=e["robot"], task=e["task"],
                timestamps=d["timestamps"], state=d["state"] if labeled else None,
                action=d["action"] if labeled else None, frame_steps=d["frame_steps"],
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
    p.add_argument("--instruction", default=None,
                   help=f"task text of the episodes (default '{SIM_INSTRUCTION}'; with --random-motion "
                        f"'{RANDOM_INSTRUCTION}')")
    p.add_argument("--merge", action="store_true", help="add to the converted folder already in --out")
    p.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")
    p.add_argument("--random-motion", action="store_true",
                   help="task-agnostic episodes: random smooth joint moves within the limits, random gripper "
                        "opening and closing (instead of the scripted expert)")
    p.add_argument("--perturbed", action="store_true",
                   help="the scripted expert with smooth random offsets on its arm joint targets (world-model "
                        "data whose actions the scene does not determine; every episode kept)")
    p.add_argument("--no-actions", action="store_true",
                   help="write the episodes without joint data (label-free: frames and timelines only)")
    a = p.parse_args(argv)
    if a.random_motion and a.perturbed:
        p.error("--random-motion and --perturbed: choose one kind of episode")
    instruction = a.instruction if a.instruction is not None else (
        RANDOM_INSTRUCTION if a.random_motion else SIM_INSTRUCTION)
    root = a.out
    existing = _load_existing(root) if a.merge and (root / "dataset.json").is_file() else []
    world = simworld.SimWorld(a.task, SIM_IMAGE_SIZE, seed=0, render_quality="fast")
    new, failed = [], 0
    try:
        for i in tqdm(range(a.episodes), desc="sim episodes", file=sys.stderr):
            seed = SEED_BASE + a.seed * 10_000 + i
            if a.random_motion:           # no task to fail: every episode is kept
                episode, frames = record_random_episode(world, seed, instruction, actions=not a.no_actions)
                success = True
            elif a.perturbed:             # the plan is perturbed on purpose: failures are data too
                episode, frames = record_perturbed_episode(world, seed, a.task, instruction,
                                                           actions=not a.no_actions)
                success = True
            else:
                episode, frames, success = record_episode(world, seed, a.task, instruction, actions=not a.no_actions)
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
