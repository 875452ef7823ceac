"""Random model inputs shared by the model and backend tests (seeded, so runs compare)."""
from __future__ import annotations

import torch


def random_inputs(cfg) -> dict:
    """images, state, actions and future frames for one sample of config `cfg`, in model units."""
    g = torch.Generator().manual_seed(123)
    return {
        "images": torch.rand(1, 3, cfg.video_height, cfg.video_width, generator=g) * 2 - 1,
        "state": torch.rand(1, cfg.state_dim, generator=g),
        "actions": torch.rand(1, cfg.chunk_size, cfg.action_dim, generator=g),
        "future": torch.rand(1, 3, cfg.num_future_frames, cfg.video_height, cfg.video_width, generator=g) * 2 - 1,
    }


def step_network_and_denoise(model) -> tuple:
    """(StepNetwork outputs, model.denoise outputs) on the same seeded inputs at t_video 0.6,
    t_action 0.2: the exported step function must compute exactly what denoise computes."""
    import types

    from motus_ros.motus.backends.base import StepBackend
    from motus_ros.motus.backends.step_network import StepNetwork, example_inputs

    x = example_inputs(model, seed=3)
    cond = types.SimpleNamespace(und_tokens=x["und_tokens"], und_mask=None,
                                 cross_kv=list(zip(x["cross_k"], x["cross_v"])))
    t_v, t_a = torch.tensor([0.6]), torch.tensor([0.2])
    with torch.no_grad():
        ref = model.denoise(cond, x["video_latents"], t_v, x["actions"], t_a, x["state"])
        packed = StepBackend(model).step_inputs(cond, x["video_latents"], t_v, x["actions"], t_a, x["state"])
        out = StepNetwork(model)(**packed)
    return out, ref
