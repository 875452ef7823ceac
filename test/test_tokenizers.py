"""Real tokenizers (issue 12): the Qwen3-VL processor and the umT5 tokenizer from local files.

Tiny tokenizers are trained here with the `tokenizers` library (test/released_files.py); the
expected ids are computed with that library directly, not through the code under test.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from tokenizers import Tokenizer

from motus_ros.motus.config import OFFICIAL_CONVENTIONS, PROJECT_CONVENTIONS, preset
from motus_ros.motus.encoders import Qwen3VLEncoder, UMT5TextEncoder
from motus_ros.motus.tokenization import (TokenizerError, check_vlm_processor, clean_instruction,
                                          load_text_tokenizer, load_vlm_processor, tokenizer_status)

from released_files import TEXT_LEN, make_qwen_processor, make_umt5_tokenizer, tiny_vlm_config

torch.set_num_threads(2)
INSTRUCTION = "pick up the red cube"
IMAGE = (64, 64)                     # the tiny preset's VLM image: 4 x 4 patches -> 4 merged image tokens
IMAGE_TOKENS = 4


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen") / "Qwen3-VL-2B-Instruct"
    ids = make_qwen_processor(folder)
    return folder, ids


@pytest.fixture(scope="module")
def umt5_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("umt5") / "umt5-xxl"
    make_umt5_tokenizer(folder)
    return folder


def vlm_encoder(qwen, prompt: str) -> Qwen3VLEncoder:
    folder, ids = qwen
    enc = Qwen3VLEncoder(tiny_vlm_config(ids), IMAGE, prompt=prompt)
    enc.set_processor(load_vlm_processor(folder))
    return enc


def uint8_images(batch: int = 1) -> torch.Tensor:
    """Images in [-1, 1] that are exactly uint8 pixels (what the policy feeds)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, *IMAGE), generator=g).float() / 127.5 - 1


def raw_ids(folder, text: str) -> list[int]:
    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


def test_vlm_input_is_the_chat_template_with_the_instruction_then_the_image(qwen):
    folder, ids = qwen
    enc = vlm_encoder(qwen, OFFICIAL_CONVENTIONS.vlm_prompt)
    inp = enc.processor_inputs(uint8_images(), [INSTRUCTION])
    image = "<|vision_start|>" + "<|image_pad|>" * IMAGE_TOKENS + "<|vision_end|>"
    expected = raw_ids(folder, f"<|im_start|>user\n{INSTRUCTION}{image}<|im_end|>\n")
    assert inp["input_ids"][0].tolist() == expected
    row = expected
    assert row.index(ids["<|vision_start|>"]) > max(i for i, t in enumerate(row) if t in raw_ids(folder, INSTRUCTION))
    assert inp["image_grid_thw"].tolist() == [[1, IMAGE[0] // 16, IMAGE[1] // 16]]
    assert inp["attention_mask"].all()


def test_processor_pixels_are_the_qwen_patch_layout(qwen):
    """The image processor's pixel_values equal the built-in patchify (same layout, same scaling)."""
    enc = vlm_encoder(qwen, "chat_text_image")
    images = uint8_images(2)
    inp = enc.processor_inputs(images, [INSTRUCTION, "open the drawer"])
    ours, grid = enc.patchify(images)
    assert torch.equal(inp["image_grid_thw"], grid)
    assert float((inp["pixel_values"] - ours).abs().max()) < 1e-5


def test_training_dataset_layout_puts_the_image_first_with_the_generation_prompt(qwen):
    folder, _ = qwen
    enc = vlm_encoder(qwen, "chat_image_text")
    inp = enc.processor_inputs(uint8_images(), [INSTRUCTION])
    image = "<|vision_start|>" + "<|image_pad|>" * IMAGE_TOKENS + "<|vision_end|>"
    expected = raw_ids(folder, f"<|im_start|>user\n{image}{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
    assert inp["input_ids"][0].tolist() == expected


def test_batches_are_right_padded_and_masked(qwen):
    enc = vlm_encoder(qwen, "chat_text_image")
    feats, mask = enc(uint8_images(2), [INSTRUCTION, "open the drawer please now"])
    lengths = mask.sum(1).tolist()
    assert lengths[0] != lengths[1] and feats.shape[:2] == mask.shape
    short = lengths.index(min(lengths))
    assert not mask[short, min(lengths):].any() and mask[short, : min(lengths)].all()
    alone, _ = enc(uint8_images(2)[short: short + 1], [[INSTRUCTION, "open the drawer please now"][short]])
    assert float((feats[short, : min(lengths)] - alone[0]).abs().max()) < 1e-4


def test_umt5_ids_come_from_the_tokenizer_padded_to_text_len(umt5_dir):
    enc = UMT5TextEncoder({"vocab_size": 256, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4},
                          max_len=TEXT_LEN, fixed_length=True)
    enc.set_tokenizer(load_text_tokenizer(umt5_dir))
    messy = "  pick up   the &amp;amp; red\ncube "
    ids, mask = enc.token_ids([messy, "open"])
    clean = clean_instruction(messy)
    assert clean == "pick up the & red cube"
    for row, m, text in zip(ids, mask, [clean, "open"]):
        expected = raw_ids(umt5_dir, text)
        assert expected[-1] == 1                                   # </s> appended, as add_special_tokens does
        assert row.tolist() == expected + [0] * (TEXT_LEN - len(expected))
        assert m.tolist() == [1] * len(expected) + [0] * (TEXT_LEN - len(expected))
    states = enc([messy, "open"])
    assert states.shape == (2, TEXT_LEN, 32)
    assert not states[mask == 0].any() and states[mask == 1].abs().sum(-1).gt(0).all()

    enc.fixed_length = False                                       # the project's convention: longest
    ids, _ = enc.token_ids([messy, "open"])
    assert ids.shape[1] == len(raw_ids(umt5_dir, clean))


def test_umt5_ids_are_cut_at_text_len(umt5_dir):
    enc = UMT5TextEncoder({"vocab_size": 256, "d_model": 32, "num_layers": 1, "num_heads": 4, "d_kv": 8},
                          max_len=6, fixed_length=True)
    enc.set_tokenizer(load_text_tokenizer(umt5_dir))
    ids, mask = enc.token_ids(["pick up the red cube and place it in the blue bowl"])
    assert ids.shape == (1, 6) and mask.all()


def test_byte_tokenizer_only_without_files_and_the_status_says_so(qwen):
    cfg = preset("tiny")
    assert tokenizer_status(cfg).startswith("byte tokenizer stand-in for Qwen3-VL and umT5 (no tokenizer files")
    official = cfg.replace(conventions=OFFICIAL_CONVENTIONS)
    enc = Qwen3VLEncoder(tiny_vlm_config(qwen[1]), IMAGE, prompt=official.conventions.vlm_prompt)
    rows = enc.byte_ids([INSTRUCTION], IMAGE_TOKENS)
    assert rows[0][: len(INSTRUCTION)] == [4 + b for b in INSTRUCTION.encode()]          # text first
    assert rows[0][len(INSTRUCTION)] == enc.start_id
    project = Qwen3VLEncoder(tiny_vlm_config(qwen[1]), IMAGE, prompt=PROJECT_CONVENTIONS.vlm_prompt)
    assert project.byte_ids([INSTRUCTION], IMAGE_TOKENS)[0][0] == project.start_id       # image first (sim weights)

    files = cfg.replace(vlm_tokenizer="files", text_tokenizer="files", conventions=OFFICIAL_CONVENTIONS)
    line = tokenizer_status(files, qwen[0].parent)
    assert "Qwen3-VL processor:" in line and "MISSING" in line and "\n" not in line


def test_missing_or_mismatched_processor_files_are_named(qwen, tmp_path):
    folder, ids = qwen
    broken = tmp_path / "no_template"
    shutil.copytree(folder, broken)
    (broken / "chat_template.json").unlink()
    with pytest.raises(TokenizerError, match="chat_template.json: missing"):
        load_vlm_processor(broken)
    (tmp_path / "no_prep").mkdir()
    shutil.copy(folder / "tokenizer.json", tmp_path / "no_prep")
    shutil.copy(folder / "tokenizer_config.json", tmp_path / "no_prep")
    with pytest.raises(TokenizerError, match="preprocessor_config.json: missing"):
        load_vlm_processor(tmp_path / "no_prep")
    wrong = tiny_vlm_config(ids)
    wrong["image_token_id"] = 7
    with pytest.raises(TokenizerError, match="image_token_id is .* in the tokenizer but 7 in the VLM config"):
        check_vlm_processor(load_vlm_processor(folder), wrong, folder)
    prep = json.loads((folder / "preprocessor_config.json").read_text())
    shutil.copytree(folder, tmp_path / "patch14")
    (tmp_path / "patch14" / "preprocessor_config.json").write_text(json.dumps({**prep, "patch_size": 14}))
    with pytest.raises(TokenizerError, match="patch_size=14"):
        check_vlm_processor(load_vlm_processor(tmp_path / "patch14"), tiny_vlm_config(ids), tmp_path / "patch14")
