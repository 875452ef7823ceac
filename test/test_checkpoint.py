"""Checkpoints: own safetensors format, official DeepSpeed layout with aliases, failures, CLI."""
from __future__ import annotations

import json

import pytest
import torch

from motus_ros.cli import main as cli_main
from motus_ros.motus import checkpoint as ck
from motus_ros.motus.config import OFFICIAL_CONVENTIONS, PROJECT_CONVENTIONS, preset
from motus_ros.motus.model import build_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    m = build_model(preset("tiny"), seed=3)
    with torch.no_grad():  # make the zero-initialised action head non-trivial so outputs depend on weights
        m.action.decoder.action_head[0].weight.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def official_model():
    """A tiny model with the official conventions: what an official-layout file means."""
    m = build_model(preset("tiny").replace(conventions=OFFICIAL_CONVENTIONS), seed=4)
    with torch.no_grad():
        m.action.decoder.action_head[0].weight.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def probe():
    g = torch.Generator().manual_seed(9)
    return torch.rand(1, 3, 192, 160, generator=g) * 2 - 1, torch.rand(1, 14, generator=g)


def outputs(m, probe):
    out = m.generate(probe[0], probe[1], ["fold the towel"], mode="joint", steps=2,
                     generator=torch.Generator().manual_seed(0))
    return out.actions, out.frames


def assert_same_outputs(a, b, probe):
    (a1, f1), (a2, f2) = outputs(a, probe), outputs(b, probe)
    assert torch.equal(a1, a2) and torch.equal(f1, f2)


def write_official(state, path, with_aliases=True):
    torch.save({"module": ck.ours_to_official(state, with_aliases=with_aliases), "global_steps": 10,
                "dp_world_size": 1}, path)


def test_own_format_save_load_identical_outputs(model, probe, tmp_path):
    ck.save_checkpoint(model, tmp_path / "own")
    assert (tmp_path / "own" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "own" / "config.json").read_text())["format"] == ck.FORMAT
    loaded, report = ck.load_checkpoint(tmp_path / "own")
    assert report.ok and report.source_format == "motus_ros"
    assert loaded.config == model.config
    assert_same_outputs(model, loaded, probe)


def test_official_layout_with_aliases_loads_to_same_outputs(official_model, probe, tmp_path):
    model = official_model
    official = ck.ours_to_official(model.state_dict())
    assert "video_module.video_model.wan_model.blocks.0.self_attn.q.weight" in official
    assert "action_module.action_expert.blocks.1.wan_action_qkv" in official
    assert "und_module.und_expert.vlm_adapter.0.weight" in official
    write_official(model.state_dict(), tmp_path / ck.OFFICIAL_FILE)
    loaded, report = ck.load_checkpoint(tmp_path, config=preset("tiny"))
    assert report.ok, report.summary()
    assert report.aliases_merged > 0
    assert set(report.not_loaded_groups) == {"vae", "text_encoder"}  # official files do not hold them
    # Encoders not in the file come from the preset: copy ours so only the file's weights differ.
    loaded.vae.load_state_dict(model.vae.state_dict())
    loaded.text_encoder.load_state_dict(model.text_encoder.state_dict())
    for name in ("video", "action", "und", "vlm"):
        a, b = getattr(model, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert_same_outputs(model, loaded, probe)


def test_convert_writes_the_files_weights_and_records_the_absent_encoders(official_model, tmp_path):
    """convert builds no model: the file's tensors are written, the encoders it lacks are listed
    as absent (not written as random weights), and loading the result equals loading the file."""
    write_official(official_model.state_dict(), tmp_path / ck.OFFICIAL_FILE)
    report = ck.convert_official(tmp_path, tmp_path / "converted", config=preset("tiny"))
    assert report.ok and set(report.not_loaded_groups) == {"vae", "text_encoder"}
    meta = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert sorted(meta["absent_parts"]) == ["text_encoder", "vae"]
    written = ck.read_own_weights(tmp_path / "converted")
    assert not [k for k in written if k.startswith(("vae.", "text_encoder."))]
    assert all(v.dtype == torch.float32 for v in written.values() if v.is_floating_point())
    direct, _ = ck.load_checkpoint(tmp_path, config=preset("tiny"))
    converted, loaded_report = ck.load_checkpoint(tmp_path / "converted")
    assert set(loaded_report.not_loaded_groups) == {"vae", "text_encoder"}
    a, b = direct.state_dict(), converted.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ck.CheckpointError, match="already a motus_ros checkpoint"):
        ck.convert_official(tmp_path / "converted", tmp_path / "again")


@pytest.mark.parametrize("which", ["official_model", "model"])
def test_inferred_config_from_shapes(which, request):
    """The official position table has chunk + 2 + registers rows (the spare row): the inferred chunk
    is the real one; a project model written in the official layout gets the spare row added."""
    model = request.getfixturevalue(which)
    report = ck.LoadReport("official")
    official = ck.ours_to_official(model.state_dict(), config=model.config)
    rows = official["action_expert.input_encoder.pos_embedding"].shape[1]
    assert rows == model.config.chunk_size + 2 + model.config.num_registers
    state = ck.official_to_ours(official, report)
    cfg = ck.infer_config(state, base=preset("tiny"))
    for field in ("num_layers", "num_heads", "head_dim", "action_hidden", "und_hidden", "chunk_size",
                  "num_registers", "video_ffn_dim", "text_dim", "vlm_hidden", "latent_channels"):
        assert getattr(cfg, field) == getattr(model.config, field), field
    assert cfg.conventions == OFFICIAL_CONVENTIONS


def test_conventions_recorded_and_old_configs_read_as_project(model, official_model, tmp_path):
    ck.save_checkpoint(official_model, tmp_path / "off")
    assert json.loads((tmp_path / "off" / "config.json").read_text())["config"]["conventions"] == \
        OFFICIAL_CONVENTIONS.to_dict()
    assert ck.read_own_config(tmp_path / "off").conventions == OFFICIAL_CONVENTIONS
    # A config.json written before the field existed (top-level timestep_sampling, no conventions).
    ck.save_checkpoint(model, tmp_path / "old")
    data = json.loads((tmp_path / "old" / "config.json").read_text())
    del data["config"]["conventions"]
    data["config"]["timestep_sampling"] = "logit_normal"
    (tmp_path / "old" / "config.json").write_text(json.dumps(data))
    assert ck.read_own_config(tmp_path / "old").conventions == PROJECT_CONVENTIONS


def test_shipped_sim_weights_keep_the_project_conventions():
    from motus_ros.paths import models_dir

    folder = models_dir() / "sim_transfer_cube"
    if not (folder / "config.json").is_file():
        pytest.skip("no shipped sim weights in this checkout")
    # Written before conventions existed (no field = the project's), or later with the project's.
    assert ck.read_own_config(folder).conventions == PROJECT_CONVENTIONS


def test_corrupt_files_fail_clearly(tmp_path):
    bad = tmp_path / ck.OFFICIAL_FILE
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ck.CheckpointError, match="cannot be read as a weights-only torch checkpoint"):
        ck.load_checkpoint(bad)
    own = tmp_path / "own"
    own.mkdir()
    (own / "model.safetensors").write_bytes(b"\x00" * 16)
    (own / "config.json").write_text(json.dumps({"format": ck.FORMAT, "config": preset("tiny").to_dict()}))
    with pytest.raises(ck.CheckpointError, match="unreadable safetensors"):
        ck.load_checkpoint(own)
    torch.save({"weights": {}}, tmp_path / "nomodule.pt")
    with pytest.raises(ck.CheckpointError, match="no 'module' entry"):
        ck.load_checkpoint(tmp_path / "nomodule.pt")
    with pytest.raises(ck.CheckpointError, match="no such file"):
        ck.load_checkpoint(tmp_path / "absent.pt")


class NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    torch.save({"module": {"x": torch.zeros(1)}, "obj": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(ck.CheckpointError, match="weights-only"):
        ck.load_checkpoint(tmp_path / "evil.pt")


def test_mismatched_missing_unexpected_keys_are_reported(model, tmp_path):
    state = dict(model.state_dict())
    state["action.blocks.1.ffn.0.weight"] = torch.zeros(7, 32)
    del state["und.blocks.1.wan_und_o.weight"]
    official = ck.ours_to_official(state)
    official["action_expert.extra_head.weight"] = torch.zeros(2)
    torch.save({"module": official}, tmp_path / "m.pt")
    with pytest.raises(ck.CheckpointError) as err:
        ck.load_checkpoint(tmp_path / "m.pt", config=preset("tiny"))
    msg = str(err.value)
    assert "action.blocks.1.ffn.0.weight: checkpoint [7, 32] vs model [64, 32]" in msg
    assert "missing keys: und.blocks.1.wan_und_o.weight" in msg
    assert "unexpected keys: action.extra_head.weight" in msg
    _, report = ck.load_checkpoint(tmp_path / "m.pt", config=preset("tiny"), strict=False)
    assert report.missing == ["und.blocks.1.wan_und_o.weight"]


def test_alias_conflict_is_an_error(model, tmp_path):
    official = ck.ours_to_official(model.state_dict())
    key = "action_module.action_expert.registers"
    official[key] = official[key] + 1
    torch.save({"module": official}, tmp_path / "c.pt")
    with pytest.raises(ck.CheckpointError, match="alias 'action_module.action_expert.registers' differs"):
        ck.load_checkpoint(tmp_path / "c.pt", config=preset("tiny"))


def test_cli_inspect_convert_and_errors(official_model, probe, tmp_path, capsys):
    model = official_model
    write_official(model.state_dict(), tmp_path / ck.OFFICIAL_FILE)
    assert cli_main(["checkpoint", "inspect", str(tmp_path), "--preset", "tiny"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "official" and info["report"]["ok"]
    assert info["config"]["num_layers"] == 2 and info["parameters_by_part"]["action"] > 0
    out_dir = tmp_path / "converted"
    assert cli_main(["checkpoint", "convert", str(tmp_path), str(out_dir), "--preset", "tiny"]) == 0
    capsys.readouterr()
    converted, report = ck.load_checkpoint(out_dir)
    assert report.ok
    for name in ("video", "action", "und"):
        a, b = getattr(model, name).state_dict(), getattr(converted, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert cli_main(["checkpoint", "inspect", str(tmp_path / "nothing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli_main(["checkpoint", "inspect", str(out_dir), "--preset", "giant"]) == 2
    assert "unknown preset 'giant'" in capsys.readouterr().err
