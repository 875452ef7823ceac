"""World-model rollouts: an action chunk -> predicted frames, optionally chained for longer horizons.

Chaining feeds the last predicted frame of one rollout back as the next rollout's observation
(split back into the three camera views) and the last action of one segment as the next state.

Tile layout (motus_ros/policy/transforms.py tile_cameras, after the paper / DESIGN.md): the head
camera letterboxed into the top half, the two wrist cameras letterboxed into the bottom-left and
bottom-right quarters. Splitting a predicted frame back along those lines and letting the runtime
tile it again reproduces the same boxes, so feeding back is loss-free apart from resampling.
"""
from __future__ import annotations

import numpy as np

from motus_ros.layout import CHUNK_SIZE, DOF

def split_tiled(frame: np.ndarray) -> dict[str, np.ndarray]:
    """Tiled HxWx3 frame -> {'high': top half, 'left_wrist', 'right_wrist': bottom quarters}."""
    h, w = frame.shape[:2]
    top_h, half_w = h // 2, w // 2
    return {"high": np.ascontiguousarray(frame[:top_h]),
            "left_wrist": np.ascontiguousarray(frame[top_h:, :half_w]),
            "right_wrist": np.ascontiguousarray(frame[top_h:, half_w:])}


def segments(actions: np.ndarray, count: int, horizon: int = CHUNK_SIZE) -> list[np.ndarray]:
    """Cut (N, 14) actions into `count` (horizon, 14) segments; missing rows hold the last action."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != DOF or actions.shape[0] == 0:
        raise ValueError(f"actions: got shape {actions.shape}, expected (N>0, {DOF})")
    need = count * horizon
    if actions.shape[0] < need:
        pad = np.repeat(actions[-1:], need - actions.shape[0], axis=0)
        actions = np.concatenate([actions, pad])
    return [actions[i * horizon:(i + 1) * horizon] for i in range(count)]


class ChainedRollout:
    """Wraps a policy (infer/set_mode/reset) so one infer() runs `chain` WM rollouts in a row."""

    def __init__(self, policy, chain: int = 1, horizon: int = CHUNK_SIZE):
        if chain < 1:
            raise ValueError(f"chain: got {chain}, expected >= 1")
        self.policy, self.chain, self.horizon = policy, int(chain), int(horizon)

    def set_mode(self, mode: str, steps: int | None = None) -> None:
        self.policy.set_mode(mode, steps)

    def reset(self) -> None:
        self.policy.reset()

    def infer(self, observation: dict) -> dict:
        """observation['actions']: (N, 14) -> {'frames': (chain*8, H, W, 3), 'timing', 'mode'}."""
        obs = dict(observation)
        all_frames, total = [], 0.0
        for segment in segments(observation["actions"], self.chain, self.horizon):
            obs["actions"] = segment
            obs["mode"] = "wm"
            result = self.policy.infer(obs)
            frames = result.get("frames")
            if frames is None:
                raise ValueError("world model returned no frames")
            frames = np.asarray(frames)
            all_frames.append(frames)
            total += float(result.get("timing", {}).get("total_s", 0.0))
            obs = {**obs, "images": split_tiled(frames[-1]), "state": segment[-1].copy()}
        return {"frames": np.concatenate(all_frames), "actions": None, "mode": "wm",
                "timing": {"total_s": total}, "rollouts": self.chain}
