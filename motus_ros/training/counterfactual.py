"""Action-conditioned counterfactuals: does the world model use the actions it is given?

From one saved simulator state, K different action chunks are played (the scripted expert's next
chunk, perturbed copies of it, and one that holds the arm still) and their true futures rendered.
The world model (mode "wm") is asked for its prediction under each chunk from the same condition
frame. With D[a][b] the distance between the prediction for chunk a and the true future under
chunk b, a model that follows its actions has D[a][a] < D[a][b]: the accuracy is the fraction of
ordered pairs (a != b) where that holds. A model that ignores its actions predicts the same future
for every chunk and scores about 0.5 (the diagonal wins by chance); one that copies the condition
frame also ignores them. (This evaluation is not in the Motus paper, arXiv 2512.13030.)

Timing follows the training windows (training/dataset.py): the condition frame at t0, future frame
j at t0 + j / VIDEO_RATE_HZ (j = 1..F), action row i the target for t0 + (i + 1) / CONTROL_RATE_HZ.
The 30 Hz chunk drives the 50 Hz simulation by linear interpolation from the targets held at t0.
Distances are mean squared errors on 0..255 pixels over the F future frames at the model's video
size (the same tiling the policy sees). Pure module: MuJoCo and the policy runtime, no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motus_ros import layout
from motus_ros.sim import world as _world  # noqa: F401 - chooses MUJOCO_GL before mujoco is loaded

import mujoco  # noqa: E402

from motus_ros.training.evaluation import mse  # noqa: E402

PERTURBATIONS_RAD = (0.25, -0.25, 0.5)   # offsets ramped onto the expert chunk's arm joints


@dataclass
class Counterfactual:
    """One start state: the chunks played, their true futures and the model's predictions."""

    seed: int
    start_time_s: float
    names: list[str]
    distances: np.ndarray          # [K, K] MSE(prediction a, truth b)
    truth_spread: np.ndarray       # [K, K] MSE(truth a, truth b): how different the futures really are

    @property
    def accuracy(self) -> float:
        return pair_accuracy(self.distances)


def pair_accuracy(distances: np.ndarray) -> float:
    """Fraction of ordered pairs (a != b) with D[a][a] < D[a][b]."""
    k = distances.shape[0]
    wins = [distances[a, a] < distances[a, b] for a in range(k) for b in range(k) if a != b]
    return float(np.mean(wins)) if wins else float("nan")


def save_state(world) -> np.ndarray:
    """The simulator's full integration state (positions, velocities, controls, time, ...)."""
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(world.model, spec))
    mujoco.mj_getState(world.model, world.data, state, spec)
    return state


def restore_state(world, state: np.ndarray) -> None:
    """Back to a saved state, with derived quantities recomputed (as SimWorld.reset leaves them)."""
    mujoco.mj_setState(world.model, world.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(world.model, world.data)


def candidate_chunks(expert_chunk: np.ndarray, hold: np.ndarray) -> dict[str, np.ndarray]:
    """The expert's chunk, perturbed versions (offset ramped in over the chunk on alternating arm
    joints, grippers untouched) and holding still."""
    chunk = np.asarray(expert_chunk, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, len(chunk))[:, None]
    arm = np.array([j not in layout.GRIPPER_INDICES for j in range(layout.DOF)], dtype=np.float64)
    chunks = {"expert": chunk}
    for i, offset in enumerate(PERTURBATIONS_RAD):
        mask = arm * (np.arange(layout.DOF) % 2 == i % 2)
        chunks[f"expert{offset:+.2f}rad"] = chunk + ramp * offset * mask
    chunks["hold"] = np.repeat(np.asarray(hold, dtype=np.float64)[None], len(chunk), 0)
    return chunks


def play_chunk(world, chunk: np.ndarray, start_targets: np.ndarray, num_frames: int, render) -> list:
    """Drive the world with a 30 Hz chunk from now; returns the rendered frames at +1/5 s .. +F/5 s."""
    from motus_ros.sim.world import CONTROL_DT

    t_rows = (np.arange(len(chunk)) + 1) / layout.CONTROL_RATE_HZ
    times = np.concatenate([[0.0], t_rows])
    rows = np.concatenate([np.asarray(start_targets)[None], chunk], 0)
    every = int(round(1.0 / (layout.VIDEO_RATE_HZ * CONTROL_DT)))        # 10 steps of 0.02 s
    frames = []
    for k in range(num_frames * every):
        t = (k + 1) * CONTROL_DT
        world.step(np.array([np.interp(t, times, rows[:, j]) for j in range(layout.DOF)]))
        if (k + 1) % every == 0:
            frames.append(render())
    return frames


def run_start_state(world, policy, seed: int, start_step: int, task: str, instruction: str) -> Counterfactual:
    """Play the scripted expert to `start_step`, then evaluate every candidate chunk from there."""
    from motus_ros.sim.scripted_expert import ScriptedExpert

    cfg = policy.config
    poses = world.reset(seed)
    expert = ScriptedExpert(task, poses)
    for k in range(start_step):
        world.step(expert.action(k))
    t0 = world.time
    saved = save_state(world)
    hold = world.ctrl_targets()
    cams = lambda: {c: world.render(c) for c in layout.CAMERAS}  # noqa: E731
    condition = cams()
    state = world.qpos()
    rows_t = t0 + (np.arange(cfg.chunk_size) + 1) / layout.CONTROL_RATE_HZ
    lower, upper = world.joint_range()
    chunks = {name: np.clip(c, lower, upper)        # a perturbation never leaves the joint range
              for name, c in candidate_chunks(np.stack([expert.action_at(t) for t in rows_t]), hold).items()}
    truths, predictions = [], []
    for chunk in chunks.values():
        restore_state(world, saved)
        truths.append([policy.model_image(v) for v in play_chunk(world, chunk, hold, cfg.num_future_frames, cams)])
        policy.reset()     # the same noise for every chunk: only the actions differ
        out = policy.infer({"images": condition, "state": state, "instruction": instruction,
                            "mode": "wm", "actions": chunk})
        predictions.append(out["frames"])
    k = len(chunks)
    distances = np.array([[mse(predictions[a], truths[b]) for b in range(k)] for a in range(k)])
    spread = np.array([[mse(truths[a], truths[b]) for b in range(k)] for a in range(k)])
    return Counterfactual(seed=seed, start_time_s=round(t0, 3), names=list(chunks), distances=distances,
                          truth_spread=spread)


def evaluate(policy, task: str, instruction: str, starts: int, seed: int,
             start_steps: tuple[int, ...] = (60, 120, 180, 240)) -> dict:
    """`starts` start states (episode seed, time into the scripted episode); the JSON report."""
    from motus_ros.layout import SIM_IMAGE_SIZE
    from motus_ros.sim.world import SimWorld

    world = SimWorld(task, SIM_IMAGE_SIZE, seed=0, render_quality="fast")
    rng = np.random.default_rng(seed)
    results = []
    try:
        for i in range(starts):
            episode_seed = int(rng.integers(0, 2**31 - 1))
            results.append(run_start_state(world, policy, episode_seed, start_steps[i % len(start_steps)],
                                           task, instruction))
    finally:
        world.close()
    mean_d = np.mean([r.distances for r in results], 0)
    return {
        "starts": starts, "seed": seed, "task": task, "chunks": results[0].names if results else [],
        "accuracy": float(np.mean([r.accuracy for r in results])) if results else float("nan"),
        "accuracy_per_start": [round(r.accuracy, 4) for r in results],
        "mean_distance_matrix": mean_d.round(2).tolist(),
        "mean_truth_spread_matrix": np.mean([r.truth_spread for r in results], 0).round(2).tolist(),
        "per_start": [{"episode_seed": r.seed, "start_time_s": r.start_time_s, "accuracy": round(r.accuracy, 4),
                       "distances": r.distances.round(2).tolist()} for r in results],
        "distance": "MSE on 0..255 pixels over the future frames at the model's video size; "
                    "distances[a][b] = prediction under chunk a vs true future under chunk b",
        "chance": 0.5,
    }
