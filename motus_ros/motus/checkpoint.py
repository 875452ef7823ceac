"""Checkpoints: our own format (safetensors + config JSON) and the official DeepSpeed release.

Own format: a folder with `model.safetensors` and `config.json` ({"format": FORMAT, "config": {...}}).
Large checkpoints (`motus-ros checkpoint assemble`) split the weights into shards listed by
`model.safetensors.index.json` ({"weight_map": {key: shard file}}, the Hugging Face layout). A
config with tokenizer files (vlm_tokenizer / text_tokenizer "files") has them in the folder's
`vlm_processor/` and `text_tokenizer/` (tokenization.py); they are loaded with the weights, and
save_checkpoint copies them along, so a folder stays self-contained.

Official format (thu-ml/Motus): `mp_rank_00_model_states.pt`, a torch pickle whose key `module`
holds the state dict of their `Motus` module. Sub-modules are registered twice, so the same
tensors appear under alias prefixes (`video_module.video_model.*` = `video_model.*`,
`und_module.und_expert.*` = `und_expert.*`, `action_module.action_expert.*` = `action_expert.*`,
...). Their video transformer uses the original Wan key names (`blocks.N.self_attn.q`), which are
mapped here to diffusers' (`blocks.N.attn1.to_q`). Loading uses torch.load(weights_only=True).

An official checkpoint runs with the official conventions (config.OFFICIAL_CONVENTIONS: the
condition frame shares the video timestep, text zero-padded to text_len, FlowMatchScheduler
training timesteps, video loss over all frames, a spare row in the action position table); the
training shift 5 is a loss setting (flow.LossSettings.official()), not in the model config. Beside
the .pt file, an official folder may hold `wan_config.json` (the video expert's Wan config: its
text_len becomes text_max_len) and `vlm_config.json` (the Qwen3-VL config: the VLM is built from
it); both are checked against the tensor shapes. Our own format records its conventions in
config.json; a config.json without them (older checkpoints) has the project's. Older config.json
files also hold the training-objective fields (config.LOSS_FIELDS): the model config drops them and
read_legacy_loss returns them (the trainer starts its loss settings from them).

Stage-2 pretrain layout (official `training_mode: pretrain`, the motus-robotics/Motus release): the
action expert reads latent actions only, so its input encoder has no state encoder and a position
table of exactly `chunk` rows, and there are no registers. As the official finetune does
(`Motus.load_pretrain_weights`), such a checkpoint loads into the finetune layout with the action
input encoder and decoder skipped: they and the registers start fresh (PRETRAIN_FRESH), robot
dims come from the preset, and the report says so (LoadReport.fresh). Fine-tune before use.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import (OFFICIAL_CONVENTIONS, TIME_FREQ_DIM, MotusConfig, legacy_loss_fields, preset,
                     vlm_config_with_rope_theta)

FORMAT = "motus_ros/1"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
OFFICIAL_FILE = "mp_rank_00_model_states.pt"
WAN_CONFIG_FILE = "wan_config.json"      # beside an official checkpoint: the video expert's Wan config
VLM_CONFIG_FILE = "vlm_config.json"      # beside an official checkpoint: the Qwen3-VL config

# Official top-level prefix -> ours. Aliases are the same tensors registered a second time.
OFFICIAL_PREFIXES = {"video_model.wan_model.": "video.wan.", "action_expert.": "action.", "und_expert.": "und.",
                     "vlm_model.": "vlm.model."}
ALIAS_PREFIXES = {"video_module.video_model.": "video_model.", "action_module.video_model.": "video_model.",
                  "und_module.und_expert.": "und_expert.", "action_module.action_expert.": "action_expert.",
                  "und_module.vlm_model.": "vlm_model.", "action_module.vlm_model.": "vlm_model."}
# Official stage-2 pretrain checkpoints: these parts do not carry over to the robot (finetune) layout.
PRETRAIN_SKIPPED = ("action.input_encoder.", "action.decoder.")
PRETRAIN_FRESH = PRETRAIN_SKIPPED + ("action.registers",)
OFFICIAL_FINETUNE_REGISTERS = 4          # official Motus: 4 registers in finetune mode, none in pretrain
# Present in official checkpoints but not part of the paper's architecture (streaming extensions).
IGNORED_PREFIXES = ("pipeline_chunk_embedding.", "pipeline_stage_embedding.", "video_model.vae.")

# Original Wan names -> diffusers names inside the video transformer (applied in order).
_WAN_RULES = [
    (r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"^time_projection\.1\.", "condition_embedder.time_proj."),
    (r"^head\.head\.", "proj_out."),
    (r"^head\.modulation$", "scale_shift_table"),
    (r"^(blocks\.\d+)\.self_attn\.o\.", r"\1.attn1.to_out.0."),
    (r"^(blocks\.\d+)\.self_attn\.([qkv])\.", r"\1.attn1.to_\2."),
    (r"^(blocks\.\d+)\.self_attn\.(norm_[qk])\.", r"\1.attn1.\2."),
    (r"^(blocks\.\d+)\.cross_attn\.o\.", r"\1.attn2.to_out.0."),
    (r"^(blocks\.\d+)\.cross_attn\.([qkv])\.", r"\1.attn2.to_\2."),
    (r"^(blocks\.\d+)\.cross_attn\.(norm_[qk])\.", r"\1.attn2.\2."),
    (r"^(blocks\.\d+)\.norm3\.", r"\1.norm2."),
    (r"^(blocks\.\d+)\.ffn\.0\.", r"\1.ffn.net.0.proj."),
    (r"^(blocks\.\d+)\.ffn\.2\.", r"\1.ffn.net.2."),
    (r"^(blocks\.\d+)\.modulation$", r"\1.scale_shift_table"),
]
_WAN_INVERSE = [
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^proj_out\.", "head.head."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^(blocks\.\d+)\.attn1\.to_out\.0\.", r"\1.self_attn.o."),
    (r"^(blocks\.\d+)\.attn1\.to_([qkv])\.", r"\1.self_attn.\2."),
    (r"^(blocks\.\d+)\.attn1\.(norm_[qk])\.", r"\1.self_attn.\2."),
    (r"^(blocks\.\d+)\.attn2\.to_out\.0\.", r"\1.cross_attn.o."),
    (r"^(blocks\.\d+)\.attn2\.to_([qkv])\.", r"\1.cross_attn.\2."),
    (r"^(blocks\.\d+)\.attn2\.(norm_[qk])\.", r"\1.cross_attn.\2."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
]


# The frozen encoders an official checkpoint does not carry (they come from their own releases).
ENCODER_PARTS = ("vae", "text_encoder", "vlm")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


@dataclass
class LoadReport:
    """What happened to every key while loading."""

    source_format: str
    missing: list[str] = field(default_factory=list)          # model keys without a value
    unexpected: list[str] = field(default_factory=list)       # checkpoint keys the model does not have
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model)
    aliases_merged: int = 0
    ignored: list[str] = field(default_factory=list)
    not_loaded_groups: list[str] = field(default_factory=list)  # e.g. frozen encoders kept from the preset
    fresh: list[str] = field(default_factory=list)   # parts initialised fresh (stage-2 pretrain layout)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 10) -> str:
        parts = []
        for name, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                parts.append(f"{len(items)} {name} keys: {', '.join(items[:limit])}"
                             + (" ..." if len(items) > limit else ""))
        if self.mismatched:
            shown = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched[:limit])
            parts.append(f"{len(self.mismatched)} shape mismatches: {shown}")
        return " | ".join(parts) or "all keys matched"

    def to_dict(self) -> dict[str, Any]:
        return {"source_format": self.source_format, "ok": self.ok, "missing": self.missing,
                "unexpected": self.unexpected,
                "mismatched": [{"key": k, "checkpoint": list(a), "model": list(b)} for k, a, b in self.mismatched],
                "aliases_merged": self.aliases_merged, "ignored": self.ignored,
                "not_loaded_groups": self.not_loaded_groups, "fresh": self.fresh}


# Our own format -----------------------------------------------------------------------------------
def save_checkpoint(model, out_dir: str | Path) -> Path:
    """Write model.safetensors + config.json into out_dir (written to temp names, then renamed),
    plus the tokenizer files the model's config needs (copied from model.tokenizer_folder)."""
    return write_checkpoint(model.state_dict(), model.config, out_dir,
                            getattr(model, "tokenizer_folder", None))


def untie(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to write, tied key -> the key stored) for safetensors: weights registered twice
    (tied, e.g. umT5's shared embedding) are stored once; a view into storage already written gets
    its own copy (safetensors refuses shared storage)."""
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[int] = set()
    for key, value in state.items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), tuple(value.stride()))
        if value.numel() and ident in seen:
            tied[key] = seen[ident]
            continue
        seen[ident] = key
        value = value.detach().contiguous().cpu()
        if value.numel() and value.untyped_storage().data_ptr() in storages:
            value = value.clone()
        storages.add(value.untyped_storage().data_ptr())
        tensors[key] = value
    return tensors, tied


def write_checkpoint(state: dict[str, torch.Tensor], config: MotusConfig, out_dir: str | Path,
                     tokenizer_folder: str | Path | None = None, absent_parts: tuple[str, ...] = ()) -> Path:
    """Write a state dict as an own-format checkpoint. `absent_parts` names frozen encoder groups
    ("vae", "text_encoder", "vlm") deliberately left out: loading builds them from the config as a
    new model would (seeded), and the load report lists them (`not_loaded_groups`)."""
    from safetensors.torch import save_file

    from .tokenization import copy_tokenizer_files

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "files" in (config.vlm_tokenizer, config.text_tokenizer):
        if tokenizer_folder is None:
            raise CheckpointError(f"{out}: the config needs tokenizer files but the model has none attached")
        copy_tokenizer_files(tokenizer_folder, out, config)
    tensors, tied = untie(state)
    tmp_w, tmp_c = out / (WEIGHTS_FILE + ".tmp"), out / (CONFIG_FILE + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT, "tied": json.dumps(tied)})
    meta: dict[str, Any] = {"format": FORMAT, "config": config.to_dict()}
    if absent_parts:
        meta["absent_parts"] = list(absent_parts)
    tmp_c.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp_w.replace(out / WEIGHTS_FILE)
    tmp_c.replace(out / CONFIG_FILE)
    (out / WEIGHTS_INDEX_FILE).unlink(missing_ok=True)    # the single file replaces earlier shards
    return out


def _own_paths(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return path / WEIGHTS_FILE, path / CONFIG_FILE
    return path, path.with_name(CONFIG_FILE)


def _read_own_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(config.json path, its content) of an own-format checkpoint, format checked."""
    _, cfg_path = _own_paths(Path(path))
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_FILE} beside the weights")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: format '{data.get('format')}', expected '{FORMAT}'")
    return cfg_path, data


def read_own_config(path: str | Path) -> MotusConfig:
    cfg_path, data = _read_own_meta(path)
    try:
        return MotusConfig.from_dict(data["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: bad config ({exc})") from exc


def read_legacy_loss(path: str | Path) -> dict[str, Any]:
    """The training-objective fields (config.LOSS_FIELDS) an older own-format config.json holds in
    its model config; {} for newer files and for official checkpoints (no config.json)."""
    if detect_format(path) != "motus_ros":
        return {}
    cfg_path, data = _read_own_meta(path)
    config = data.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: bad config (no 'config' mapping)")
    return legacy_loss_fields(config)


def read_absent_parts(path: str | Path) -> tuple[str, ...]:
    """Encoder groups an own-format checkpoint leaves out on purpose (see write_checkpoint)."""
    _, cfg_path = _own_paths(Path(path))
    try:
        parts = json.loads(cfg_path.read_text()).get("absent_parts", [])
    except (OSError, json.JSONDecodeError):
        return ()
    unknown = [p for p in parts if p not in ENCODER_PARTS]
    if unknown:
        raise CheckpointError(f"{cfg_path}: absent_parts: got {unknown}, expected names from {list(ENCODER_PARTS)}")
    return tuple(parts)


def _read_safetensors(weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from exc
    return state, tied


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files of an own-format checkpoint: the shards of the index, or the one file."""
    p = Path(path)
    index = p / WEIGHTS_INDEX_FILE if p.is_dir() else None
    if index is not None and index.is_file():
        data = _read_json(index)
        shards = sorted(set((data.get("weight_map") or {}).values()))
        if not shards:
            raise CheckpointError(f"{index}: empty weight_map")
        return [p / name for name in shards]
    weights, _ = _own_paths(p)
    return [weights]


def read_own_weights(path: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    for weights in weight_files(path):
        if not weights.is_file():
            raise CheckpointError(f"{weights}: missing" if weights.name != WEIGHTS_FILE
                                  else f"{path}: no {WEIGHTS_FILE} found")
        part, part_tied = _read_safetensors(weights)
        state.update(part)
        tied.update(part_tied)
    for key, source in tied.items():
        if source not in state:
            raise CheckpointError(f"{path}: tied weight '{key}' points at missing '{source}'")
        state[key] = state[source]
    return state


# Official format ----------------------------------------------------------------------------------
def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw state dict under 'module' of a DeepSpeed mp_rank_00_model_states.pt (weights only)."""
    p = Path(path)
    if p.is_dir():
        p = p / OFFICIAL_FILE
    if not p.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncation, refused globals: all mean "not loadable"
        raise CheckpointError(f"{p}: cannot be read as a weights-only torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(obj, dict) or "module" not in obj:
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{p}: no 'module' entry (found {keys}); expected a DeepSpeed model_states file")
    module = obj["module"]
    if not isinstance(module, dict) or not all(isinstance(v, torch.Tensor) for v in module.values()):
        raise CheckpointError(f"{p}: 'module' is not a dict of tensors")
    return dict(module)


def merge_aliases(state: dict[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    """Fold alias prefixes onto their canonical names; differing duplicates are an error."""
    out: dict[str, torch.Tensor] = {}
    aliased: list[tuple[str, str, torch.Tensor]] = []
    for key, value in state.items():
        for alias, canonical in ALIAS_PREFIXES.items():
            if key.startswith(alias):
                aliased.append((key, canonical + key[len(alias):], value))
                break
        else:
            out[key] = value
    for key, canonical, value in aliased:
        if canonical in out:
            if out[canonical].shape != value.shape or not torch.equal(out[canonical], value):
                raise CheckpointError(f"alias '{key}' differs from '{canonical}' (shapes {list(value.shape)} vs "
                                      f"{list(out[canonical].shape)}); the checkpoint is inconsistent")
        else:
            out[canonical] = value
        report.aliases_merged += 1
    return out


def map_official_key(key: str) -> str | None:
    """Official (alias-free) key -> our key, or None when it is outside the model."""
    for prefix, ours in OFFICIAL_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if prefix == "video_model.wan_model.":
                for pattern, repl in _WAN_RULES:
                    new, n = re.subn(pattern, repl, rest)
                    if n:
                        rest = new
                        break
            return ours + rest
    return None


def official_to_ours(state: dict[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    merged = merge_aliases(state, report)
    out: dict[str, torch.Tensor] = {}
    for key, value in merged.items():
        if key.startswith(IGNORED_PREFIXES):
            report.ignored.append(key)
            continue
        mapped = map_official_key(key)
        if mapped is None:
            report.unexpected.append(key)
        else:
            out[mapped] = value
    return out


def ours_to_official(state: dict[str, torch.Tensor], with_aliases: bool = True,
                     config: MotusConfig | None = None) -> dict[str, torch.Tensor]:
    """Our state dict -> the official layout (for tests and interoperability); encoders other than
    the VLM are dropped (the official file does not hold them). With `config` whose action position
    table has no spare row (project conventions), the official spare row is appended."""
    from .experts import sincos_positions

    state = dict(state)
    pos_key = "action.input_encoder.pos_embedding"
    if config is not None and config.conventions.action_positions == "exact" and pos_key in state:
        rows = state[pos_key].shape[1] + 1
        state[pos_key] = sincos_positions(rows, state[pos_key].shape[2]).unsqueeze(0).to(state[pos_key].dtype)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("video.wan."):
            rest = key[len("video.wan."):]
            for pattern, repl in _WAN_INVERSE:
                new, n = re.subn(pattern, repl, rest)
                if n:
                    rest = new
                    break
            out["video_model.wan_model." + rest] = value
        elif key.startswith("action."):
            out["action_expert." + key[len("action."):]] = value
        elif key.startswith("und."):
            out["und_expert." + key[len("und."):]] = value
        elif key.startswith("vlm.model."):
            out["vlm_model." + key[len("vlm.model."):]] = value
    if with_aliases:
        for alias, canonical in ALIAS_PREFIXES.items():
            for key in [k for k in out if k.startswith(canonical) and not k.startswith(tuple(ALIAS_PREFIXES))]:
                out[alias + key[len(canonical):]] = out[key]
    return out


def infer_config(state: dict[str, torch.Tensor], base: MotusConfig | None = None) -> MotusConfig:
    """Sizes of the experts of an official checkpoint read from tensor shapes (our key names);
    encoders follow `base`; the conventions are the official ones.

    Chunk size: the official action expert is built with ActionExpertConfig.chunk_size = chunk + 1
    (the state token counted), and its StateActionEncoder allocates chunk_size + 1 + registers
    position rows, so the table has chunk + 2 + registers rows; the tokens [state | chunk actions |
    registers] take rows 0 .. chunk + registers and the last row is never read.
    """
    base = base or preset("paper")
    pretrain = is_pretrain_layout(state)

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"cannot infer the model size: key '{key}' is missing")
        return tuple(state[key].shape)

    layers = 1 + max((int(m.group(1)) for k in state for m in [re.match(r"action\.blocks\.(\d+)\.", k)] if m),
                     default=-1)
    if layers < 1:
        raise CheckpointError("cannot infer the model size: no 'action.blocks.N.*' keys")
    _, heads, a_dim, head_dim = shape("action.blocks.0.wan_action_qkv")
    _, _, u_dim, _ = shape("und.blocks.0.wan_und_qkv")
    vdim, lat_c, pt, ph, pw = shape("video.wan.patch_embedding.weight")
    regs = shape("action.registers")[1] if "action.registers" in state else 0
    pos_len = shape("action.input_encoder.pos_embedding")[1]
    conventions = OFFICIAL_CONVENTIONS
    chunk = pos_len - 1 - regs - conventions.spare_position_rows
    robot_dims = {}
    if pretrain:            # [actions | registers] rows; the finetune layout adds state and registers
        chunk, regs = pos_len - regs, OFFICIAL_FINETUNE_REGISTERS
        robot_dims = {"state_dim": base.state_dim, "action_dim": base.action_dim}
    if chunk < 1:
        raise CheckpointError(f"cannot infer the chunk size: the action position table has {pos_len} rows, "
                              f"expected chunk + 2 + registers ({regs}) with chunk >= 1")
    return base.replace(
        name=f"{base.name}-inferred", num_layers=layers, num_heads=heads, head_dim=head_dim,
        latent_channels=lat_c, patch_size=(pt, ph, pw),
        video_ffn_dim=shape("video.wan.blocks.0.ffn.net.0.proj.weight")[0],
        text_dim=shape("video.wan.condition_embedder.text_embedder.linear_1.weight")[1],
        action_hidden=a_dim, action_ffn_dim=shape("action.blocks.0.ffn.0.weight")[0],
        **(robot_dims or {"state_dim": shape("action.input_encoder.state_encoder.0.weight")[1],
                          "action_dim": shape("action.input_encoder.action_encoder.0.weight")[1]}),
        num_registers=regs, chunk_size=chunk,
        und_hidden=u_dim, und_ffn_dim=shape("und.blocks.0.ffn.0.weight")[0],
        vlm_hidden=shape("und.vlm_adapter.0.weight")[1],
        conventions=conventions, sampler_shift=1.0,
    ) if vdim == heads * head_dim else _bad_width(vdim, heads, head_dim)


def is_pretrain_layout(state: dict[str, torch.Tensor]) -> bool:
    """An official stage-2 pretrain checkpoint (our key names): action input without a state encoder."""
    return ("action.input_encoder.action_encoder.0.weight" in state
            and not any(k.startswith("action.input_encoder.state_encoder.") for k in state))


def drop_pretrain_parts(state: dict[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    """A pretrain checkpoint without the parts the finetune layout starts fresh (official
    load_pretrain_weights); report.fresh names them. Other checkpoints pass unchanged."""
    if not is_pretrain_layout(state):
        return state
    report.fresh.extend(p.rstrip(".") for p in PRETRAIN_FRESH)
    report.ignored.extend(k for k in state if k.startswith(PRETRAIN_SKIPPED))
    return {k: v for k, v in state.items() if not k.startswith(PRETRAIN_SKIPPED)}


def fresh_action_parts(cfg: MotusConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Initial weights of the parts a pretrain checkpoint does not carry (PRETRAIN_FRESH), as a new
    ActionExpert initialises them (decoder output zeroed, registers N(0, 0.02^2))."""
    from torch import nn

    from .experts import ActionDecoder, StateActionEncoder

    torch.manual_seed(seed)
    encoder, decoder = StateActionEncoder(cfg), ActionDecoder(cfg)
    nn.init.zeros_(decoder.action_head[-1].weight)
    nn.init.zeros_(decoder.action_head[-1].bias)
    out = {"action.input_encoder." + k: v for k, v in encoder.state_dict().items()}
    out.update({"action.decoder." + k: v for k, v in decoder.state_dict().items()})
    if cfg.num_registers:
        out["action.registers"] = torch.randn(1, cfg.num_registers, cfg.action_hidden) * 0.02
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def official_folder(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_dir() else p.parent


def apply_official_configs(cfg: MotusConfig, folder: Path, wan_config: str | Path | None = None,
                           vlm_config: str | Path | None = None) -> MotusConfig:
    """Fold the configs that travel with an official checkpoint into an inferred config.

    wan_config (default: wan_config.json in `folder` if present): its sizes must agree with the
    tensors; text_len -> text_max_len (the official text padding), eps -> video_eps.
    vlm_config (default: vlm_config.json in `folder` if present): becomes the VLM's config, with the
    rope theta made explicit (config.vlm_config_with_rope_theta); its width must be the adapter's.
    """
    wan_path = Path(wan_config) if wan_config else folder / WAN_CONFIG_FILE
    if wan_config or wan_path.is_file():
        wan = _read_json(wan_path)
        expect = {"dim": cfg.attn_dim, "num_heads": cfg.num_heads, "num_layers": cfg.num_layers,
                  "ffn_dim": cfg.video_ffn_dim, "in_dim": cfg.latent_channels, "out_dim": cfg.latent_channels,
                  "text_dim": cfg.text_dim, "freq_dim": TIME_FREQ_DIM, "patch_size": list(cfg.patch_size)}
        for key, want in expect.items():
            if key in wan and (list(wan[key]) if isinstance(wan[key], (list, tuple)) else wan[key]) != want:
                raise CheckpointError(f"{wan_path}: {key}={wan[key]} does not match the checkpoint's tensors ({want})")
        changes: dict[str, Any] = {}
        if "text_len" in wan:
            changes["text_max_len"] = int(wan["text_len"])
        if "eps" in wan:
            changes["video_eps"] = float(wan["eps"])
        cfg = cfg.replace(**changes)
    vlm_path = Path(vlm_config) if vlm_config else folder / VLM_CONFIG_FILE
    if vlm_config or vlm_path.is_file():
        vlm = {k: v for k, v in _read_json(vlm_path).items() if k not in ("model_type", "architectures",
                                                                            "transformers_version", "torch_dtype",
                                                                            "dtype")}
        width = (vlm.get("text_config") or {}).get("hidden_size")
        if width != cfg.vlm_hidden:
            raise CheckpointError(f"{vlm_path}: text_config.hidden_size={width} does not match the "
                                  f"understanding adapter's input width ({cfg.vlm_hidden})")
        cfg = cfg.replace(vlm_config=vlm_config_with_rope_theta(vlm))
    return cfg


def _bad_width(vdim, heads, head_dim):
    raise CheckpointError(f"video width {vdim} != heads {heads} x head_dim {head_dim} read from wan_action_qkv")


# Loading into a model -----------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if p.is_dir():
        if (p / WEIGHTS_FILE).is_file() or (p / WEIGHTS_INDEX_FILE).is_file():
            return "motus_ros"
        if (p / OFFICIAL_FILE).is_file():
            return "official"
        raise CheckpointError(f"{path}: folder holds neither {WEIGHTS_FILE} nor {OFFICIAL_FILE}")
    if p.suffix == ".safetensors":
        return "motus_ros"
    return "official"


def check_against(model, state: dict[str, torch.Tensor], report: LoadReport,
                  optional_prefixes: tuple[str, ...] = ()) -> None:
    """Fill report.missing / unexpected / mismatched comparing state with model.state_dict()."""
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(expected[key].shape)))
    for key in expected:
        if key not in state and not key.startswith(optional_prefixes):
            report.missing.append(key)
    for prefix in optional_prefixes:
        if any(k.startswith(prefix) for k in expected) and not any(k.startswith(prefix) for k in state):
            report.not_loaded_groups.append(prefix.rstrip("."))


def _official_config(path, state: dict[str, torch.Tensor], config: MotusConfig | None,
                     wan_config: str | Path | None, vlm_config: str | Path | None) -> MotusConfig:
    return apply_official_configs(infer_config(state, base=config), official_folder(path), wan_config, vlm_config)


def load_checkpoint(path: str | Path, config: MotusConfig | None = None, device: str = "cpu",
                    strict: bool = True, wan_config: str | Path | None = None,
                    vlm_config: str | Path | None = None):
    """Load either format into a new Motus. Returns (model, LoadReport).

    Own format: config from config.json. Official format: expert sizes inferred from shapes, the
    official conventions, wan_config.json / vlm_config.json beside the file (or the paths given)
    folded in (apply_official_configs); the frozen encoders the file does not carry (VAE, text
    encoder, and the VLM without a VLM config) follow `config` (default: paper preset).
    strict: any missing/unexpected/mismatched key raises.
    """
    from .model import build_model

    fmt = detect_format(path)
    report = LoadReport(source_format=fmt)
    if fmt == "motus_ros":
        cfg = read_own_config(path)
        state = read_own_weights(path)
        optional: tuple[str, ...] = tuple(f"{part}." for part in read_absent_parts(path))
    else:
        state = official_to_ours(read_official(path), report)
        cfg = _official_config(path, state, config, wan_config, vlm_config)
        state = drop_pretrain_parts(state, report)
        optional = tuple(f"{part}." for part in ENCODER_PARTS) + (PRETRAIN_FRESH if report.fresh else ())
    model = build_model(cfg, device="cpu")
    check_against(model, state, report, optional_prefixes=optional)
    if strict and not report.ok:
        raise CheckpointError(f"{path}: checkpoint does not fit the model ({report.summary()})")
    usable = {k: v for k, v in state.items()
              if k not in dict.fromkeys(report.unexpected) and k not in {m[0] for m in report.mismatched}}
    model.load_state_dict(usable, strict=False)
    if fmt == "motus_ros":
        _attach_tokenizers(model, path)
    return model.to(device).eval(), report


def own_folder(path: str | Path) -> Path:
    """The folder of an own-format checkpoint given as the folder or its weights file."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def _attach_tokenizers(model, path: str | Path) -> None:
    from .tokenization import TokenizerError, attach_tokenizers

    try:
        attach_tokenizers(model, own_folder(path))
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from exc


def convert_official(path: str | Path, out_dir: str | Path, config: MotusConfig | None = None,
                     wan_config: str | Path | None = None, vlm_config: str | Path | None = None) -> LoadReport:
    """Official checkpoint -> our format (strict: refuses checkpoints that do not fit). The written
    config.json records the official conventions.

    No model is materialised: the keys are checked against a model on the meta device and the
    file's own tensors are written (as float32, what a loaded model holds). The frozen encoders
    the file does not carry are recorded as absent parts instead of being written as fresh random
    weights, so converting for the paper preset needs memory for the file, not for the Wan VAE and
    umT5-xxl as well (`motus-ros checkpoint assemble` adds the released encoders).
    """
    from .model import build_model

    if detect_format(path) != "official":
        raise CheckpointError(f"{path}: already a motus_ros checkpoint; convert reads official files")
    report = LoadReport(source_format="official")
    state = official_to_ours(read_official(path), report)
    cfg = _official_config(path, state, config, wan_config, vlm_config)
    state = drop_pretrain_parts(state, report)
    if report.fresh:
        state.update(fresh_action_parts(cfg))
    meta = build_model(cfg, device="meta")
    check_against(meta, state, report, optional_prefixes=tuple(f"{part}." for part in ENCODER_PARTS))
    if not report.ok:
        raise CheckpointError(f"{path}: checkpoint does not fit the model ({report.summary()})")
    expected = meta.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items() if k in expected}
    write_checkpoint(state, cfg, out_dir, absent_parts=tuple(report.not_loaded_groups))
    return report


def inspect_checkpoint(path: str | Path, config: MotusConfig | None = None, wan_config: str | Path | None = None,
                       vlm_config: str | Path | None = None) -> dict[str, Any]:
    """Describe a checkpoint without loading weights into a model: format, counts, inferred sizes,
    chunk size, conventions, tokenizer status, and the key report against a model built on the
    meta device."""
    from .encoders import tokenizer_status
    from .model import build_model

    fmt = detect_format(path)
    report = LoadReport(source_format=fmt)
    if fmt == "motus_ros":
        cfg = read_own_config(path)
        state = read_own_weights(path)
        raw_count = len(state)
        optional: tuple[str, ...] = ()
    else:
        raw = read_official(path)
        raw_count = len(raw)
        state = official_to_ours(raw, report)
        cfg = _official_config(path, state, config, wan_config, vlm_config)
        state = drop_pretrain_parts(state, report)
        optional = ("vae.", "text_encoder.", "vlm.") + (PRETRAIN_FRESH if report.fresh else ())
    meta = build_model(cfg, device="meta", build_encoders=any(k.startswith(("vae.", "vlm.", "text_encoder.")) for k in state))
    check_against(meta, state, report, optional_prefixes=optional)
    groups: dict[str, int] = {}
    for key, value in state.items():
        group = key.split(".")[0]
        groups[group] = groups.get(group, 0) + value.numel()
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    layout = ("stage-2 pretrain (action-only): the action input encoder, decoder and registers start fresh; "
              "fine-tune before use") if report.fresh else "finetune"
    return {"path": str(path), "format": fmt, "layout": layout, "tensors_in_file": raw_count,
            "tensors_mapped": len(state),
            "chunk_size": cfg.chunk_size, "conventions": cfg.conventions.describe(),
            "tokenizer": tokenizer_status(cfg, own_folder(path) if fmt == "motus_ros" else None),
            "parameters_by_part": groups, "dtypes": dtypes,
            "config": {k: v for k, v in cfg.to_dict().items() if not k.endswith("_config")},
            "report": report.to_dict()}
