"""The `paper` preset built on the meta device matches the parameter counts of arXiv 2512.13030."""
from __future__ import annotations

import pytest
import torch

from motus_ros.motus.config import preset
from motus_ros.motus.model import build_model

# Paper Sec. 3 / digest: "~8B (VGM 5B + VLM 2.13B + Action 641M + Und. 253M)".
PAPER_ACTION = 641e6
PAPER_UND = 253e6


@pytest.fixture(scope="module")
def counts():
    model = build_model(preset("paper"), device="meta", build_encoders=False)
    assert all(p.device.type == "meta" for p in model.parameters())
    return model.parameter_counts()


def test_action_and_understanding_experts_within_2_percent(counts):
    assert abs(counts["action_expert"] - PAPER_ACTION) / PAPER_ACTION < 0.02
    assert abs(counts["und_expert"] - PAPER_UND) / PAPER_UND < 0.02


def test_video_expert_equals_wan22_ti2v_5b_transformer(counts):
    from diffusers import WanTransformer3DModel

    # Wan2.2-TI2V-5B transformer config: 30 layers, 24 heads x 128, FFN 14336, 48 channels, patch 1x2x2.
    with torch.device("meta"):
        wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128,
                                    in_channels=48, out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336,
                                    num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
    assert counts["video_expert"] == sum(p.numel() for p in wan.parameters())
    assert 4.9e9 < counts["video_expert"] < 5.1e9


def test_paper_sizes():
    cfg = preset("paper")
    assert (cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.video_ffn_dim, cfg.latent_channels) == (30, 24, 128, 14336, 48)
    assert (cfg.action_hidden, cfg.action_ffn_dim, cfg.und_hidden, cfg.und_ffn_dim, cfg.vlm_hidden) == (1024, 4096, 512, 2048, 2048)
    assert (cfg.chunk_size, cfg.num_future_frames, cfg.num_inference_steps) == (48, 8, 10)
    assert (cfg.video_height, cfg.video_width, cfg.latent_frames, cfg.latent_size) == (384, 320, 3, (24, 20))
