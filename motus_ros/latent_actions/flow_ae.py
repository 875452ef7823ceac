"""The flow autoencoder: a deep-compression autoencoder (diffusers AutoencoderDC; Chen et al., "Deep
Compression Autoencoder for Efficient High-Resolution Diffusion Models", 2024) that compresses a
flow image (flow.flow_to_rgb) to a few latent tokens, as Motus does before its latent-action encoder
(arXiv 2512.13030, section 4: 4 tokens x 512 channels).

The token grid is the AutoencoderDC latent [C, h, w] read as h*w tokens of C channels, h = height /
2^(blocks-1), w likewise; FlowAEConfig.latent_tokens and latent_channels state that shape and the
config refuses an architecture that does not produce it. Presets:
  cpu    96x80 flow image (the 384x320 tile / 4), 5 ResBlock stages of 16..128 channels: 6x5 = 30 tokens
         x 32 channels, 2.5 M parameters, about 0.7 s per step of 16 images on one CPU thread
  paper  the paper's latent shape, 4 tokens x 512 channels, from a 64x64 flow image through the 6
         stages of DC-AE f32 (128..1024 channels, EfficientViT blocks in the last three); the
         paper does not give its flow image size, so 64x64 (2x2 tokens) is this project's choice
  tiny   tests only
The decoder's output is read back as flow with flow.rgb_to_flow, so reconstruction is reported as
endpoint error (EPE) in pixels of the flow image (FlowSettings.height x width).

Latents are handed on normalised per channel with the mean and standard deviation measured over the
training flow images (set at the end of training, stored in config.json like motus/video_ae.py's).
Folder: config.json (format, config, latent statistics, "training" record) + model.safetensors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import _folders
from ._folders import LatentActionError
from .flow import FlowSettings, endpoint_error, flow_to_rgb, rgb_to_flow

AE_FORMAT = "motus_ros flow autoencoder v1"
MOVING_PX = 1.0          # pixels: flow at least this long counts as motion in the "moving" EPE
BLOCK_TYPES = ("ResBlock", "EfficientViTBlock")
QKV_SCALES = (5,)        # multi-scale kernel of DC-AE's EfficientViT blocks (diffusers' default)


@dataclass(frozen=True)
class FlowAEConfig:
    """What the flow autoencoder reads (the flow and its colour code) and its architecture."""

    flow: FlowSettings = field(default_factory=FlowSettings)
    max_flow: float = 8.0                        # pixels of the flow image: the colour wheel saturates here
    latent_tokens: int = 30                      # h*w of the latent grid
    latent_channels: int = 32                    # channels per token
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    layers_per_block: tuple[int, ...] = ()       # per stage, encoder and decoder; () = 1 per stage
    block_types: tuple[str, ...] = ()            # per stage; () = "ResBlock" everywhere

    def __post_init__(self):
        n = len(self.block_out_channels)
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "layers_per_block", tuple(int(c) for c in self.layers_per_block) or (1,) * n)
        object.__setattr__(self, "block_types", tuple(str(c) for c in self.block_types) or ("ResBlock",) * n)
        if isinstance(self.flow, dict):
            object.__setattr__(self, "flow", FlowSettings.from_dict(self.flow))
        check_ae_config(self)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the latent grid."""
        return self.flow.height // self.spatial_factor, self.flow.width // self.spatial_factor

    @property
    def shortcuts(self) -> bool:
        """DC-AE's channel-averaging shortcuts need the last stage's width to be a multiple of the latent's."""
        return self.block_out_channels[-1] % self.latent_channels == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "FlowAEConfig":
        return _folders.config_from_dict(cls, data, "flow autoencoder config")

    def replace(self, **changes) -> "FlowAEConfig":
        return replace(self, **changes)


def check_ae_config(cfg: FlowAEConfig) -> None:
    """LatentActionError naming the field, the value seen and the value expected."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise LatentActionError(msg)
    ch, layers, types = cfg.block_out_channels, cfg.layers_per_block, cfg.block_types
    need(len(ch) >= 1, "block_out_channels: got (), expected at least one stage")
    need(len(layers) == len(ch), f"layers_per_block: got {len(layers)} values {layers}, expected {len(ch)} "
                                 "(one per entry of block_out_channels)")
    need(len(types) == len(ch), f"block_types: got {len(types)} values, expected {len(ch)} (one per stage)")
    need(all(t in BLOCK_TYPES for t in types), f"block_types: got {types}, expected each one of {BLOCK_TYPES}")
    need(all(n >= 1 for n in layers), f"layers_per_block: got {layers}, expected every value >= 1")
    need(all(c >= 4 and c % 4 == 0 for c in ch), f"block_out_channels: got {ch}, expected multiples of 4 "
                                                 "(pixel-unshuffle by 2 between stages)")
    for a, b in zip(ch, ch[1:]):
        need((4 * a) % b == 0 and (4 * b) % a == 0,
             f"block_out_channels: got {ch}; neighbours {a} -> {b} expected to divide four times each other "
             "(DC-AE's space-to-channel shortcuts)")
    need(cfg.latent_channels >= 1, f"latent_channels: got {cfg.latent_channels}, expected >= 1")
    need(cfg.max_flow > 0 and math.isfinite(cfg.max_flow), f"max_flow: got {cfg.max_flow}, expected > 0 pixels")
    f = cfg.spatial_factor
    h, w = cfg.flow.height, cfg.flow.width
    need(h % f == 0 and w % f == 0,
         f"flow.height x flow.width: got {h}x{w}, expected multiples of the spatial factor {f} "
         f"(2^(stages-1), {len(ch)} stages in block_out_channels)")
    need(cfg.latent_tokens == (h // f) * (w // f),
         f"latent_tokens: got {cfg.latent_tokens}, expected {(h // f) * (w // f)} = ({h}/{f}) x ({w}/{f}) for a "
         f"{h}x{w} flow image and {len(ch)} stages; change latent_tokens, the flow size or the number of stages")


PRESETS: dict[str, FlowAEConfig] = {
    "cpu": FlowAEConfig(),
    "paper": FlowAEConfig(flow=FlowSettings(height=64, width=64), max_flow=6.0, latent_tokens=4,
                          latent_channels=512, block_out_channels=(128, 256, 512, 512, 1024, 1024),
                          layers_per_block=(2, 2, 2, 3, 3, 3),
                          block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3),
    "tiny": FlowAEConfig(flow=FlowSettings(estimate_height=96, estimate_width=80, height=48, width=40),
                         max_flow=4.0, latent_tokens=30, latent_channels=8, block_out_channels=(8, 16, 16, 32)),
}


def preset(name: str) -> FlowAEConfig:
    """The named configuration of PRESETS; LatentActionError listing them for another name."""
    if name not in PRESETS:
        raise LatentActionError(f"preset: got {name!r}, expected one of: {', '.join(PRESETS)}")
    return PRESETS[name]


class FlowAE(nn.Module):
    """AutoencoderDC on flow images in [-1, 1], with per-channel latent statistics for the tokens."""

    def __init__(self, config: FlowAEConfig):
        from diffusers import AutoencoderDC

        super().__init__()
        self.config = config
        n = len(config.block_out_channels)
        scales = tuple(QKV_SCALES if t == "EfficientViTBlock" else () for t in config.block_types)
        self.dc = AutoencoderDC(
            in_channels=3, latent_channels=config.latent_channels,
            encoder_block_types=config.block_types, decoder_block_types=config.block_types,
            encoder_block_out_channels=config.block_out_channels, decoder_block_out_channels=config.block_out_channels,
            encoder_layers_per_block=config.layers_per_block, decoder_layers_per_block=config.layers_per_block,
            encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales,
            encoder_out_shortcut=config.shortcuts, decoder_in_shortcut=config.shortcuts)
        assert self.dc.spatial_compression_ratio == config.spatial_factor == 2 ** (n - 1)
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latents_std", torch.ones(config.latent_channels))

    # Images ---------------------------------------------------------------------------------------
    def images(self, flow: np.ndarray) -> torch.Tensor:
        """(B, H, W, 2) flow in pixels -> [B, 3, H, W] float32 colour-wheel image in [-1, 1]."""
        self._check_flow(flow)
        rgb = flow_to_rgb(flow, self.config.max_flow, as_float=True)               # (B,H,W,3) in [0,1]
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))) * 2.0 - 1.0

    @staticmethod
    def rgb_u8_to_images(rgb: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 colour-wheel images -> [B, 3, H, W] in [-1, 1]."""
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).float() / 127.5 - 1.0

    def images_to_flow(self, images: torch.Tensor) -> np.ndarray:
        """[B, 3, H, W] in [-1, 1] (clamped) -> (B, H, W, 2) float32 flow in pixels."""
        rgb = ((images.detach().float().clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()
        return rgb_to_flow(rgb, self.config.max_flow)

    def _check_flow(self, flow: np.ndarray) -> None:
        s = self.config.flow
        if flow.ndim != 4 or flow.shape[1:] != (s.height, s.width, 2):
            raise LatentActionError(f"flow: shape {flow.shape}, expected (B, {s.height}, {s.width}, 2) "
                                    "(this autoencoder's flow.height x flow.width)")

    # Latents --------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C, h, w] raw latents."""
        return self.dc.encode(images).latent

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] raw latents -> [B, 3, H, W] images (unclamped)."""
        return self.dc.decode(latents).sample

    def to_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] raw -> [B, h*w, C] normalised per channel (the latent-action encoder's input)."""
        z = (latents - self.latents_mean.view(1, -1, 1, 1)) / self.latents_std.view(1, -1, 1, 1)
        return z.flatten(2).transpose(1, 2)                                          # [B,h*w,C]

    def from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of to_tokens: [B, h*w, C] -> [B, C, h, w] raw latents."""
        h, w = self.config.grid
        z = tokens.transpose(1, 2).unflatten(2, (h, w))                              # [B,C,h,w]
        return z * self.latents_std.view(1, -1, 1, 1) + self.latents_mean.view(1, -1, 1, 1)

    @torch.no_grad()
    def encode_flow(self, flow: np.ndarray, batch: int = 32) -> torch.Tensor:
        """(N, H, W, 2) flow -> [N, tokens, channels] normalised tokens."""
        out = [self.to_tokens(self.encode(self.images(flow[i: i + batch]))) for i in range(0, len(flow), batch)]
        return torch.cat(out) if out else torch.zeros(0, self.config.latent_tokens, self.config.latent_channels)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor, batch: int = 32) -> np.ndarray:
        """[N, tokens, channels] normalised tokens -> (N, H, W, 2) float32 flow in pixels."""
        s = self.config.flow
        out = [self.images_to_flow(self.decode(self.from_tokens(tokens[i: i + batch])))
               for i in range(0, len(tokens), batch)]
        return np.concatenate(out) if out else np.zeros((0, s.height, s.width, 2), np.float32)


def reconstruction_loss(ae: FlowAE, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 + MSE between the flow images and their reconstruction (both in [-1, 1])."""
    recon = ae.decode(ae.encode(images))
    l1 = torch.nn.functional.l1_loss(recon, images)
    mse = torch.nn.functional.mse_loss(recon, images)
    return {"loss": l1 + mse, "l1": l1, "mse": mse}


@torch.no_grad()
def latent_statistics(ae: FlowAE, images_u8: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the raw latents of (N, H, W, 3) uint8 flow images."""
    total = torch.zeros(ae.config.latent_channels, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for i in range(0, len(images_u8), batch):
        z = ae.encode(ae.rgb_u8_to_images(images_u8[i: i + batch])).double()        # [b,C,h,w]
        total += z.sum((0, 2, 3))
        total_sq += (z * z).sum((0, 2, 3))
        count += z.shape[0] * z.shape[2] * z.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def flow_report(decoded: np.ndarray, flow: np.ndarray, max_flow: float) -> dict:
    """EPE (pixels) of decoded flow against the input flow, over all pixels and over moving ones, with
    two references measured on the same flow: the colour code alone (flow -> RGB -> flow, its
    saturation at max_flow: the best an autoencoder can do) and zero flow (predicting stillness)."""
    moving = np.hypot(flow[..., 0], flow[..., 1]) >= MOVING_PX
    code = rgb_to_flow(flow_to_rgb(flow, max_flow, as_float=True), max_flow)
    zero = np.zeros_like(flow)
    r = lambda x: round(x, 4) if math.isfinite(x) else None          # noqa: E731 - JSON has no nan
    return {"pairs": int(len(flow)), "epe_px": r(endpoint_error(decoded, flow)),
            "epe_moving_px": r(endpoint_error(decoded, flow, moving)),
            "moving_fraction": round(float(moving.mean()), 4) if moving.size else 0.0,
            "colour_code_epe_px": r(endpoint_error(code, flow)),
            "colour_code_epe_moving_px": r(endpoint_error(code, flow, moving)),
            "zero_flow_epe_px": r(endpoint_error(zero, flow)),
            "zero_flow_epe_moving_px": r(endpoint_error(zero, flow, moving)),
            "saturated_fraction": round(float((np.hypot(flow[..., 0], flow[..., 1]) > max_flow).mean()), 5)
            if flow.size else 0.0}


@torch.no_grad()
def evaluate_ae(ae: FlowAE, flow: np.ndarray, batch: int = 32) -> dict:
    """flow_report of encode -> decode of (N, H, W, 2) flow."""
    was_training = ae.training
    ae.eval()
    decoded = [ae.images_to_flow(ae.decode(ae.encode(ae.images(flow[i: i + batch]))))
               for i in range(0, len(flow), batch)]
    ae.train(was_training)
    decoded = np.concatenate(decoded) if decoded else np.zeros_like(flow)
    return flow_report(decoded, flow, ae.config.max_flow)


# Folders ------------------------------------------------------------------------------------------
def save_flow_ae(ae: FlowAE, folder: str | Path, training: dict | None = None) -> Path:
    """config.json (config, latent statistics, training record) + model.safetensors, atomically."""
    state = {k: v for k, v in ae.state_dict().items() if k not in ("latents_mean", "latents_std")}
    config = {"config": ae.config.to_dict(),
              "latent_shape": {"tokens": ae.config.latent_tokens, "channels": ae.config.latent_channels,
                               "grid": list(ae.config.grid)},
              "latents_mean": [float(v) for v in ae.latents_mean],     # float32 values, exact in JSON
              "latents_std": [float(v) for v in ae.latents_std],
              "training": training or {}}
    return _folders.write_folder(folder, AE_FORMAT, config, state)


def load_flow_ae(folder: str | Path, what: str = "flow autoencoder") -> FlowAE:
    """The autoencoder of a folder written by save_flow_ae, frozen, in eval mode."""
    data = _folders.read_config(folder, AE_FORMAT, what)
    ae = FlowAE(FlowAEConfig.from_dict(data["config"]))
    _folders.load_into(ae, _folders.read_weights(folder) | {
        "latents_mean": torch.tensor(data["latents_mean"], dtype=torch.float32),
        "latents_std": torch.tensor(data["latents_std"], dtype=torch.float32)}, f"{what} {folder}")
    return ae.requires_grad_(False).eval()


def read_ae_record(folder: str | Path) -> dict:
    """The config.json of a flow autoencoder folder (format checked)."""
    return _folders.read_config(folder, AE_FORMAT, "flow autoencoder")


__all__ = ["AE_FORMAT", "FlowAE", "FlowAEConfig", "MOVING_PX", "PRESETS", "check_ae_config", "evaluate_ae",
           "flow_report", "latent_statistics", "load_flow_ae", "preset", "read_ae_record", "reconstruction_loss",
           "save_flow_ae"]
