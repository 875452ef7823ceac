"""Tokenizers of the two text paths: the Qwen3-VL processor (understanding expert) and the umT5
tokenizer (video expert's text context), read from files inside a motus_ros checkpoint folder.

A checkpoint whose config says `vlm_tokenizer: "files"` / `text_tokenizer: "files"` carries them in
two sub-folders, copied there by `motus-ros checkpoint assemble` from the released folders:

    VLM_PROCESSOR_DIR/   the Qwen3-VL-2B-Instruct processor files: tokenizer.json (or vocab.json +
                         merges.txt), tokenizer_config.json, preprocessor_config.json, and the chat
                         template (chat_template.json / chat_template.jinja / in tokenizer_config.json)
    TEXT_TOKENIZER_DIR/  the google/umt5-xxl tokenizer: tokenizer.json (or spiece.model), its configs

Presets and the shipped sim weights have no files ("byte"): both paths then use encoders.ByteTokenizer,
a stand-in that is only meaningful for weights trained with it. Everything is read with
local_files_only=True: no network, ever.

The Qwen3-VL processor is transformers' Qwen3VLProcessor restricted to images: its video processor
needs torchvision, which neither this project nor a still-image robot policy needs.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

VLM_PROCESSOR_DIR = "vlm_processor"
TEXT_TOKENIZER_DIR = "text_tokenizer"
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# What a folder must hold (any one of each tuple).
VLM_PROCESSOR_NEEDS = (("tokenizer.json", "vocab.json"), ("tokenizer_config.json",), ("preprocessor_config.json",))
TEXT_TOKENIZER_NEEDS = (("tokenizer.json", "spiece.model"),)
# Files copied from a released folder (whatever of these exists).
VLM_PROCESSOR_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                       "added_tokens.json", "preprocessor_config.json", "processor_config.json",
                       "chat_template.json", "chat_template.jinja")
TEXT_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json")


class TokenizerError(ValueError):
    """Tokenizer or processor files that are missing, unreadable or do not fit the model."""


def missing_files(folder: Path, needs: tuple[tuple[str, ...], ...]) -> list[str]:
    """The first name of every requirement of `needs` that `folder` does not satisfy."""
    return [names[0] for names in needs if not any((folder / n).is_file() for n in names)]


def require_files(folder: Path, needs: tuple[tuple[str, ...], ...], what: str) -> None:
    if not folder.is_dir():
        raise TokenizerError(f"{folder}: no such folder ({what})")
    missing = missing_files(folder, needs)
    if missing:
        raise TokenizerError(f"{folder / missing[0]}: missing ({what})")


def read_chat_template(folder: Path) -> str | None:
    """The chat template of a processor folder: chat_template.jinja, chat_template.json, or the
    tokenizer_config.json entry; None when there is none."""
    jinja, js = folder / "chat_template.jinja", folder / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text()
    for path, key in ((js, "chat_template"), (folder / "tokenizer_config.json", "chat_template")):
        if path.is_file():
            try:
                value = json.loads(path.read_text()).get(key)
            except (OSError, json.JSONDecodeError) as exc:
                raise TokenizerError(f"{path}: not readable JSON ({exc})") from exc
            if isinstance(value, str) and value:
                return value
    return None


def _image_only_processor_class():
    from transformers import Qwen3VLProcessor

    class ImageQwen3VLProcessor(Qwen3VLProcessor):
        """Qwen3VLProcessor without its video processor (which needs torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageQwen3VLProcessor


def load_vlm_processor(folder: str | Path):
    """transformers' Qwen3-VL processor (tokenizer, image processor, chat template) from `folder`."""
    folder = Path(folder)
    require_files(folder, VLM_PROCESSOR_NEEDS, "Qwen3-VL processor")
    template = read_chat_template(folder)
    if template is None:
        raise TokenizerError(f"{folder / 'chat_template.json'}: missing (Qwen3-VL processor: no chat template in "
                             "chat_template.json, chat_template.jinja or tokenizer_config.json)")
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{folder}: cannot load the Qwen3-VL tokenizer/image processor "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def load_text_tokenizer(folder: str | Path):
    """The umT5 tokenizer (transformers AutoTokenizer) from `folder`."""
    folder = Path(folder)
    require_files(folder, TEXT_TOKENIZER_NEEDS, "umT5 tokenizer")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        hint = "" if (folder / "tokenizer.json").is_file() else "; with spiece.model only, install sentencepiece"
        raise TokenizerError(f"{folder}: cannot load the umT5 tokenizer ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}{hint})") from exc


def check_vlm_processor(processor, vlm_config: dict[str, Any], where: Path) -> None:
    """The processor's special-token ids and patch geometry must be the VLM's, else TokenizerError."""
    expect = {"image_token_id": processor.image_token_id, "vision_start_token_id": processor.vision_start_token_id,
              "vision_end_token_id": processor.vision_end_token_id}
    for key, got in expect.items():
        want = vlm_config.get(key)
        if want is not None and got != want:
            raise TokenizerError(f"{where}: {key} is {got} in the tokenizer but {want} in the VLM config")
    vision = vlm_config.get("vision_config") or {}
    ip = processor.image_processor
    for ours, theirs in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                         ("temporal_patch_size", "temporal_patch_size")):
        got, want = getattr(ip, ours, None), vision.get(theirs)
        if want is not None and got is not None and got != want:
            raise TokenizerError(f"{where / 'preprocessor_config.json'}: {ours}={got}, the VLM's vision_config "
                                 f"has {theirs}={want}")
    vocab = (vlm_config.get("text_config") or {}).get("vocab_size")
    if vocab is not None and len(processor.tokenizer) > vocab:
        raise TokenizerError(f"{where}: the tokenizer has {len(processor.tokenizer)} tokens, more than the VLM's "
                             f"vocab_size {vocab}")


def check_text_tokenizer(tokenizer, text_config: dict[str, Any], where: Path) -> None:
    vocab = text_config.get("vocab_size")
    if vocab is not None and len(tokenizer) > vocab:
        raise TokenizerError(f"{where}: the tokenizer has {len(tokenizer)} tokens, more than the umT5 "
                             f"vocab_size {vocab}")


def clean_instruction(text: str) -> str:
    """The official umT5 text cleaning ('whitespace'): HTML entities unescaped twice, whitespace runs
    collapsed, ends stripped. (The official code also runs ftfy.fix_text, which only repairs
    mis-decoded Unicode; it is applied when ftfy is installed.)"""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def folder_digest(folder: Path | None) -> str:
    """SHA-256 over the names and bytes of a tokenizer folder's files ("" for None)."""
    if folder is None:
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tokenizer_status(cfg, folder: str | Path | None = None) -> str:
    """One line naming what the VLM and the text encoder tokenize with, for `checkpoint inspect`
    and start-up logs. `folder`: the checkpoint folder (its files are looked for when given)."""
    prompt = f"VLM prompt {cfg.conventions.vlm_prompt}"
    padding = f"umT5 ids padded to text_len {cfg.text_max_len}" if cfg.conventions.text_context == "fixed" else ""
    if cfg.vlm_tokenizer != "files" and cfg.text_tokenizer != "files":
        return ("byte tokenizer stand-in for Qwen3-VL and umT5 (no tokenizer files; meaningful only for weights "
                f"trained with it); {prompt}")

    def part(name: str, source: str, sub: str, needs) -> str:
        if source != "files":
            return f"{name}: byte stand-in (no tokenizer files)"
        if folder is None:
            return f"{name}: files in {sub}/"
        where = Path(folder) / sub
        missing = missing_files(where, needs) if where.is_dir() else [sub + "/"]
        return f"{name}: {where}" + (f" (MISSING {', '.join(missing)})" if missing else "")
    return "; ".join(x for x in (part("Qwen3-VL processor", cfg.vlm_tokenizer, VLM_PROCESSOR_DIR, VLM_PROCESSOR_NEEDS),
                                 prompt, part("umT5 tokenizer", cfg.text_tokenizer, TEXT_TOKENIZER_DIR,
                                              TEXT_TOKENIZER_NEEDS), padding) if x)


def attach_tokenizers(model, folder: str | Path) -> None:
    """Load the tokenizer files a checkpoint's config asks for from `folder` into the model's
    encoders (TokenizerError naming the file when one is missing or does not fit)."""
    cfg, folder = model.config, Path(folder)
    model.tokenizer_folder = folder if "files" in (cfg.vlm_tokenizer, cfg.text_tokenizer) else None
    if getattr(model, "vlm", None) is None:
        return
    if cfg.vlm_tokenizer == "files":
        processor = load_vlm_processor(folder / VLM_PROCESSOR_DIR)
        check_vlm_processor(processor, cfg.vlm_config, folder / VLM_PROCESSOR_DIR)
        model.vlm.set_processor(processor)
    if cfg.text_tokenizer == "files":
        tokenizer = load_text_tokenizer(folder / TEXT_TOKENIZER_DIR)
        check_text_tokenizer(tokenizer, cfg.text_config, folder / TEXT_TOKENIZER_DIR)
        model.text_encoder.set_tokenizer(tokenizer)
    if hasattr(model, "clear_text_cache"):
        model.clear_text_cache()


def copy_tokenizer_files(src: str | Path, dst: str | Path, cfg) -> None:
    """Copy the tokenizer sub-folders the config needs from checkpoint folder src to dst."""
    import shutil

    src, dst = Path(src), Path(dst)
    for source, sub in ((cfg.vlm_tokenizer, VLM_PROCESSOR_DIR), (cfg.text_tokenizer, TEXT_TOKENIZER_DIR)):
        if source != "files" or src.resolve() == dst.resolve():
            continue
        if not (src / sub).is_dir():
            raise TokenizerError(f"{src / sub}: missing (the config needs its tokenizer files)")
        tmp = dst / (sub + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / sub, tmp)
        shutil.rmtree(dst / sub, ignore_errors=True)
        tmp.replace(dst / sub)


PROJECT_TOKENIZERS = {"vlm_prompt": "image_text", "text_context": "longest", "vlm": "byte", "text": "byte"}


def tokenizer_fingerprint(model) -> dict[str, str]:
    """What decides the encoders' token ids besides their weights (latent cache keys)."""
    cfg, folder = model.config, getattr(model, "tokenizer_folder", None)
    out = {"vlm_prompt": cfg.conventions.vlm_prompt, "text_context": cfg.conventions.text_context}
    for source, sub, key in ((cfg.vlm_tokenizer, VLM_PROCESSOR_DIR, "vlm"),
                             (cfg.text_tokenizer, TEXT_TOKENIZER_DIR, "text")):
        out[key] = "byte" if source != "files" or folder is None else folder_digest(Path(folder) / sub)
    return out


def model_tokenizer_status(model) -> str:
    """One line for a loaded model (what the policy node logs at start-up)."""
    return tokenizer_status(model.config, getattr(model, "tokenizer_folder", None))
