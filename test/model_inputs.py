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
