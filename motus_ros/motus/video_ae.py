"""A small learned video autoencoder for the presets trained here (vae_kind "learned").

The `small` preset's PatchAutoencoder stand-in has no parameters and caps reconstruction of sim
frames far below what a world model needs; the paper preset's Wan 2.2 VAE is too heavy for a CPU.
LearnedVideoAE is diffusers' AutoencoderKL at a small configuration, trained on recorded frames
(`motus-ros train-vae`), with the latent geometry the model expects (encoders.py interface):

    encode(frames [B,3,F,H,W] in [-1,1]) -> normalised latents [B,C,T,H/s,W/s], T = 1 + (F-1)/temporal
    decode(latents [B,C,T,h,w]) -> frames [B,3,1+(T-1)*temporal,H,W] in [-1,1]

Layout (Wan's causal one): the first frame stands alone, later frames go in groups of `temporal`.
A group's frames are stacked on the channel axis before the encoder, so one 2D AutoencoderKL codes
the group jointly and spends its channels on what changes within the group (in the sim, the arms);
the first frame is coded as a group of `temporal` copies of itself, so it never sees a later frame
and the condition frame's latent is the same whether it is encoded alone or with its future.
The stack is pixel-unshuffled by `patch` before the AutoencoderKL (the space-to-channel input of
the Wan 2.2 VAE, patch 2, and of DC-AE): the convolutions then run at 1/patch of the resolution,
which is what makes training on a CPU affordable. Spatial factor = patch * 2^(blocks - 1).

Linear path (optional, on in what `motus-ros train-vae` makes): beside the AutoencoderKL, a linear
code of each spatial x spatial patch of the group (a strided convolution, and its transposed
convolution back) is added to the latent and to the reconstruction. Fitted to the principal
components of training patches before training, with the AutoencoderKL's last layers zeroed, the
autoencoder starts as the best linear code of its size (PCA: ~31 dB on sim frames at 16x
compression) and the network only learns what that code misses, which a CPU can afford in
minutes (measured on sim frames: the PCA start is 31.2 dB at step 0, while an AutoencoderKL from a
random start was at 20-21 dB after its first ~185 steps; models/sim_video_ae/README.md).

Latents are normalised per channel with statistics of the training frames, as WanVAE normalises
with Wan 2.2's: latent = (posterior mean - latents_mean) / latents_std.

Saved as a folder: config.json ({"format": AE_FORMAT, "autoencoder_kl": AutoencoderKL arguments,
"geometry": {...}, "linear_path": bool, "latents_mean": [...], "latents_std": [...], "training": the
run's record}) and model.safetensors (the weights: ae.* the AutoencoderKL, linear_* the linear
path). MotusConfig.vae_path names the folder; a relative path resolves against the package share
folder (motus_ros.paths.resolve), like shipped files.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

AE_FORMAT = "motus_ros_video_ae/1"
AE_CONFIG_FILE = "config.json"
AE_WEIGHTS_FILE = "model.safetensors"
# MotusConfig fields the autoencoder's geometry must match (its own name for each in config.json).
GEOMETRY_FIELDS = ("latent_channels", "vae_spatial", "vae_temporal", "video_height", "video_width")
STAT_KEYS = ("latents_mean", "latents_std")    # buffers stored in config.json, not in the weights file


class VideoAEError(ValueError):
    """A video autoencoder folder that is missing, unreadable or does not fit the model config."""


def autoencoder_kl_config(channels: tuple[int, ...] | list[int], latent_channels: int, temporal: int,
                          patch: int, layers_per_block: int = 1, norm_groups: int = 32,
                          mid_attention: bool = False) -> dict[str, Any]:
    """AutoencoderKL arguments for a group of `temporal` RGB frames pixel-unshuffled by `patch`.

    len(channels) blocks give 2^(len - 1) of down-sampling after the patch step. What
    `motus-ros train-vae` makes by default (models/sim_video_ae): patch 4 with channels
    (32, 64, 64), so 4 x 2^2 = 16x spatial, the Wan VAE's factor that the video expert's 2x2 patch
    and the presets' token counts are built around; 48 latent channels, the Wan 2.2 VAE's count,
    so a video token keeps its width (48 x 2 x 2); widths of 32-64 because the linear path carries
    most of the signal and the network only corrects it: 1.1 M parameters (4.4 MB), a 0.13 s
    training step of 8 crops of 96x80 on one CPU thread, against 4 M parameters and 0.36 s for
    (64, 128, 128).
    """
    channels = [int(c) for c in channels]
    if not channels or any(c % norm_groups for c in channels):
        raise VideoAEError(f"channels={channels}: expected at least one block, each a multiple of "
                           f"norm_groups={norm_groups} (GroupNorm)")
    io = 3 * temporal * patch * patch
    return {"in_channels": io, "out_channels": io, "down_block_types": ["DownEncoderBlock2D"] * len(channels),
            "up_block_types": ["UpDecoderBlock2D"] * len(channels), "block_out_channels": channels,
            "layers_per_block": int(layers_per_block), "act_fn": "silu", "latent_channels": int(latent_channels),
            "norm_num_groups": int(norm_groups), "mid_block_add_attention": bool(mid_attention)}


class LearnedVideoAE(nn.Module):
    """AutoencoderKL over pixel-unshuffled groups of frames; latents normalised (see module doc)."""

    def __init__(self, kl_config: dict[str, Any], temporal: int, patch: int,
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None,
                 linear_path: bool = False):
        super().__init__()
        from diffusers import AutoencoderKL

        self.ae = AutoencoderKL(**kl_config)
        self.temporal, self.patch = int(temporal), int(patch)
        blocks = len(kl_config["block_out_channels"])
        self.spatial = self.patch * 2 ** (blocks - 1)
        c = int(kl_config["latent_channels"])
        expect_io = 3 * self.temporal * self.patch ** 2
        if kl_config["in_channels"] != expect_io or kl_config["out_channels"] != expect_io:
            raise VideoAEError(f"autoencoder_kl in/out_channels {kl_config['in_channels']}/"
                               f"{kl_config['out_channels']}, expected {expect_io} (3 colours x temporal "
                               f"{temporal} x patch {patch}^2)")
        mean = [float(v) for v in (latents_mean if latents_mean is not None else [0.0] * c)]
        std = [float(v) for v in (latents_std if latents_std is not None else [1.0] * c)]
        if len(mean) != c or len(std) != c:
            raise VideoAEError(f"latents_mean / latents_std: {len(mean)} / {len(std)} values, expected {c} "
                               "(one per latent channel)")
        if min(std) <= 0:
            raise VideoAEError(f"latents_std: smallest value {min(std)}, expected every value > 0")
        self.linear_path = bool(linear_path)
        if self.linear_path:
            # One linear code per spatial x spatial patch of the stacked group, beside the AutoencoderKL
            # (fit_linear_path: principal components of training patches): see the module docstring.
            io = 3 * self.temporal
            self.linear_encoder = nn.Conv2d(io, c, kernel_size=self.spatial, stride=self.spatial)
            self.linear_decoder = nn.ConvTranspose2d(c, io, kernel_size=self.spatial, stride=self.spatial)
        # Persistent: they travel inside a Motus checkpoint and key the latent cache with the weights.
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1, 1))

    @property
    def latent_channels(self) -> int:
        return int(self.latents_mean.shape[1])

    def geometry(self, height: int, width: int) -> dict[str, int]:
        """The MotusConfig values this autoencoder fits at a frame size of height x width pixels."""
        return {"latent_channels": self.latent_channels, "vae_spatial": self.spatial, "vae_temporal": self.temporal,
                "video_height": int(height), "video_width": int(width)}

    # Groups of frames <-> the 2D autoencoder's input -------------------------------------------------
    def groups(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,3,F,H,W] -> stacked groups [B*T, temporal*3, H, W], the first frame repeated."""
        b, c, f, h, w = frames.shape
        if f < 1 or (f - 1) % self.temporal:
            raise VideoAEError(f"LearnedVideoAE.encode: {f} frames, expected 1 + a multiple of "
                               f"vae_temporal={self.temporal}")
        if h % self.spatial or w % self.spatial:
            raise VideoAEError(f"LearnedVideoAE.encode: frames {h}x{w}, expected multiples of "
                               f"vae_spatial={self.spatial}")
        first = frames[:, :, :1].expand(b, c, self.temporal, h, w)              # [B,3,temporal,H,W]
        x = torch.cat([first, frames[:, :, 1:]], dim=2)                         # [B,3,T*temporal,H,W]
        x = x.unflatten(2, (-1, self.temporal))                                 # [B,3,T,temporal,H,W]
        x = x.permute(0, 2, 3, 1, 4, 5)                                         # [B,T,temporal,3,H,W]
        return x.flatten(2, 3).flatten(0, 1)                                    # [B*T,temporal*3,H,W]

    def ungroup(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """Decoded groups [B*T, temporal*3, H, W] -> frames [B,3,1+(T-1)*temporal,H,W]: the first
        latent's `temporal` outputs all stand for the first frame and are averaged."""
        x = x.unflatten(0, (b, -1)).unflatten(2, (self.temporal, 3))            # [B,T,temporal,3,H,W]
        first = x[:, :1].mean(2)                                                # [B,1,3,H,W]
        rest = x[:, 1:].flatten(1, 2)                                           # [B,(T-1)*temporal,3,H,W]
        return torch.cat([first, rest], dim=1).transpose(1, 2)                  # [B,3,F,H,W]

    # Raw (unnormalised) latents: what training uses ---------------------------------------------------
    def encode_groups(self, groups: torch.Tensor) -> Any:
        """Stacked groups [N, temporal*3, H, W] -> the AutoencoderKL posterior (diagonal Gaussian)."""
        x = F.pixel_unshuffle(groups, self.patch)                               # [N,temporal*3*p*p,H/p,W/p]
        dist = self.ae.encode(x).latent_dist
        if not self.linear_path:
            return dist
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        mean = dist.mean + self.linear_encoder(groups)                         # [N,C,h,w]
        return DiagonalGaussianDistribution(torch.cat([mean, dist.logvar], dim=1))

    def decode_groups(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents [N,C,h,w] -> stacked groups [N, temporal*3, H, W] (not clamped)."""
        out = F.pixel_shuffle(self.ae.decode(z).sample, self.patch)             # [N,temporal*3,H,W]
        return out + self.linear_decoder(z) if self.linear_path else out

    @torch.no_grad()
    def fit_linear_path(self, groups: torch.Tensor) -> float:
        """Start from the best linear code: the linear path becomes the principal components of the
        spatial x spatial patches of `groups` [N, temporal*3, H, W] (centred by colour channel), and
        the AutoencoderKL's last encoder and decoder layers are zeroed, so the whole autoencoder
        starts as that PCA and training only has to learn what a linear code misses. Returns the
        share of the patch variance the kept components explain."""
        if not self.linear_path:
            raise VideoAEError("fit_linear_path: this autoencoder has no linear path (linear_path=False)")
        s, c, io = self.spatial, self.latent_channels, 3 * self.temporal
        colour_mean = groups.double().mean((0, 2, 3))                                   # [io]
        patches = F.unfold(groups.double() - colour_mean.view(1, io, 1, 1), s, stride=s)  # [N,io*s*s,L]
        patches = patches.transpose(1, 2).flatten(0, 1)                                 # [N*L,io*s*s]
        cov = patches.T @ patches / patches.shape[0]
        values, vectors = torch.linalg.eigh(cov)                                        # ascending
        basis = vectors[:, -c:].flip(1)                                                 # [io*s*s,C]
        weight = basis.T.reshape(c, io, s, s)
        self.linear_encoder.weight.copy_(weight)
        self.linear_encoder.bias.copy_(-(basis.T @ colour_mean.repeat_interleave(s * s)))
        self.linear_decoder.weight.copy_(weight)                                        # [C,io,s,s]: transpose
        self.linear_decoder.bias.copy_(colour_mean)
        for conv in (self.ae.quant_conv, self.ae.decoder.conv_out):
            conv.weight.zero_()
            conv.bias.zero_()
        return float(values[-c:].sum() / values.sum())

    # The model's interface -----------------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,3,F,H,W] in [-1,1] -> normalised latents [B,C,T,H/s,W/s] (posterior mean)."""
        b = frames.shape[0]
        z = self.encode_groups(self.groups(frames)).mode()                      # [B*T,C,h,w]
        z = z.unflatten(0, (b, -1)).transpose(1, 2)                             # [B,C,T,h,w]
        return (z - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B,C,T,h,w] -> frames [B,3,1+(T-1)*temporal,H,W] in [-1,1]."""
        b = latents.shape[0]
        z = latents * self.latents_std + self.latents_mean
        z = z.transpose(1, 2).flatten(0, 1)                                     # [B*T,C,h,w]
        return self.ungroup(self.decode_groups(z), b).clamp(-1, 1)


# Files -------------------------------------------------------------------------------------------------
def resolve_vae_path(path: str | os.PathLike) -> Path:
    """MotusConfig.vae_path -> a folder: absolute paths stay, relative ones are taken against the
    package share folder (motus_ros.paths.resolve), so a checkpoint's config works from anywhere."""
    from motus_ros.paths import resolve

    return resolve(Path(path).expanduser())


def read_ae_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a video autoencoder folder, format and keys checked."""
    folder = Path(folder)
    path = folder / AE_CONFIG_FILE
    if not path.is_file():
        hint = "" if folder.is_absolute() else " (relative paths resolve against the package share folder)"
        raise VideoAEError(f"vae_path {folder}: no {AE_CONFIG_FILE}{hint}; train one with `motus-ros train-vae`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VideoAEError(f"{path}: not valid JSON ({exc})") from exc
    if data.get("format") != AE_FORMAT:
        raise VideoAEError(f"{path}: format '{data.get('format')}', expected '{AE_FORMAT}'")
    missing = [k for k in ("autoencoder_kl", "geometry", "latents_mean", "latents_std") if k not in data]
    if missing:
        raise VideoAEError(f"{path}: lacks {missing}")
    return data


def build_from_config(data: dict[str, Any]) -> LearnedVideoAE:
    """An (untrained) LearnedVideoAE with the architecture and statistics of a config.json dict."""
    g = data["geometry"]
    return LearnedVideoAE(data["autoencoder_kl"], temporal=g["vae_temporal"], patch=g["patch"],
                          latents_mean=data["latents_mean"], latents_std=data["latents_std"],
                          linear_path=bool(data.get("linear_path", False)))


def check_geometry(data: dict[str, Any], config, where: str) -> None:
    """VideoAEError naming the first MotusConfig field whose value the autoencoder does not fit."""
    geometry = data["geometry"]
    for name in GEOMETRY_FIELDS:
        want, got = getattr(config, name), geometry.get(name)
        if got != want:
            raise VideoAEError(f"{where}: the autoencoder has {name}={got} but the model config has "
                               f"{name}={want}; use an autoencoder trained for this geometry (motus-ros "
                               f"train-vae) or set {name}={got}")


def load_video_ae(path: str | os.PathLike, config=None) -> LearnedVideoAE:
    """The autoencoder of folder `path` (MotusConfig.vae_path form), frozen, in eval mode; its
    geometry checked against MotusConfig `config` when given. Built on the meta device (inside
    `torch.device("meta")`), it gets the architecture only."""
    folder = resolve_vae_path(path)
    data = read_ae_config(folder)
    if config is not None:
        check_geometry(data, config, f"vae_path {path}")
    ae = build_from_config(data)
    if not next(ae.parameters()).is_meta:
        weights = folder / AE_WEIGHTS_FILE
        if not weights.is_file():
            raise VideoAEError(f"vae_path {path}: no {AE_WEIGHTS_FILE} in {folder}")
        from safetensors.torch import load_file

        state = load_file(str(weights))
        missing, unexpected = ae.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in STAT_KEYS]
        if missing or unexpected:
            raise VideoAEError(f"{weights}: does not fit its config.json ({len(missing)} missing keys, e.g. "
                               f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})")
    ae.requires_grad_(False)
    return ae.eval()


def save_video_ae(ae: LearnedVideoAE, folder: str | os.PathLike, height: int, width: int,
                  training: dict[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors into `folder` (a temp folder renamed into place, so a
    reader never sees half a checkpoint). Files other than these two already there are kept."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kl = {k: (list(v) if isinstance(v, tuple) else v) for k, v in ae.ae.config.items() if not k.startswith("_")}
    data = {"format": AE_FORMAT, "autoencoder_kl": kl,
            "geometry": {**ae.geometry(height, width), "patch": ae.patch}, "linear_path": ae.linear_path,
            "latents_mean": [float(v) for v in ae.latents_mean.flatten()],    # float32 values, exact in JSON
            "latents_std": [float(v) for v in ae.latents_std.flatten()],
            "training": training or {}}
    state = {k: v.detach().contiguous().cpu() for k, v in ae.state_dict().items() if k not in STAT_KEYS}
    save_file(state, str(tmp / AE_WEIGHTS_FILE), metadata={"format": AE_FORMAT})
    (tmp / AE_CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (AE_WEIGHTS_FILE, AE_CONFIG_FILE):       # weights first: a config never names absent weights
        os.replace(tmp / name, folder / name)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


__all__ = ["AE_FORMAT", "GEOMETRY_FIELDS", "LearnedVideoAE", "VideoAEError", "autoencoder_kl_config",
           "build_from_config", "check_geometry", "load_video_ae", "read_ae_config", "resolve_vae_path",
           "save_video_ae"]
