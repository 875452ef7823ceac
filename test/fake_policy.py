"""Test double of motus_ros.policy.runtime.MotusPolicy (same interface, no model, no torch).

infer() returns actions = the observed state repeated over a 48-row chunk plus 0.001 * row, and in
JOINT/WM/VGM modes eight predicted frames filled with the chunk counter, so tests can check that
what a node publishes came from the observation it was given.
"""
from __future__ import annotations

import threading

import numpy as np

MODES = ("vla", "wm", "idm", "vgm", "joint")


class FakePolicy:
    def __init__(self, preset="tiny", checkpoint=None, stats=None, mode="vla", steps=None,
                 device="cpu", seed=0, robot="sim", frame_size=(32, 48), backend="torch", onnx_path=None):
        self.kwargs = dict(preset=preset, checkpoint=checkpoint, stats=stats, steps=steps,
                           device=device, seed=seed, robot=robot, backend=backend, onnx_path=onnx_path)
        self.set_mode(mode, steps)
        self.frame_size = frame_size
        self.observations: list[dict] = []
        self.lock = threading.Lock()

    def set_mode(self, mode, steps=None):
        if mode not in MODES:
            raise ValueError(f"mode: got {mode!r}, expected one of {list(MODES)}")
        self.mode, self.steps = mode, steps

    def reset(self):
        self.observations.clear()

    def infer(self, observation):
        with self.lock:
            self.observations.append(observation)
            n = len(self.observations)
        mode = observation.get("mode", self.mode)
        h, w = self.frame_size
        frames = None
        if mode in ("joint", "wm", "vgm"):
            frames = np.full((8, h, w, 3), n % 256, np.uint8)
        actions = None
        if mode in ("vla", "joint", "idm"):
            state = np.asarray(observation["state"], dtype=np.float64)
            actions = state[None, :] + 0.001 * np.arange(1, 49)[:, None]
        return {"actions": actions, "frames": frames, "mode": mode, "seed": 0,
                "timing": {"total_s": 0.0, "conditioning_s": 0.0, "denoise_s": 0.0}}
