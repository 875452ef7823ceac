"""From the released files to a self-contained motus_ros checkpoint (`motus-ros checkpoint assemble`).

What a user downloads (the official README, thu-ml/Motus f771216), and how each is read here:

  Motus checkpoint  motus-robotics/Motus (stage 2) or Motus_robotwin2 (stage 3): a DeepSpeed
                    `mp_rank_00_model_states.pt` (in the folder, or in its `pytorch_model/`), the
                    three experts and the Qwen3-VL weights under `module` (checkpoint.py maps them).
                    A stage-2 (pretrain layout) checkpoint gets a fresh action input encoder,
                    decoder and registers, as the official finetune starts from it.
  Wan2.2 VAE        `Wan2.2_VAE.pth` of Wan-AI/Wan2.2-TI2V-5B: the original Wan module's state dict
                    (encoder.downsamples.I.downsamples.J..., conv1/conv2 around the latent), mapped
                    to diffusers' AutoencoderKLWan; its 48-channel latent statistics are not in the
                    file (config.WAN22_LATENTS_MEAN / _STD).
  umT5 encoder      `models_t5_umt5-xxl-enc-bf16.pth` of the same folder: the original Wan T5Encoder
                    (token_embedding, blocks.N.attn/ffn/pos_embedding, norm), mapped to transformers'
                    UMT5EncoderModel; its tokenizer is the folder's `google/umt5-xxl/`. The folder's
                    `config.json` (the Wan model config) gives text_len.
  Qwen3-VL-2B       Qwen/Qwen3-VL-2B-Instruct, a Hugging Face folder: config.json, tokenizer and
                    processor files, chat template, model.safetensors. The official code takes the
                    VLM weights from the Motus checkpoint when it holds them (it does) and only the
                    config and processor from this folder.

The output folder holds config.json (sizes read from the tensors, official conventions, tokenizer
sources "files"), the weights as safetensors shards listed by model.safetensors.index.json (one per
part, so no step holds more than one part in memory), vlm_processor/ and text_tokenizer/, and
assembled.json (where every part came from). Nothing is written unless every part fits: a missing
or mismatched file is refused with one line naming it.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import (CONFIG_FILE, FORMAT, OFFICIAL_FILE, WAN_CONFIG_FILE, WEIGHTS_INDEX_FILE, CheckpointError,
                         LoadReport, apply_official_configs, check_against, drop_pretrain_parts, fresh_action_parts,
                         infer_config, official_to_ours, untie)
from .config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, MotusConfig, preset
from .tokenization import (TEXT_TOKENIZER_DIR, TEXT_TOKENIZER_FILES, TEXT_TOKENIZER_NEEDS, VLM_PROCESSOR_DIR,
                           VLM_PROCESSOR_FILES, VLM_PROCESSOR_NEEDS, TokenizerError, check_text_tokenizer,
                           check_vlm_processor, load_text_tokenizer, load_vlm_processor, missing_files)

WAN_VAE_FILE = "Wan2.2_VAE.pth"
UMT5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
UMT5_TOKENIZER_SUBDIR = "google/umt5-xxl"
WAN_MODEL_CONFIG = "config.json"          # in Wan2.2-TI2V-5B: the WanModel config (dim, text_len, ...)
HF_WEIGHTS, HF_WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
SOURCES_FILE = "assembled.json"
SHARDS = {"video.": "model-experts.safetensors", "action.": "model-experts.safetensors",
          "und.": "model-experts.safetensors", "vlm.": "model-vlm.safetensors",
          "vae.": "model-vae.safetensors", "text_encoder.": "model-text_encoder.safetensors"}


class AssembleError(ValueError):
    """A released file that is missing or does not fit; the message names it."""


def torch_load(path: Path) -> Any:
    """torch.load, weights only, memory-mapped when the file format allows it."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        pass                                   # legacy (non-zip) files cannot be memory-mapped
    except Exception as exc:
        raise AssembleError(f"{path}: not a weights-only torch file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AssembleError(f"{path}: not a weights-only torch file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict (also inside {'state_dict': ...} / {'model': ...})."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AssembleError(f"{path}: not a state dict of tensors")
    return dict(obj)


# Wan 2.2 VAE: original names -> diffusers AutoencoderKLWan ----------------------------------------
_RESNET_PARTS = [(r"residual\.0\.gamma$", "norm1.gamma"), (r"residual\.2\.", "conv1."), (r"residual\.3\.gamma$",
                 "norm2.gamma"), (r"residual\.6\.", "conv2."), (r"shortcut\.", "conv_shortcut.")]


def _resnet(rest: str) -> str | None:
    for pattern, repl in _RESNET_PARTS:
        new, n = re.subn("^" + pattern, repl, rest)
        if n:
            return new
    return None


def wan_vae_key(key: str) -> str | None:
    """Wan2.2_VAE.pth key -> AutoencoderKLWan key (None: not a Wan 2.2 VAE key)."""
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for old, new in top.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"^(encoder|decoder)\.(.*)$", key)
    if not m:
        return None
    side, rest = m.groups()
    simple = [(r"^conv1\.", "conv_in."), (r"^head\.0\.gamma$", "norm_out.gamma"), (r"^head\.2\.", "conv_out."),
              (r"^middle\.1\.", "mid_block.attentions.0.")]
    for pattern, repl in simple:
        new, n = re.subn(pattern, repl, rest)
        if n:
            return f"{side}.{new}"
    m = re.match(r"^middle\.([02])\.(.*)$", rest)
    if m:
        part = _resnet(m.group(2))
        return None if part is None else f"{side}.mid_block.resnets.{int(m.group(1)) // 2}.{part}"
    outer, inner, blocks, sampler = (("downsamples", "downsamples", "down_blocks", "downsampler") if side == "encoder"
                                     else ("upsamples", "upsamples", "up_blocks", "upsampler"))
    m = re.match(rf"^{outer}\.(\d+)\.{inner}\.(\d+)\.(.*)$", rest)
    if not m:
        return None
    block, index, rest = m.groups()
    if rest.startswith(("resample.", "time_conv.")):
        return f"{side}.{blocks}.{block}.{sampler}.{rest}"
    part = _resnet(rest)
    return None if part is None else f"{side}.{blocks}.{block}.resnets.{index}.{part}"


def wan_vae_config(state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """The AutoencoderKLWan config of a Wan2.2_VAE.pth, read from its tensor shapes and key layout."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise AssembleError(f"{path}: key '{key}' missing; expected the Wan 2.2 VAE layout")
        return tuple(state[key].shape)

    if not any(re.match(r"^encoder\.downsamples\.\d+\.downsamples\.", k) for k in state):
        raise AssembleError(f"{path}: no 'encoder.downsamples.I.downsamples.J' keys; expected the Wan 2.2 VAE "
                            "(a Wan 2.1 VAE does not fit the 48-channel Motus video expert)")
    blocks = sorted({int(m.group(1)) for k in state for m in [re.match(r"^encoder\.downsamples\.(\d+)\.", k)] if m})
    base = shape("encoder.conv1.weight")[0]
    dim_mult = [shape(f"encoder.downsamples.{i}.downsamples.0.residual.6.weight")[0] // base for i in blocks]
    res = len({m.group(1) for k in state
               for m in [re.match(r"^encoder\.downsamples\.0\.downsamples\.(\d+)\.residual\.", k)] if m})
    temporal = [any(re.match(rf"^encoder\.downsamples\.{i}\.downsamples\.\d+\.time_conv\.", k) for k in state)
                for i in blocks[:-1]]
    z_dim = shape("conv2.weight")[0]
    in_channels = shape("encoder.conv1.weight")[1]
    patch = round((in_channels / 3) ** 0.5)
    if z_dim != len(WAN22_LATENTS_MEAN):
        raise AssembleError(f"{path}: latent channels {z_dim}, expected {len(WAN22_LATENTS_MEAN)} (Wan 2.2 VAE)")
    return {"base_dim": base, "decoder_base_dim": shape("decoder.conv1.weight")[0] // dim_mult[-1], "z_dim": z_dim,
            "dim_mult": dim_mult, "num_res_blocks": res, "temperal_downsample": temporal, "attn_scales": [],
            "is_residual": True, "in_channels": in_channels, "out_channels": shape("decoder.head.2.weight")[0],
            "patch_size": patch, "scale_factor_spatial": patch * 2 ** (len(dim_mult) - 1),
            "scale_factor_temporal": 2 ** sum(temporal),
            "latents_mean": list(WAN22_LATENTS_MEAN), "latents_std": list(WAN22_LATENTS_STD)}


def _map_keys(state: dict[str, torch.Tensor], path: Path, rename: Callable[[str], str | None],
              prefix: str, layout: str, origin: dict[str, str] | None) -> dict[str, torch.Tensor]:
    """Every key of a released file renamed to prefix + rename(key); AssembleError naming the
    first key that `rename` does not know. `origin` receives our key -> the file's key."""
    out = {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            raise AssembleError(f"{path}: unexpected key '{key}'; expected the {layout} layout")
        out[prefix + new] = value
        if origin is not None:
            origin[prefix + new] = key
    return out


def map_wan_vae(state: dict[str, torch.Tensor], path: Path,
                origin: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Wan2.2_VAE.pth -> our keys (vae.vae.*); `origin` receives our key -> the file's key."""
    return _map_keys(state, path, wan_vae_key, "vae.vae.", "Wan 2.2 VAE", origin)


# umT5 encoder: original Wan T5Encoder names -> transformers UMT5EncoderModel ------------------------
_UMT5_RULES = [
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
     r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
]


def umt5_key(key: str) -> str | None:
    for pattern, repl in _UMT5_RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def umt5_config(state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """The UMT5Config of an original umT5 encoder file, read from its shapes (gated GELU, per-layer
    relative position buckets: the umT5 architecture)."""
    if "pos_embedding.embedding.weight" in state:
        raise AssembleError(f"{path}: one shared position bias (a T5 encoder); expected umT5 (one per layer)")
    for key in ("token_embedding.weight", "blocks.0.pos_embedding.embedding.weight", "blocks.0.attn.q.weight",
                "blocks.0.ffn.fc1.weight", "blocks.0.ffn.gate.0.weight"):
        if key not in state:
            raise AssembleError(f"{path}: key '{key}' missing; expected the Wan umT5 encoder layout")
    vocab, d_model = state["token_embedding.weight"].shape
    buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in state for m in [re.match(r"^blocks\.(\d+)\.", k)] if m)
    d_kv = int(state["blocks.0.attn.q.weight"].shape[0]) // heads
    return {"vocab_size": int(vocab), "d_model": int(d_model), "d_kv": d_kv,
            "d_ff": int(state["blocks.0.ffn.fc1.weight"].shape[0]), "num_layers": layers, "num_heads": int(heads),
            "relative_attention_num_buckets": int(buckets), "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6}


def map_umt5(state: dict[str, torch.Tensor], path: Path,
             origin: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Original umT5 encoder -> our keys (text_encoder.model.*); the embedding is tied. `origin`
    receives our key -> the file's key."""
    out = _map_keys(state, path, umt5_key, "text_encoder.model.", "Wan umT5 encoder", origin)
    shared = out.get("text_encoder.model.shared.weight")
    if shared is not None:
        out["text_encoder.model.encoder.embed_tokens.weight"] = shared
    return out


# Qwen3-VL Hugging Face folder -----------------------------------------------------------------------
def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face folder (model.safetensors or the shards of its index)."""
    from safetensors.torch import load_file

    index = folder / HF_WEIGHTS_INDEX
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise AssembleError(f"{index}: not a safetensors index ({exc})") from exc
    elif (folder / HF_WEIGHTS).is_file():
        files = [HF_WEIGHTS]
    else:
        raise AssembleError(f"{folder / HF_WEIGHTS}: missing (the Motus checkpoint holds no VLM weights either)")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (folder / name).is_file():
            raise AssembleError(f"{folder / name}: missing (listed in {HF_WEIGHTS_INDEX})")
        try:
            state.update(load_file(str(folder / name)))
        except Exception as exc:
            raise AssembleError(f"{folder / name}: unreadable safetensors ({exc})") from exc
    return state


def map_qwen3_vl(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Qwen3-VL folder keys (model.visual.*, model.language_model.*, lm_head.*) -> ours (vlm.model.*)."""
    out = {}
    for key, value in state.items():
        if key.startswith("visual."):                       # older layouts without the `model.` level
            key = "model." + key
        elif key.startswith("model.") and not key.startswith(("model.visual.", "model.language_model.")):
            key = "model.language_model." + key[len("model."):]
        out["vlm.model." + key] = value
    return out


# Locating the released files ------------------------------------------------------------------------
def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise AssembleError(f"{path}: missing ({what})")
    return path


def find_motus(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / OFFICIAL_FILE, path / "pytorch_model" / OFFICIAL_FILE):
            if candidate.is_file():
                return candidate
        return _need_file(path / OFFICIAL_FILE, "--motus: the released Motus checkpoint")
    return _need_file(path, "--motus: the released Motus checkpoint")


def find_vae(path: Path) -> Path:
    return _need_file(path / WAN_VAE_FILE if path.is_dir() else path, "--vae: the Wan 2.2 VAE")


def find_t5(path: Path, tokenizer: Path | None) -> tuple[Path, Path]:
    weights = _need_file(path / UMT5_FILE if path.is_dir() else path, "--t5: the umT5 encoder")
    tok = tokenizer or weights.parent / UMT5_TOKENIZER_SUBDIR
    if not tok.is_dir():
        raise AssembleError(f"{tok}: missing (--t5-tokenizer: the google/umt5-xxl tokenizer folder)")
    missing = missing_files(tok, TEXT_TOKENIZER_NEEDS)
    if missing:
        raise AssembleError(f"{tok / missing[0]}: missing (the umT5 tokenizer)")
    return weights, tok


def find_vlm(path: Path) -> Path:
    if not path.is_dir():
        raise AssembleError(f"{path}: not a folder (--vlm: the Qwen3-VL-2B-Instruct folder)")
    _need_file(path / "config.json", "--vlm: the Qwen3-VL config")
    missing = missing_files(path, VLM_PROCESSOR_NEEDS)
    if missing:
        raise AssembleError(f"{path / missing[0]}: missing (the Qwen3-VL processor)")
    return path


def find_wan_config(explicit: Path | None, *folders: Path) -> Path | None:
    """--wan-config, else wan_config.json beside the Motus file, else a WanModel config.json in the
    VAE's or umT5's folder (the Wan2.2-TI2V-5B folder)."""
    if explicit is not None:
        return _need_file(explicit, "--wan-config")
    if (folders[0] / WAN_CONFIG_FILE).is_file():
        return folders[0] / WAN_CONFIG_FILE
    for folder in folders[1:]:
        candidate = folder / WAN_MODEL_CONFIG
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and "text_len" in data and "num_heads" in data:
                return candidate
    return None


# Assembly ---------------------------------------------------------------------------------------------
@dataclass
class Part:
    """One released file mapped to our keys."""

    name: str
    source: Path
    state: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)      # our key -> the file's key

    def file_key(self, key: str, prefix: str) -> str:
        return self.origin.get(key, key[len(prefix):])


def _check_part(meta, part: Part, prefix: str) -> None:
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items() if k.startswith(prefix)}
    for key, value in part.state.items():
        if key not in expected:
            raise AssembleError(f"{part.source}: key '{part.file_key(key, prefix)}' has no place in the model "
                                f"({part.name})")
        if tuple(value.shape) != expected[key]:
            raise AssembleError(f"{part.source}: '{part.file_key(key, prefix)}' has shape {list(value.shape)}, "
                                f"the model needs {list(expected[key])} ({part.name})")
    missing = [k for k in expected if k not in part.state]
    if missing:
        raise AssembleError(f"{part.source}: {len(missing)} tensors missing for the {part.name}, e.g. "
                            f"'{missing[0][len(prefix):]}' (our name)")


def _write_shard(out: Path, name: str, state: dict[str, torch.Tensor]) -> dict[str, str]:
    """One safetensors shard; tensors registered twice (tied) are stored once. Returns its weight map."""
    from safetensors.torch import save_file

    tensors, tied = untie(state)
    save_file(tensors, str(out / name), metadata={"format": FORMAT, "tied": json.dumps(tied)})
    return {key: name for key in state}


def _copy_files(src: Path, dst: Path, names: tuple[str, ...]) -> list[str]:
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def assemble(motus: str | Path, vae: str | Path, t5: str | Path, vlm: str | Path, out: str | Path,
             t5_tokenizer: str | Path | None = None, wan_config: str | Path | None = None,
             base: MotusConfig | None = None, log=lambda msg: None) -> dict[str, Any]:
    """Released Motus + Wan2.2 VAE + umT5 + Qwen3-VL folders -> a motus_ros checkpoint folder `out`.

    Every file is located and checked before anything is written; the folder is written under a
    temporary name and renamed at the end. Returns the provenance written to assembled.json.
    """
    from .model import build_model

    started = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AssembleError(f"{out}: already exists and is not empty; choose another --out or remove it")
    motus_file = find_motus(Path(motus))
    vae_file = find_vae(Path(vae))
    t5_file, t5_tok = find_t5(Path(t5), Path(t5_tokenizer) if t5_tokenizer else None)
    vlm_dir = find_vlm(Path(vlm))
    wan_cfg = find_wan_config(Path(wan_config) if wan_config else None, motus_file.parent, vae_file.parent,
                              t5_file.parent)
    sources: dict[str, Any] = {"motus": str(motus_file), "vae": str(vae_file), "t5": str(t5_file),
                               "t5_tokenizer": str(t5_tok), "vlm": str(vlm_dir),
                               "wan_config": str(wan_cfg) if wan_cfg else None}

    # Experts (and, as in the official release, the VLM weights) from the Motus checkpoint.
    log(f"reading {motus_file}")
    from .checkpoint import read_official

    try:
        report = LoadReport(source_format="official")
        experts = official_to_ours(read_official(motus_file), report)
        cfg = infer_config(experts, base=base or preset("paper"))
        cfg = apply_official_configs(cfg, motus_file.parent, wan_config=wan_cfg,
                                     vlm_config=vlm_dir / "config.json")
    except CheckpointError as exc:
        raise AssembleError(str(exc)) from exc
    if report.unexpected:
        raise AssembleError(f"{motus_file}: {len(report.unexpected)} keys outside the Motus model, e.g. "
                            f"'{report.unexpected[0]}'")
    experts = drop_pretrain_parts(experts, report)
    pretrain_note = []
    if report.fresh:          # stage-2 pretrain: the official finetune starts these parts fresh
        experts.update(fresh_action_parts(cfg))
        pretrain_note = [f"stage-2 pretrain layout: {', '.join(report.fresh)} initialised fresh (as the official "
                         "finetune does); fine-tune before running a robot"]
    text_len_note = (f"text_len {cfg.text_max_len} from {wan_cfg}" if wan_cfg
                     else f"text_len {cfg.text_max_len} (the preset's; no Wan config.json found)")

    log(f"reading {vae_file}")
    vae_raw = state_dict_of(torch_load(vae_file), vae_file)
    vae_config = wan_vae_config(vae_raw, vae_file)
    vae_part = Part("Wan 2.2 VAE", vae_file, {})
    vae_part.state = map_wan_vae(vae_raw, vae_file, vae_part.origin)
    del vae_raw
    if (vae_config["scale_factor_spatial"], vae_config["scale_factor_temporal"]) != (cfg.vae_spatial, cfg.vae_temporal):
        raise AssembleError(f"{vae_file}: compresses {vae_config['scale_factor_spatial']}x spatially and "
                            f"{vae_config['scale_factor_temporal']}x in time; the model needs "
                            f"{cfg.vae_spatial}x and {cfg.vae_temporal}x")

    log(f"reading {t5_file}")
    t5_raw = state_dict_of(torch_load(t5_file), t5_file)
    text_config = umt5_config(t5_raw, t5_file)
    if text_config["d_model"] != cfg.text_dim:
        raise AssembleError(f"{t5_file}: umT5 width {text_config['d_model']}, the video expert's text "
                            f"projection takes {cfg.text_dim}")
    t5_part = Part("umT5 encoder", t5_file, {})
    t5_part.state = map_umt5(t5_raw, t5_file, t5_part.origin)
    del t5_raw

    cfg = cfg.replace(name=f"{cfg.name.replace('-inferred', '')}-assembled", vae_kind="wan", vae_config=vae_config,
                      text_kind="umt5", text_config=text_config, vlm_tokenizer="files", text_tokenizer="files")

    # Tokenizers and processor: loaded and checked against the configs before anything is written.
    try:
        processor = load_vlm_processor(vlm_dir)
        check_vlm_processor(processor, cfg.vlm_config, vlm_dir)
        t5_tokenizer_obj = load_text_tokenizer(t5_tok)
        check_text_tokenizer(t5_tokenizer_obj, text_config, t5_tok)
    except TokenizerError as exc:
        raise AssembleError(str(exc)) from exc

    meta = build_model(cfg, device="meta")
    vlm_in_motus = {k: v for k, v in experts.items() if k.startswith("vlm.")}
    expert_part = Part("experts", motus_file, {k: v for k, v in experts.items() if not k.startswith("vlm.")})
    if vlm_in_motus:
        vlm_part = Part("Qwen3-VL", motus_file, vlm_in_motus,
                        ["VLM weights from the Motus checkpoint (as the official code loads them); the VLM folder "
                         "gave config and processor"])
    else:
        log(f"reading the VLM weights of {vlm_dir}")
        vlm_part = Part("Qwen3-VL", vlm_dir, map_qwen3_vl(read_hf_weights(vlm_dir)),
                        ["VLM weights from the VLM folder (the Motus checkpoint holds none)"])
    lm_head, embed = "vlm.model.lm_head.weight", "vlm.model.model.language_model.embed_tokens.weight"
    if lm_head not in vlm_part.state and embed in vlm_part.state and cfg.vlm_config.get("tie_word_embeddings",
            (cfg.vlm_config.get("text_config") or {}).get("tie_word_embeddings", False)):
        vlm_part.state[lm_head] = vlm_part.state[embed]
    del experts

    try:
        rep = LoadReport(source_format="official")
        check_against(meta, expert_part.state, rep, optional_prefixes=("vae.", "text_encoder.", "vlm."))
        if not rep.ok:
            raise AssembleError(f"{motus_file}: does not fit the model ({rep.summary(3)})")
        for part, prefix in ((vlm_part, "vlm."), (vae_part, "vae."), (t5_part, "text_encoder.")):
            _check_part(meta, part, prefix)
    finally:
        del meta

    # Write under a temporary name, rename at the end.
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        weight_map: dict[str, str] = {}
        for part in (expert_part, vlm_part, vae_part, t5_part):
            shard = SHARDS[next(iter(part.state)).split(".")[0] + "."]
            log(f"writing {shard} ({part.name}, {len(part.state)} tensors)")
            weight_map.update(_write_shard(tmp, shard, part.state))
            part.state.clear()
        (tmp / WEIGHTS_INDEX_FILE).write_text(json.dumps({"metadata": {"format": FORMAT}, "weight_map": weight_map},
                                                         indent=1, sort_keys=True))
        copied_vlm = _copy_files(vlm_dir, tmp / VLM_PROCESSOR_DIR, VLM_PROCESSOR_FILES)
        copied_t5 = _copy_files(t5_tok, tmp / TEXT_TOKENIZER_DIR, TEXT_TOKENIZER_FILES)
        if "tokenizer.json" not in copied_t5:      # SentencePiece only: write the fast form, so loading
            t5_tokenizer_obj.save_pretrained(str(tmp / TEXT_TOKENIZER_DIR))   # needs no sentencepiece
            copied_t5.append("tokenizer.json (written from spiece.model)")
        (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "config": cfg.to_dict()}, indent=2,
                                                  sort_keys=True))
        provenance = {"sources": sources, "notes": vlm_part.notes + [text_len_note] + pretrain_note,
                      "layout": "stage-2 pretrain" if report.fresh else "finetune",
                      "tokenizer_files": {VLM_PROCESSOR_DIR: copied_vlm, TEXT_TOKENIZER_DIR: copied_t5},
                      "chunk_size": cfg.chunk_size, "conventions": cfg.conventions.to_dict(),
                      "tensors": len(weight_map), "seconds": round(time.perf_counter() - started, 1)}
        (tmp / SOURCES_FILE).write_text(json.dumps(provenance, indent=2))
        if out.exists():
            out.rmdir()
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance
