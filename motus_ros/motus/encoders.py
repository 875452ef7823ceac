"""Frozen encoders around the three experts: frames <-> latents, image+text -> VLM features, text.

Interfaces (what the model relies on):
- FrameAutoencoder: encode(frames [B,3,F,H,W] in [-1,1]) -> latents [B,C,1+(F-1)/t,H/s,W/s]
  (t = vae_temporal, s = vae_spatial: 4 and 16 for Wan 2.2); decode(latents) -> frames [B,3,F,H,W] in [-1,1].
- VisionLanguageEncoder: forward(images [B,3,H,W] in [-1,1], instructions list[str])
  -> (features [B,L,vlm_hidden], mask [B,L] bool), the VLM's last hidden layer.
- TextEncoder: forward(instructions list[str]) -> [B,L,text_dim] (pad positions zero, Wan style).

Implementations: WanVAE (diffusers AutoencoderKLWan, Wan 2.2 layout), PatchAutoencoder (light,
parameter-free stand-in used by the `small` preset), LearnedVideoAE (video_ae.py: a small trained
AutoencoderKL read from config.vae_path, vae_kind "learned"), Qwen3VLEncoder (transformers
Qwen3-VL), UMT5TextEncoder (transformers UMT5).

Tokenizers: a checkpoint that carries tokenizer files (config vlm_tokenizer / text_tokenizer
"files", see tokenization.py) gets transformers' Qwen3-VL processor and the umT5 tokenizer attached
(set_processor / set_tokenizer); the Qwen3-VL input is then laid out by conventions.vlm_prompt
(official: chat template, instruction then image) and the umT5 ids are padded to text_max_len under
conventions.text_context "fixed" (official: text_len 512). Presets and the shipped sim weights have
no files and keep ByteTokenizer (UTF-8 bytes as ids), a stand-in meaningful only for weights
trained with it.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import MotusConfig


class ByteTokenizer:
    """UTF-8 bytes -> ids in [first_id, first_id + 256): stand-in for SentencePiece/BPE tokenizers."""

    def __init__(self, first_id: int = 4, max_len: int = 64):
        self.first_id = first_id
        self.max_len = max_len

    def __call__(self, text: str) -> list[int]:
        return [self.first_id + b for b in text.encode("utf-8")[: self.max_len]] or [self.first_id]


def _hf_tokenize(tokenizer: Any, text: str, max_len: int) -> list[int]:
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer(text)
    return list(tokenizer(text, truncation=True, max_length=max_len)["input_ids"])


# Frames <-> latents -------------------------------------------------------------------------------
class WanVAE(nn.Module):
    """diffusers AutoencoderKLWan (Wan 2.2: 48 channels, 16x spatial, 4x temporal), latents normalized."""

    def __init__(self, vae_config: dict[str, Any]):
        super().__init__()
        from diffusers import AutoencoderKLWan

        self.vae = AutoencoderKLWan(**vae_config)
        z = self.vae.config.z_dim
        mean = vae_config.get("latents_mean") or [0.0] * z
        std = vae_config.get("latents_std") or [1.0] * z
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,3,F,H,W] in [-1,1] -> normalized latents (posterior mean)."""
        z = self.vae.encode(frames).latent_dist.mode()
        return (z - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents * self.latents_std + self.latents_mean
        return self.vae.decode(z).sample.clamp(-1, 1)


class PatchAutoencoder(nn.Module):
    """Light stand-in for the Wan VAE (same shapes): no parameters, exact geometry.

    Encode: each 16x16 pixel patch becomes 48 channels = 3 colours x a 4x4 grid of 4x4-pixel means
    (a 4x down-sampled image, pixel-unshuffled); the first frame stands alone and later frames are
    averaged in groups of 4 (Wan's causal temporal layout). Decode repeats and up-samples.
    """

    def __init__(self, spatial: int = 16, temporal: int = 4, channels: int = 48):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.inner = spatial // 4  # 4x4 sub-blocks per patch -> 3 * 16 = 48 channels
        if 3 * self.inner * self.inner != channels:
            raise ValueError(f"PatchAutoencoder: channels={channels}, expected {3 * self.inner ** 2}")

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = frames.shape
        first, rest = frames[:, :, :1], frames[:, :, 1:]
        groups = [first]
        if rest.shape[2]:
            # [B,3,F-1,H,W] -> [B,3,(F-1)/4,4,H,W] -> mean over the 4 frames of a group
            groups.append(rest.unflatten(2, (-1, self.temporal)).mean(3))
        x = torch.cat(groups, 2)                                    # [B,3,T,H,W]
        t = x.shape[2]
        x = x.transpose(1, 2).flatten(0, 1)                         # [B*T,3,H,W]
        x = F.avg_pool2d(x, 4)                                      # [B*T,3,H/4,W/4]
        x = F.pixel_unshuffle(x, self.inner)                        # [B*T,48,H/16,W/16]
        return x.unflatten(0, (b, t)).transpose(1, 2)               # [B,48,T,H/16,W/16]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        x = latents.transpose(1, 2).flatten(0, 1)                   # [B*T,48,h,w]
        x = F.pixel_shuffle(x, self.inner)                          # [B*T,3,4h,4w]
        x = F.interpolate(x, scale_factor=4, mode="nearest")        # [B*T,3,16h,16w]
        x = x.unflatten(0, (b, t)).transpose(1, 2)                  # [B,3,T,H,W]
        first, rest = x[:, :, :1], x[:, :, 1:]
        rest = rest.repeat_interleave(self.temporal, dim=2)
        return torch.cat([first, rest], 2).clamp(-1, 1)


# Vision-language features -------------------------------------------------------------------------
class Qwen3VLEncoder(nn.Module):
    """Last hidden layer of a (frozen) transformers Qwen3-VL for one image + instruction per sample.

    With a processor attached (set_processor: transformers' Qwen3-VL processor from the checkpoint's
    files) the input is what the official code feeds: the processor's tokenizer, image processor and
    chat template, laid out by `prompt` (conventions.vlm_prompt). Without one, images are patchified
    here in the Qwen2-VL processor layout (16x16 patches, temporal patch 2 = the still image
    repeated, 2x2 merge order) and the instruction goes through ByteTokenizer.
    """

    MEAN = 0.5  # Qwen3-VL image processor: image_mean = image_std = 0.5 on [0,1] pixels
    STD = 0.5

    def __init__(self, vlm_config: dict[str, Any], image_size: tuple[int, int], max_text: int = 64,
                 tokenizer: Any = None, prompt: str = "image_text"):
        super().__init__()
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        cfg = Qwen3VLConfig(**vlm_config)
        self.model = Qwen3VLForConditionalGeneration(cfg)
        self.image_size = tuple(image_size)
        vc = cfg.vision_config
        self.patch, self.merge, self.tpatch = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
        self.image_token_id = cfg.image_token_id
        self.start_id, self.end_id = cfg.vision_start_token_id, cfg.vision_end_token_id
        self.tokenizer = tokenizer or ByteTokenizer(first_id=4, max_len=max_text)
        self.max_text = max_text
        self.prompt = prompt
        self.processor: Any = None
        self.requires_grad_(False)

    def set_processor(self, processor: Any) -> None:
        """Use transformers' Qwen3-VL processor (tokenizer + image processor + chat template)."""
        processor.tokenizer.padding_side = "right"     # as the official batching: pads after the tokens
        self.processor = processor

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    def patchify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B,3,H,W] in [-1,1] -> pixel_values [B*gh*gw, 3*2*16*16], grid_thw [B,3]."""
        h, w = self.image_size
        x = F.interpolate(images.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        x = ((x + 1) / 2 - self.MEAN) / self.STD
        b, p, m, tp = x.shape[0], self.patch, self.merge, self.tpatch
        gh, gw = h // p, w // p
        x = x.unsqueeze(1).expand(b, tp, 3, h, w)                                     # [B,tp,3,H,W]
        x = x.reshape(b, tp, 3, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)                                     # [B,gh/m,gw/m,m,m,3,tp,p,p]
        pixel_values = x.reshape(b * gh * gw, 3 * tp * p * p)
        grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=images.device)
        return pixel_values, grid

    def prompt_text(self, instruction: str) -> str:
        """The processor text of one sample (its image placeholder expanded by the processor)."""
        p = self.processor
        if self.prompt == "image_text":
            return p.vision_start_token + p.image_token + p.vision_end_token + instruction
        text_part, image_part = {"type": "text", "text": instruction}, {"type": "image"}
        first_text = self.prompt == "chat_text_image"
        content = [text_part, image_part] if first_text else [image_part, text_part]
        return p.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                     add_generation_prompt=not first_text)

    def processor_inputs(self, images: torch.Tensor, instructions: list[str]) -> dict[str, torch.Tensor]:
        """images [B,3,H,W] in [-1,1] + instructions -> the processor's input_ids [B,L] (right padded),
        attention_mask [B,L], pixel_values [patches, C*tp*p*p], image_grid_thw [B,3]."""
        x = images.float()
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        # The official code hands the processor the uint8 condition frame.
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # [B,H,W,3]
        enc = self.processor(text=[self.prompt_text(t) for t in instructions], images=list(pixels),
                             return_tensors="pt", padding=True)
        dev = images.device
        return {"input_ids": enc["input_ids"].to(dev), "attention_mask": enc["attention_mask"].to(dev),
                "pixel_values": enc["pixel_values"].to(dev), "image_grid_thw": enc["image_grid_thw"].to(dev)}

    def byte_ids(self, instructions: list[str], n_img: int) -> list[list[int]]:
        """ByteTokenizer rows in the prompt's order (no chat template without tokenizer files)."""
        image = [self.start_id] + [self.image_token_id] * n_img + [self.end_id]
        texts = [_hf_tokenize(self.tokenizer, text, self.max_text) for text in instructions]
        if self.prompt == "chat_text_image":
            return [t + image for t in texts]
        return [image + t for t in texts]

    def forward(self, images: torch.Tensor, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.processor is not None:
            inp = self.processor_inputs(images, list(instructions))
            return self.features(**inp), inp["attention_mask"].bool()
        pixel_values, grid = self.patchify(images)
        n_img = int(grid[0].prod()) // (self.merge ** 2)
        rows = self.byte_ids(list(instructions), n_img)
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long, device=images.device)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=images.device)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, device=images.device)
            mask[i, : len(r)] = 1
        return self.features(ids, mask, pixel_values, grid), mask.bool()

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                 image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [B,L,hidden] (float32) for processor outputs: input_ids [B,L] with the
        image placeholder tokens, attention_mask [B,L], pixel_values [patches, C*tp*p*p], grid [B,3]."""
        dtype = next(self.model.parameters()).dtype
        out = self.model.model(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values.to(dtype),
            image_grid_thw=image_grid_thw, mm_token_type_ids=(input_ids == self.image_token_id).int(), use_cache=False,
        )
        return out.last_hidden_state.float()


# Text ---------------------------------------------------------------------------------------------
class UMT5TextEncoder(nn.Module):
    """umT5 encoder (transformers UMT5EncoderModel), pad positions zeroed as Wan does.

    With the umT5 tokenizer attached (set_tokenizer) the instruction is cleaned as the official code
    does (tokenization.clean_instruction), tokenized with its special tokens, and, when
    `fixed_length` (conventions.text_context "fixed"), padded (or cut) to max_len = text_len like the
    official T5EncoderModel; otherwise padded to the batch's longest. ByteTokenizer rows are padded
    to the longest (the model pads the states afterwards).
    """

    def __init__(self, text_config: dict[str, Any], max_len: int = 64, tokenizer: Any = None,
                 fixed_length: bool = False):
        super().__init__()
        from transformers import UMT5Config, UMT5EncoderModel

        self.model = UMT5EncoderModel(UMT5Config(**text_config))
        self.tokenizer = tokenizer or ByteTokenizer(first_id=4, max_len=max_len)
        self.max_len = max_len
        self.fixed_length = fixed_length
        self.requires_grad_(False)

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Use a Hugging Face umT5 tokenizer."""
        tokenizer.padding_side = "right"
        self.tokenizer = tokenizer

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    def token_ids(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B,L] and attention mask [B,L] (long) of the instructions."""
        if not isinstance(self.tokenizer, ByteTokenizer):
            from .tokenization import clean_instruction

            enc = self.tokenizer([clean_instruction(t) for t in instructions],
                                 padding="max_length" if self.fixed_length else "longest", truncation=True,
                                 max_length=self.max_len, add_special_tokens=True, return_tensors="pt")
            return enc["input_ids"].long(), enc["attention_mask"].long()
        rows = [_hf_tokenize(self.tokenizer, t, self.max_len) for t in instructions]
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def forward(self, instructions: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids, mask = self.token_ids(list(instructions))
        ids, mask = ids.to(device), mask.to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return hidden * mask.unsqueeze(-1)


def build_encoders(cfg: MotusConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(autoencoder, vlm, text encoder) for a config; all frozen."""
    if cfg.vae_kind == "wan":
        vae: nn.Module = WanVAE(cfg.vae_config)
    elif cfg.vae_kind == "learned":
        from .video_ae import load_video_ae

        vae = load_video_ae(cfg.vae_path, cfg)
    else:
        vae = PatchAutoencoder(cfg.vae_spatial, cfg.vae_temporal, cfg.latent_channels)
    vae.requires_grad_(False)
    vlm = Qwen3VLEncoder(cfg.vlm_config, cfg.vlm_image_size, max_text=cfg.text_max_len,
                         prompt=cfg.conventions.vlm_prompt)
    text = UMT5TextEncoder(cfg.text_config, max_len=cfg.text_max_len,
                           fixed_length=cfg.conventions.text_context == "fixed")
    for name, got, want in (("vlm_hidden", vlm.hidden_size, cfg.vlm_hidden), ("text_dim", text.hidden_size, cfg.text_dim)):
        if got != want:
            raise ValueError(f"MotusConfig.{name}={want} but the encoder config gives width {got}")
    return vae, vlm, text


def tokenizer_status(cfg: MotusConfig, folder=None) -> str:
    """One line saying which tokenizers the VLM and the text encoder of `cfg` use (see tokenization)."""
    from .tokenization import tokenizer_status as status

    return status(cfg, folder)


TokenizerFn = Callable[[str], list[int]]
