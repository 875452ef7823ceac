"""The Motus policy runtime: `infer(observation) -> dict` and `reset()`, no ROS.

observation = {"images": {"high", "left_wrist", "right_wrist": HxWx3 uint8 RGB, any size},
               "state": (14,) absolute joint positions, "instruction": str,
               optional "mode": str, optional "actions": (chunk, 14) (wm),
               optional "future_images": list of 8 dicts like "images" (idm)}
returns {"actions": (chunk, 14) float64 absolute positions or None (wm, vgm),
         "frames": (8, H, W, 3) uint8 predicted frames in the tiled layout or None (vla, idm),
         "mode": str, "timing": {"total_s", "conditioning_s", "denoise_s"}, "seed": int}

Backends (`backend=`): torch (default), torch_compile, onnxruntime, tensorrt; see
motus_ros/motus/backends. For onnxruntime/tensorrt, `onnx_path` names a `motus-ros export onnx`
output (step.onnx or its folder); left empty, the step network is exported once into the cache
folder ($MOTUS_ROS_CACHE/onnx, else ~/.cache/motus_ros/onnx) keyed by config and weights, and reused.

Predicted actions are clipped to the statistics range before denormalization, so with the robot's
joint limits as statistics no command leaves the limits (the driver still enforces them).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motus_ros.layout import DOF
from motus_ros.motus.backends import make_backend
from motus_ros.motus.config import PRESETS, preset as make_preset
from motus_ros.motus.model import MODES, build_model, check_mode
from motus_ros.paths import resolve

from .transforms import (NormStats, ObservationError, denormalize, from_model_pixels, load_stats, model_frame,
                         normalize, to_model_pixels, validate_images, validate_vector)

from motus_ros import robots

ROBOTS = robots.with_stats()   # the registry (motus_ros/robots.py) names the robots


def stats_path(robot: str) -> Path:
    """models/stats/<robot>.json of a robot in the registry (ValueError naming the robots otherwise)."""
    path = robots.get(robot).stats
    if path is None:
        raise ValueError(f"robot '{robot}' has no statistics; expected one of {', '.join(ROBOTS)} or pass stats=")
    return path


class MotusPolicy:
    """In-process Motus policy. Deterministic for a given seed; reset() re-seeds."""

    def __init__(self, preset: str = "tiny", checkpoint: str | None = None, stats: str | None = None,
                 mode: str = "vla", steps: int | None = None, device: str = "cpu", seed: int = 0,
                 robot: str = "sim", recompute_conditioning: bool = False, backend: str = "torch",
                 onnx_path: str | None = None, precision: str = "auto"):
        if preset not in PRESETS:
            raise ValueError(f"preset '{preset}' is not one of {', '.join(PRESETS)}")
        if robot not in ROBOTS and stats is None:
            raise ValueError(f"robot '{robot}' has no statistics; expected one of {', '.join(ROBOTS)} or pass stats=")
        self.preset = preset
        self.robot = robot
        self.device = torch.device(device)
        self.seed = int(seed)
        self.recompute_conditioning = bool(recompute_conditioning)
        self.stats: NormStats = load_stats(resolve(stats) if stats else stats_path(robot))
        if checkpoint:
            from motus_ros.motus.checkpoint import load_checkpoint

            self.model, self.load_report = load_checkpoint(resolve(checkpoint), config=make_preset(preset),
                                                           device=str(self.device))
        else:
            self.model, self.load_report = build_model(make_preset(preset), device=self.device, seed=self.seed), None
        self.config = self.model.config
        self._checkpoint = str(resolve(checkpoint)) if checkpoint else None
        self._stats_file = str(resolve(stats)) if stats else str(stats_path(robot))
        self.set_backend(backend, onnx_path, precision)
        if self.config.action_dim != DOF or self.config.state_dim != DOF:
            raise ValueError(f"model action/state dims {self.config.action_dim}/{self.config.state_dim}, expected {DOF}")
        self.mode = "vla"
        self.steps = self.config.num_inference_steps
        self.set_mode(mode, steps)
        self.reset()

    def tokenizer_status(self) -> str:
        """One line naming the tokenizers in use (Qwen3-VL processor / umT5 files, or the byte
        stand-in of presets without tokenizer files), for the start-up log."""
        from motus_ros.motus.tokenization import model_tokenizer_status

        return model_tokenizer_status(self.model)

    # Control ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Re-seed the noise generator (the same seed replays the same outputs)."""
        self._generator = torch.Generator().manual_seed(self.seed)

    def set_mode(self, mode: str, steps: int | None = None) -> None:
        """Switch inference mode (vla, wm, idm, vgm, joint) and optionally the denoising steps."""
        self.mode = check_mode(mode)
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or int(steps) < 1:
                raise ValueError(f"steps={steps!r}, expected an integer >= 1")
            self.steps = int(steps)

    def set_backend(self, backend: str, onnx_path: str | None = None, precision: str = "auto",
                    close_previous: bool = True, threads: int = 0) -> None:
        """Swap the step-network backend (same weights); the old one is closed unless close_previous=False.

        threads: ONNX Runtime intra-op threads (0 = its default, one per physical core)."""
        new = make_backend(backend, self.model, onnx_path=str(resolve(onnx_path)) if onnx_path else None,
                           preset=self.preset, checkpoint=self._checkpoint, seed=self.seed, stats=self._stats_file,
                           robot=self.robot, precision=precision, threads=threads)
        old, self.backend, self.backend_name = getattr(self, "backend", None), new, backend
        if old is not None and close_previous:
            old.close()

    # Inference ----------------------------------------------------------------------------------
    def model_image(self, images: dict) -> np.ndarray:
        """Camera dict -> the tiled HxWx3 uint8 frame at the model's video size (what it sees and
        predicts), e.g. to compare a predicted future with the real one."""
        return self._tiled(images, "images")

    def _tiled(self, images: dict, field: str) -> np.ndarray:
        validate_images(images, field)
        return model_frame(images, self.config.video_height, self.config.video_width)

    def infer(self, observation: dict) -> dict:
        start = time.perf_counter()
        if not isinstance(observation, dict):
            raise ObservationError(f"observation: got {type(observation).__name__}, expected a dict")
        for key in ("images", "state", "instruction"):
            if key not in observation:
                raise ObservationError(f"observation: missing '{key}'; got keys {sorted(observation)}")
        mode = check_mode(observation.get("mode", self.mode))
        instruction = observation["instruction"]
        if not isinstance(instruction, str) or not instruction.strip():
            raise ObservationError(f"instruction: got {instruction!r}, expected a non-empty string")
        cfg = self.config
        state = validate_vector("state", observation["state"], (DOF,))
        image = self._tiled(observation["images"], "images")

        actions_in = future = None
        if mode == "wm":
            if observation.get("actions") is None:
                raise ObservationError(f"actions: required in mode 'wm', expected shape ({cfg.chunk_size}, {DOF})")
            given = validate_vector("actions", observation["actions"], (cfg.chunk_size, DOF))
            actions_in = torch.from_numpy(normalize(given, self.stats.action)).float().unsqueeze(0)
        if mode == "idm":
            frames_in = observation.get("future_images")
            if not isinstance(frames_in, (list, tuple)) or len(frames_in) != cfg.num_future_frames:
                seen = len(frames_in) if isinstance(frames_in, (list, tuple)) else type(frames_in).__name__
                raise ObservationError(f"future_images: got {seen}, expected a list of {cfg.num_future_frames} "
                                       "camera dicts (required in mode 'idm')")
            tiles = [to_model_pixels(self._tiled(f, f"future_images[{i}]")) for i, f in enumerate(frames_in)]
            future = torch.from_numpy(np.stack(tiles, axis=1)).unsqueeze(0)          # [1,3,F,H,W]

        dev = self.device
        images_t = torch.from_numpy(to_model_pixels(image)).unsqueeze(0).to(dev)       # [1,3,H,W]
        state_t = torch.from_numpy(normalize(state, self.stats.state)).float().unsqueeze(0).to(dev)
        out = self.model.generate(images_t, state_t, [instruction], mode=mode, steps=self.steps,
                                  actions=None if actions_in is None else actions_in.to(dev),
                                  future_frames=None if future is None else future.to(dev),
                                  generator=self._generator, recompute_conditioning=self.recompute_conditioning,
                                  step_fn=self.backend)
        actions = None
        if out.actions is not None and mode not in ("wm",):
            norm = np.clip(out.actions[0].detach().cpu().double().numpy(), 0.0, 1.0)
            actions = denormalize(norm, self.stats.action)
        frames = None
        if out.frames is not None:
            frames = from_model_pixels(out.frames[0].detach().cpu().numpy().transpose(1, 0, 2, 3))  # [F,H,W,3]
        timing = {"total_s": time.perf_counter() - start,
                  "conditioning_s": float(out.timing.get("conditioning_s", 0.0)),
                  "denoise_s": float(out.timing.get("denoise_s", 0.0))}
        return {"actions": actions, "frames": frames, "mode": mode, "timing": timing, "seed": self.seed}


def load_policy(**kwargs: Any) -> MotusPolicy:
    """MotusPolicy(**kwargs); kept as the factory other modules call."""
    return MotusPolicy(**kwargs)


__all__ = ["MotusPolicy", "load_policy", "MODES", "ROBOTS"]
