"""From the released files to a running policy (issue 12): `motus-ros checkpoint assemble`.

The released artefacts are fabricated at toy size in their real layouts (test/released_files.py);
the VAE and umT5 files come from fixtures/official_encoders, made by the official modules, whose
outputs are the reference here.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motus_ros.cli import main as cli_main
from motus_ros.layout import CAMERAS, DOF
from motus_ros.motus.checkpoint import CheckpointError, inspect_checkpoint, load_checkpoint, read_own_weights
from motus_ros.motus.config import OFFICIAL_CONVENTIONS
from motus_ros.motus.encoders import WanVAE
from motus_ros.motus.released import (AssembleError, assemble, map_umt5, map_wan_vae, umt5_config, wan_vae_config,
                                      wan_vae_key)
from motus_ros.policy.runtime import MotusPolicy

from released_files import ENCODERS, TEXT_LEN, make_released

torch.set_num_threads(2)
TOL = 1e-5          # the fixture README: the mapping reproduces the official modules within ~1e-6


@pytest.fixture(scope="module")
def reference():
    return torch.load(ENCODERS / "reference.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return make_released(tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="module")
def assembled(released, tmp_path_factory):
    out = tmp_path_factory.mktemp("assembled") / "motus_tiny"
    argv = ["checkpoint", "assemble", "--motus", str(released["motus"]), "--vae", str(released["vae"]),
            "--t5", str(released["wan"]), "--vlm", str(released["vlm"]), "--preset", "tiny", "--out", str(out)]
    assert cli_main(argv) == 0
    return out


def args(released, out, **changes):
    kw = dict(motus=released["motus"], vae=released["vae"], t5=released["t5"], vlm=released["vlm"], out=out)
    kw.update(changes)
    from motus_ros.motus.config import preset

    return {**kw, "base": preset("tiny")}


# The key layouts against the official modules -----------------------------------------------------
def test_wan22_vae_file_computes_the_official_latents_and_frames(reference):
    path = ENCODERS / "Wan2.2_VAE.pth"
    state = torch.load(path, weights_only=True)
    vae = WanVAE(wan_vae_config(state, path)).eval()
    vae.load_state_dict({k[len("vae."):]: v for k, v in map_wan_vae(state, path).items()}, strict=True)
    with torch.no_grad():
        latents = vae.encode(reference["inputs"]["video"])
        frames = vae.decode(latents)
    assert float((latents - reference["ref"]["vae_latents"]).abs().max()) < TOL
    assert float((frames - reference["ref"]["vae_decoded"]).abs().max()) < TOL


def test_umt5_file_computes_the_official_states(reference):
    from transformers import UMT5Config, UMT5EncoderModel

    path = ENCODERS / "models_t5_umt5-xxl-enc-bf16.pth"
    state = torch.load(path, weights_only=True)
    model = UMT5EncoderModel(UMT5Config(**umt5_config(state, path))).eval()
    model.load_state_dict({k[len("text_encoder.model."):]: v for k, v in map_umt5(state, path).items()}, strict=True)
    ids, mask = reference["inputs"]["t5_ids"], reference["inputs"]["t5_mask"]
    with torch.no_grad():
        states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for i, ref in enumerate(reference["ref"]["t5_states"]):
        assert float((states[i, : len(ref)] - ref).abs().max()) < TOL


def test_vae_keys_follow_the_diffusers_names():
    assert wan_vae_key("encoder.downsamples.1.downsamples.2.time_conv.weight") == \
        "encoder.down_blocks.1.downsampler.time_conv.weight"
    assert wan_vae_key("decoder.upsamples.0.upsamples.1.residual.6.bias") == "decoder.up_blocks.0.resnets.1.conv2.bias"
    assert wan_vae_key("encoder.downsamples.0.downsamples.0.shortcut.weight") == \
        "encoder.down_blocks.0.resnets.0.conv_shortcut.weight"
    assert wan_vae_key("decoder.middle.2.residual.3.gamma") == "decoder.mid_block.resnets.1.norm2.gamma"
    assert wan_vae_key("conv1.weight") == "quant_conv.weight" and wan_vae_key("something.else") is None


# One command, one folder ------------------------------------------------------------------------------
def test_assemble_writes_a_self_contained_folder(assembled, released):
    names = {p.name for p in assembled.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "assembled.json", "vlm_processor", "text_tokenizer",
            "model-experts.safetensors", "model-vae.safetensors", "model-text_encoder.safetensors",
            "model-vlm.safetensors"} <= names
    assert not assembled.with_name(assembled.name + ".partial").exists()
    cfg = json.loads((assembled / "config.json").read_text())["config"]
    assert cfg["conventions"] == OFFICIAL_CONVENTIONS.to_dict()
    assert (cfg["vlm_tokenizer"], cfg["text_tokenizer"], cfg["text_max_len"]) == ("files", "files", TEXT_LEN)
    assert cfg["chunk_size"] == released["model"].config.chunk_size
    assert cfg["vae_config"]["latents_std"][:2] == [0.4765, 1.0364]
    sources = json.loads((assembled / "assembled.json").read_text())
    assert sources["sources"]["vae"] == str(released["vae"]) and "from the Motus checkpoint" in sources["notes"][0]
    assert {"chat_template.json", "preprocessor_config.json", "tokenizer.json"} <= set(
        sources["tokenizer_files"]["vlm_processor"])


def test_assembled_folder_loads_offline_and_computes_the_released_parts(assembled, released, reference, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, report = load_checkpoint(assembled)
    assert report.ok, report.summary()
    source = released["model"].state_dict()
    weights = model.state_dict()
    for key in [k for k in source if k.startswith(("video.", "action.", "und.", "vlm."))]:
        assert torch.equal(weights[key], source[key]), key
    # The umT5 of the folder is the released one: same states as the official encoder.
    ids, mask = reference["inputs"]["t5_ids"], reference["inputs"]["t5_mask"]
    with torch.no_grad():
        states = model.text_encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    for i, ref in enumerate(reference["ref"]["t5_states"]):
        assert float((states[i, : len(ref)] - ref).abs().max()) < TOL
    with torch.no_grad():
        latents = model.encode_frames(reference["inputs"]["video"])
    assert float((latents - reference["ref"]["vae_latents"]).abs().max()) < TOL
    # Real tokenizers attached: the text states are text_len long (the official padding).
    assert model.vlm.processor is not None
    assert model.encode_text(["pick up the red cube"]).shape == (1, TEXT_LEN, model.config.text_dim)
    info = inspect_checkpoint(assembled)
    assert info["tokenizer"].startswith(f"Qwen3-VL processor: {assembled / 'vlm_processor'}")
    assert "MISSING" not in info["tokenizer"] and info["report"]["ok"]


def test_policy_runs_from_the_assembled_folder(assembled):
    policy = MotusPolicy(preset="tiny", checkpoint=str(assembled), steps=2)
    assert policy.config.chunk_size == json.loads((assembled / "config.json").read_text())["config"]["chunk_size"]
    status = policy.tokenizer_status()
    assert "vlm_processor" in status and "text_tokenizer" in status and "\n" not in status
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for c in CAMERAS},
           "state": np.zeros(DOF), "instruction": "pick up the red cube"}
    out = policy.infer(obs)
    assert out["actions"].shape == (policy.config.chunk_size, DOF) and np.isfinite(out["actions"]).all()


def test_train_init_from_the_assembled_folder_keeps_it_self_contained(assembled, tmp_path):
    from test_training import config, synthetic_episode
    from motus_ros.training.sim_episodes import finalize
    from motus_ros.training.trainer import train

    data = tmp_path / "episodes"
    finalize(data, [synthetic_episode(data, i) for i in range(2)], val_fraction=0.5)
    summary = train(config(data, tmp_path / "cache", tmp_path / "tuned", epochs=1, max_steps=1, batch_size=2,
                           val_windows=2, init=str(assembled)), log=lambda s: None)
    assert summary["initialized_from"] == str(assembled)
    tuned = tmp_path / "tuned"
    for sub in ("vlm_processor", "text_tokenizer"):
        assert sorted(p.name for p in (tuned / sub).iterdir()) == sorted(p.name for p in (assembled / sub).iterdir())
    model, report = load_checkpoint(tuned)
    assert report.ok and model.vlm.processor is not None
    start, after = read_own_weights(assembled), read_own_weights(tuned)
    assert set(start) == set(after)


def test_a_folder_without_its_tokenizer_files_is_refused(assembled, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(assembled, copy)
    shutil.rmtree(copy / "text_tokenizer")
    with pytest.raises(CheckpointError, match=r"text_tokenizer: no such folder"):
        load_checkpoint(copy)
    (copy / "model-vae.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-vae.safetensors: missing"):
        load_checkpoint(copy)


def test_vlm_weights_come_from_the_folder_when_the_checkpoint_has_none(tmp_path):
    released = make_released(tmp_path / "src", vlm_in_motus=False)
    out = tmp_path / "out"
    info = assemble(**args(released, out))
    assert "from the VLM folder" in info["notes"][0]
    weights = read_own_weights(out)
    source = released["model"].state_dict()
    for key in [k for k in source if k.startswith("vlm.")]:
        assert torch.equal(weights[key], source[key]), key


# Refusals: one line naming the file, nothing written ---------------------------------------------------
def refused(kwargs, match: str, out: Path):
    with pytest.raises(AssembleError, match=match) as err:
        assemble(**kwargs)
    assert "\n" not in str(err.value)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_missing_files_are_refused_by_name(released, tmp_path):
    out = tmp_path / "out"
    refused(args(released, out, vae=tmp_path / "nowhere" / "Wan2.2_VAE.pth"), r"nowhere/Wan2.2_VAE.pth: missing", out)
    refused(args(released, out, t5=tmp_path), r"models_t5_umt5-xxl-enc-bf16.pth: missing", out)
    refused(args(released, out, motus=tmp_path), r"mp_rank_00_model_states.pt: missing", out)
    refused(args(released, out, t5_tokenizer=tmp_path / "tok"), r"tok: missing", out)
    vlm = tmp_path / "vlm"
    shutil.copytree(released["vlm"], vlm)
    (vlm / "preprocessor_config.json").unlink()
    refused(args(released, out, vlm=vlm), r"vlm/preprocessor_config.json: missing", out)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(AssembleError, match="already exists and is not empty"):
        assemble(**args(released, tmp_path / "full"))


def test_mismatched_files_are_refused_by_name(released, tmp_path):
    out = tmp_path / "out"
    state = torch.load(released["t5"], weights_only=True)
    narrow = {k: v[..., :16] if k == "token_embedding.weight" else v for k, v in state.items()}
    torch.save(narrow, tmp_path / "narrow.pth")
    refused(args(released, out, t5=tmp_path / "narrow.pth", t5_tokenizer=released["wan"] / "google" / "umt5-xxl"),
            r"narrow.pth: umT5 width 16, the video expert's text projection takes 32", out)
    vae = torch.load(released["vae"], weights_only=True)
    vae["decoder.conv1.weight"] = vae["decoder.conv1.weight"][:, :8]
    torch.save(vae, tmp_path / "Wan2.2_VAE.pth")
    refused(args(released, out, vae=tmp_path / "Wan2.2_VAE.pth"),
            r"Wan2.2_VAE.pth: 'decoder.conv1.weight' has shape \[8, 8, 3, 3, 3\], "
            r"the model needs \[8, 48, 3, 3, 3\]", out)
    flat = {re.sub(r"^(encoder\.downsamples\.\d+)\.downsamples\.\d+\.", r"\1.", k): v for k, v in vae.items()}
    torch.save(flat, tmp_path / "wan21.pth")
    refused(args(released, out, vae=tmp_path / "wan21.pth"),
            r"wan21.pth: no 'encoder.downsamples.I.downsamples.J'", out)
    vlm = tmp_path / "vlm"
    shutil.copytree(released["vlm"], vlm)
    cfg = json.loads((vlm / "config.json").read_text())
    (vlm / "config.json").write_text(json.dumps({**cfg, "image_token_id": 3}))
    refused(args(released, out, vlm=vlm), r"image_token_id is \d+ in the tokenizer but 3 in the VLM config", out)
    cfg["text_config"]["hidden_size"] = 64
    (vlm / "config.json").write_text(json.dumps(cfg))
    refused(args(released, out, vlm=vlm), r"vlm/config.json: text_config.hidden_size=64 does not match", out)


def test_cli_error_is_one_line(released, tmp_path, capsys):
    rc = cli_main(["checkpoint", "assemble", "--motus", str(released["motus"]), "--vae", str(tmp_path / "x.pth"),
                   "--t5", str(released["wan"]), "--vlm", str(released["vlm"]), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and err.endswith("x.pth: missing (--vae: the Wan 2.2 VAE)")


# Stage-2 pretrain layout ------------------------------------------------------------------------------
def pretrain_layout(motus_file: Path, out_file: Path, latent_dim: int = 7) -> dict[str, torch.Tensor]:
    """The official `training_mode: pretrain` layout of a finetune-layout file: action-only input
    encoder (no state encoder) with a position table of exactly `chunk` rows, no registers, latent
    action width `latent_dim`."""
    from motus_ros.motus.experts import sincos_positions

    state = torch.load(motus_file, weights_only=True)["module"]
    out, made = {}, {}                    # aliases (action_module.action_expert.*) get the same tensors
    for key, value in state.items():
        suffix = key.split("action_expert.")[-1]
        if suffix in made:
            out[key] = made[suffix]
            continue
        if "input_encoder.state_encoder." in key or key.endswith("action_expert.registers"):
            continue
        if key.endswith("input_encoder.pos_embedding"):
            rows = value.shape[1] - 2 - 4                 # finetune: chunk + state + spare + 4 registers
            value = sincos_positions(rows, value.shape[2]).unsqueeze(0)
        elif key.endswith("input_encoder.action_encoder.0.weight"):
            value = torch.randn(value.shape[0], latent_dim)
        elif key.endswith("decoder.action_head.0.weight"):
            value = torch.randn(latent_dim, value.shape[1])
        elif key.endswith("decoder.action_head.0.bias"):
            value = torch.randn(latent_dim)
        out[key] = value
        if "action_expert." in key:
            made[suffix] = value
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": out}, out_file)
    return out


def test_stage2_pretrain_layout_loads_into_the_finetune_layout(released, tmp_path):
    from motus_ros.motus.config import preset

    source = released["model"]
    pretrain_file = tmp_path / "Motus" / "mp_rank_00_model_states.pt"
    pretrain_layout(released["motus"] / "mp_rank_00_model_states.pt", pretrain_file)
    model, report = load_checkpoint(pretrain_file, config=preset("tiny"))
    assert report.ok, report.summary()
    assert report.fresh == ["action.input_encoder", "action.decoder", "action.registers"]
    cfg = model.config
    assert (cfg.chunk_size, cfg.num_registers, cfg.action_dim, cfg.state_dim) == (source.config.chunk_size, 4, 14, 14)
    ours, theirs = model.state_dict(), source.state_dict()
    carried = [k for k in theirs if k.startswith(("video.", "und.", "action.blocks.", "action.time_"))]
    assert carried and all(torch.equal(ours[k], theirs[k]) for k in carried)
    assert not ours["action.decoder.action_head.0.weight"].any()      # fresh: starts by predicting zero velocity
    info = inspect_checkpoint(pretrain_file, config=preset("tiny"))
    assert info["layout"].startswith("stage-2 pretrain") and info["report"]["fresh"] == report.fresh

    out = tmp_path / "assembled"
    provenance = assemble(**args(released, out, motus=pretrain_file.parent))
    assert provenance["layout"] == "stage-2 pretrain" and "fine-tune before running a robot" in provenance["notes"][-1]
    loaded, rep = load_checkpoint(out)
    assert rep.ok and loaded.config.chunk_size == source.config.chunk_size
    assert all(torch.equal(loaded.state_dict()[k], theirs[k]) for k in carried)
