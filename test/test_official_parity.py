"""A converted official Motus checkpoint computes the official function (issue 12).

The fixture (test/fixtures/official_tiny, see its README) holds a tiny official-layout checkpoint
with random weights, the inputs fed to the official implementation (thu-ml/Motus f771216, CPU,
float32) and its outputs. The checkpoint is converted the way a user does it (`motus-ros
checkpoint convert`), the converted folder is loaded, and every reference tensor is compared
within TOL max-abs. Sizes, chunk, timesteps and the number of steps are read from the fixture, so
the same test holds for another fixture of another configuration.

Everything downstream of the VLM is fed the reference VLM features (`vlm_last_hidden`); the VLM
itself (built from the fixture's vlm_config.json) is compared on its own at VLM_TOL, because two
transformers versions differ by ~1e-3 there (fixture README).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from motus_ros.cli import main as cli_main
from motus_ros.motus.checkpoint import load_checkpoint
from motus_ros.motus.config import OFFICIAL_CONVENTIONS

torch.set_num_threads(2)

FIXTURE = Path(__file__).parent / "fixtures" / "official_tiny"
TOL = 1e-4            # float32 noise between two correct implementations is ~1e-5 relative
VLM_TOL = 2e-3
SAME_T = 0.6          # the fixture's `*_same_t` outputs: both timesteps at 0.6 (its README)
# The preset only supplies what an official file does not carry (VAE, umT5 sizes); the experts,
# the VLM and the conventions come from the checkpoint and the configs beside it.
ENCODER_PRESET = "tiny"


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("official_parity") / "converted"
    assert cli_main(["checkpoint", "convert", str(FIXTURE), str(out), "--preset", ENCODER_PRESET]) == 0
    loaded, report = load_checkpoint(out)
    assert report.ok, report.summary()
    return loaded


def max_abs(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert tuple(ours.shape) == tuple(ref.shape), f"shape {tuple(ours.shape)} vs reference {tuple(ref.shape)}"
    return float((ours.detach().double() - ref.double()).abs().max())


def compare(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], tol: float) -> None:
    """Assert every (ours, reference) pair within tol; the message lists all that are not."""
    diffs = {name: max_abs(a, b) for name, (a, b) in pairs.items()}
    bad = {k: f"{v:.3e}" for k, v in diffs.items() if not v <= tol}
    assert not bad, f"max-abs above {tol}: {bad}"


def batched(x: torch.Tensor, dims: int) -> torch.Tensor:
    return x if x.dim() == dims else x.unsqueeze(0)


def conditioning(model, reference):
    """The step-invariant inputs from the reference VLM features, umT5 states and condition latent."""
    inp, ref = reference["inputs"], reference["ref"]
    return model.conditioning_from_features(ref["vlm_last_hidden"], batched(inp["t5_emb"], 3), inp["cond_latent"])


def evaluate(model, reference, t_video: float, t_action: float, trace: dict | None = None):
    inp = reference["inputs"]
    b = inp["video_latent"].shape[0]
    with torch.no_grad():
        return model.denoise(conditioning(model, reference), inp["video_latent"], torch.full((b,), float(t_video)),
                             inp["actions"], torch.full((b,), float(t_action)), inp["state"], trace=trace)


def test_converted_config_is_the_official_one(model, reference):
    cfg, off, inp = model.config, reference["official_config"], reference["inputs"]
    wan = json.loads((FIXTURE / "wan_config.json").read_text())
    assert cfg.conventions == OFFICIAL_CONVENTIONS
    assert cfg.chunk_size == off["action_chunk_size"] == inp["actions"].shape[1]
    assert cfg.action_dim == off["action_dim"] and cfg.state_dim == off["action_state_dim"]
    assert cfg.num_layers == off["num_layers"] == wan["num_layers"]
    assert cfg.text_max_len == wan["text_len"]
    # The positional table: [state | chunk | registers] rows are read, plus the official spare row.
    rows = model.action.input_encoder.pos_embedding.shape[1]
    assert rows == 1 + cfg.chunk_size + cfg.num_registers + 1


def test_vlm_features(model, reference):
    vlm = reference["inputs"]["vlm_inputs"]
    with torch.no_grad():
        feats = model.vlm.features(vlm["input_ids"], vlm["attention_mask"], vlm["pixel_values"], vlm["image_grid_thw"])
    compare({"vlm_last_hidden": (feats, reference["ref"]["vlm_last_hidden"])}, VLM_TOL)


def test_one_evaluation_intermediates_and_velocities(model, reference):
    inp, ref = reference["inputs"], reference["ref"]
    trace: dict = {}
    v_video, v_action = evaluate(model, reference, inp["t_video"], inp["t_action"], trace)
    pairs = {"video_velocity": (v_video, ref["video_velocity"]), "action_velocity": (v_action, ref["action_velocity"])}
    layer_keys = [f"L{i}_{kind}" for i in range(model.config.num_layers) for kind in ("after_attn", "out")]
    for key in ("und_tokens_in", "video_tokens_in", "action_tokens_in", "t5_context", "video_temb", "video_tproj",
                "action_temb", "action_tproj", *layer_keys):
        assert key in ref, f"reference lacks {key}"
        if key in layer_keys:
            for stream, ours, theirs in zip(("video", "action", "und"), trace[key], ref[key]):
                pairs[f"{key}.{stream}"] = (ours, theirs)
        else:
            pairs[key] = (trace[key], ref[key])
    compare(pairs, TOL)


def test_velocities_at_the_same_t(model, reference):
    ref = reference["ref"]
    v_video, v_action = evaluate(model, reference, SAME_T, SAME_T)
    compare({"video_velocity_same_t": (v_video, ref["video_velocity_same_t"]),
             "action_velocity_same_t": (v_action, ref["action_velocity_same_t"])}, TOL)


def test_joint_sampling(model, reference):
    """The official inference_step: Euler 1 -> 0 in `steps` equal steps, the same t for video and
    action, the clean condition latent in frame 0 throughout."""
    inp, ref = reference["inputs"], reference["ref"]
    cond = conditioning(model, reference)
    start = torch.cat([inp["cond_latent"], inp["noise_video"][:, :, 1:]], dim=2)
    video, actions = model.sample(cond, start, inp["noise_action"], inp["state"], mode="joint", steps=int(inp["steps"]))
    compare({"sample_actions": (actions, ref["sample_actions"]),
             "sample_video_latent": (video, ref["sample_video_latent"])}, TOL)


def test_inspect_prints_chunk_conventions_and_tokenizer(capsys):
    assert cli_main(["checkpoint", "inspect", str(FIXTURE), "--preset", ENCODER_PRESET]) == 0
    info = json.loads(capsys.readouterr().out)
    ref = torch.load(FIXTURE / "reference.pt", map_location="cpu", weights_only=True)
    assert info["report"]["ok"]
    assert info["chunk_size"] == ref["inputs"]["actions"].shape[1]
    assert info["conventions"] == OFFICIAL_CONVENTIONS.describe()
    assert info["tokenizer"].startswith("byte tokenizer stand-in for Qwen3-VL and umT5 (no tokenizer files")
