"""The backend interface: a callable that replaces `Motus.denoise` inside `Motus.generate`.

`generate(..., step_fn=backend)` calls `backend(cond, video, t_video, actions, t_action, state,
need_video=...)` once per Euler step and expects (v_video or None, v_action) in float32, exactly as
`Motus.denoise` returns them. The step-invariant conditioning (VLM, text, condition frame) is
computed by the model once per chunk, outside the backend; backends that need plain tensors pack it
once per Conditioning object (see `ConditioningCache`).
"""
from __future__ import annotations

import torch

from . import BackendUnavailable
from .step_network import INPUT_NAMES, pack_conditioning, step_features

__all__ = ["BackendUnavailable", "StepBackend"]


class StepBackend:
    """Base class: subclasses implement `run(inputs: dict[str, Tensor]) -> (v_video, v_action)`."""

    name = "base"

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self._cond_key = None
        self._cond_packed: dict[str, torch.Tensor] | None = None

    def packed_conditioning(self, cond) -> dict[str, torch.Tensor]:
        """Pack a Conditioning once; the same object is reused at every step of one chunk."""
        if self._cond_key is not cond:
            self._cond_packed = pack_conditioning(cond)
            self._cond_key = cond
        return self._cond_packed

    def step_inputs(self, cond, video, t_video, actions, t_action, state) -> dict[str, torch.Tensor]:
        """All inputs of the step network, float32 (und_mask bool), in INPUT_NAMES order."""
        tv_feat, ta_feat = step_features(self.model, t_video, t_action)
        dev = video.device
        inputs = {"video_latents": video.float(), "actions": actions.float(), "state": state.float(),
                  "t_video_features": tv_feat.to(dev), "t_action_features": ta_feat.to(dev),
                  **self.packed_conditioning(cond)}
        return {k: inputs[k] for k in INPUT_NAMES}

    def __call__(self, cond, video, t_video, actions, t_action, state, need_video: bool = True):
        v_video, v_action = self.run(self.step_inputs(cond, video, t_video, actions, t_action, state))
        return (v_video if need_video else None), v_action

    def run(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        """What runs where (for logs and the benchmark JSON)."""
        return {"backend": self.name}

    def close(self) -> None:
        """Release sessions/engines; the default holds nothing beyond the model."""
