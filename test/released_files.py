"""Tiny stand-ins of the released files, in their real layouts, built locally (no hub).

- Qwen3-VL processor folder: a byte-level BPE tokenizer trained here with the `tokenizers` library
  (Qwen's special tokens added), tokenizer_config.json (Qwen2Tokenizer), chat_template.json (a
  template of the Qwen3-VL shape: <|im_start|>role, content items in order, an image as
  <|vision_start|><|image_pad|><|vision_end|>), preprocessor_config.json (Qwen2-VL image processor
  with Qwen3-VL's patch 16 / merge 2 / mean = std = 0.5).
- umT5 tokenizer folder (google/umt5-xxl): a Unigram tokenizer with a Metaspace pre-tokenizer and
  "</s>" appended, <pad> = 0, </s> = 1, <unk> = 2 as in T5, tokenizer_config.json (T5Tokenizer).
- Wan2.2-TI2V-5B folder: Wan2.2_VAE.pth and models_t5_umt5-xxl-enc-bf16.pth from
  fixtures/official_encoders (made by the official modules), google/umt5-xxl/, config.json (the Wan
  model config: sizes and text_len).
- Qwen3-VL-2B-Instruct folder: config.json, model.safetensors (Hugging Face key names), processor files.
- Motus folder: mp_rank_00_model_states.pt in the DeepSpeed layout ({'module': ...} with aliases).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

ENCODERS = Path(__file__).parent / "fixtures" / "official_encoders"
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")
CORPUS = ["pick up the red cube and place it in the blue bowl", "stack the green blocks", "open the drawer",
          "user assistant system", "put the cup on the plate", "the robot picks up the cup"]
QWEN_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content.type == 'text' %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
TEXT_LEN = 16       # the Wan config's text_len of the fabricated folder


def make_qwen_processor(folder: Path) -> dict[str, int]:
    """Write a Qwen3-VL processor folder; returns the special-token ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN_SPECIALS])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 262144, "pad_token": "<|endoftext|>",
        "eos_token": "<|im_end|>", "errors": "replace", "add_prefix_space": False,
        "clean_up_tokenization_spaces": False}))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_TEMPLATE}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "size": {"longest_edge": 16777216, "shortest_edge": 4096}}))
    return {s: tok.token_to_id(s) for s in QWEN_SPECIALS}


def make_umt5_tokenizer(folder: Path) -> None:
    """Write a google/umt5-xxl-like tokenizer folder (SentencePiece Unigram in tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "extra_ids": 0, "model_max_length": 1000000000000000019884624838656}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": "</s>", "pad_token": "<pad>",
                                                                "unk_token": "<unk>"}))


def tiny_vlm_config(ids: dict[str, int], hidden: int = 32) -> dict:
    """The tiny Qwen3-VL config of the presets with the fabricated tokenizer's special ids."""
    from motus_ros.motus.config import _tiny_vlm

    cfg = _tiny_vlm(hidden)
    cfg.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    cfg["text_config"]["rope_scaling"]["rope_theta"] = 5_000_000.0
    return cfg


def tiny_official_config(ids: dict[str, int], chunk: int = 48):
    """A tiny Motus (robot dims 14, chunk 48 = the sim data rates) with the official conventions."""
    from motus_ros.motus.config import OFFICIAL_CONVENTIONS, preset

    return preset("tiny").replace(action_dim=14, state_dim=14, chunk_size=chunk, vlm_config=tiny_vlm_config(ids),
                                  conventions=OFFICIAL_CONVENTIONS, text_max_len=TEXT_LEN)


def make_released(root: Path, vlm_in_motus: bool = True, seed: int = 5) -> dict[str, Path]:
    """The four released artefacts at toy size under root; returns their paths."""
    from safetensors.torch import save_file

    from motus_ros.motus.checkpoint import ours_to_official
    from motus_ros.motus.config import TIME_FREQ_DIM
    from motus_ros.motus.model import build_model

    vlm_dir = root / "Qwen3-VL-2B-Instruct"
    ids = make_qwen_processor(vlm_dir)
    cfg = tiny_official_config(ids)
    model = build_model(cfg, seed=seed)
    with torch.no_grad():                       # non-zero output heads, so outputs say something
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    from transformers import Qwen3VLConfig

    hf_cfg = Qwen3VLConfig(**cfg.vlm_config).to_dict()
    hf_cfg.update(architectures=["Qwen3VLForConditionalGeneration"], model_type="qwen3_vl")
    (vlm_dir / "config.json").write_text(json.dumps(hf_cfg))
    vlm_state = {k: v.contiguous() for k, v in model.vlm.model.state_dict().items()}
    lm, emb = "lm_head.weight", "model.language_model.embed_tokens.weight"
    if lm in vlm_state and vlm_state[lm].data_ptr() == vlm_state[emb].data_ptr():
        del vlm_state[lm]                       # tied: Hugging Face saves the embedding once
    save_file({k: v.clone() for k, v in vlm_state.items()}, str(vlm_dir / "model.safetensors"))

    wan_dir = root / "Wan2.2-TI2V-5B"
    wan_dir.mkdir(parents=True)
    for name in ("Wan2.2_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        shutil.copy(ENCODERS / name, wan_dir / name)
    make_umt5_tokenizer(wan_dir / "google" / "umt5-xxl")
    (wan_dir / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "dim": cfg.attn_dim, "eps": 1e-6, "ffn_dim": cfg.video_ffn_dim,
        "freq_dim": TIME_FREQ_DIM, "in_dim": cfg.latent_channels, "model_type": "ti2v", "num_heads": cfg.num_heads,
        "num_layers": cfg.num_layers, "out_dim": cfg.latent_channels, "text_len": TEXT_LEN}))

    motus_dir = root / "Motus"
    motus_dir.mkdir()
    state = ours_to_official(model.state_dict(), config=cfg)
    if not vlm_in_motus:
        state = {k: v for k, v in state.items() if "vlm_model." not in k}
    torch.save({"module": state, "global_steps": 1}, motus_dir / "mp_rank_00_model_states.pt")
    return {"motus": motus_dir, "wan": wan_dir, "vae": wan_dir / "Wan2.2_VAE.pth",
            "t5": wan_dir / "models_t5_umt5-xxl-enc-bf16.pth", "vlm": vlm_dir, "model": model}
