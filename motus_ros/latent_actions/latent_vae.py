"""LatentActionVAE: the flow autoencoder's tokens of one frame pair <-> a latent action of `latent_dim`
numbers (14 by default: the bimanual arm's action size), as in Motus (arXiv 2512.13030, section 4).

Encoder: each token projected to token_dim, the tokens flattened, an MLP to the mean and log-variance
of a diagonal Gaussian. Decoder: the mirror image back to the tokens. The latent action of a pair is
the posterior mean.

Loss (latent_vae_loss) = reconstruction + beta x KL + align_weight x alignment:
  reconstruction  MSE between the decoded and the input tokens, both normalised per channel
                  (FlowAE.to_tokens). Measured in the flow autoencoder's latent space, not through
                  its frozen decoder: the decoder is frozen, so reconstructing its input is what
                  reconstructs the flow it would decode, and a step then costs two small MLPs
                  instead of a convolutional decoder's forward and backward at image size (on CPU
                  the decoder would be nearly all of the step). The flow itself is still checked:
                  training reports the EPE of flow decoded from reconstructed tokens.
  KL              KL(q(z|x) || N(0, I)) summed over the latent dimensions, mean over the batch.
  alignment       MSE between the posterior mean and the real action of the pair (normalised to
                  [0, 1], see pairs.pair_actions), over the labelled samples of the batch only (a
                  batch without one adds exactly zero). Which pairs are labelled is fixed per run
                  (pairs.labeled_mask: labeled_fraction of the training pairs, 0.1 by default as in
                  the paper's 10 %).

Folder (save_latent_vae): config.json (format, config, the flow autoencoder it was trained on by
fingerprint, the action target, the training record) + model.safetensors + latent_action_stats.json
(per-dimension min/max/mean/std of the latent actions of the training pairs, in the layout of
the "action" entry of stats/<robot>.json; see the package docstring).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import _folders
from ._folders import LatentActionError

VAE_FORMAT = "motus_ros latent action vae v1"
STATS_FILE = "latent_action_stats.json"
LOGVAR_RANGE = (-10.0, 10.0)     # keeps exp(logvar) finite in early steps


@dataclass(frozen=True)
class LatentVAEConfig:
    """Shape of the latent-action VAE (the token shape is the flow autoencoder's)."""

    latent_tokens: int                 # the flow autoencoder's tokens per pair
    latent_channels: int               # and channels per token
    latent_dim: int = 14               # the latent action's size (= layout.DOF for alignment)
    token_dim: int = 32                # each token is projected to this before flattening
    hidden: int = 256                  # MLP width
    layers: int = 2                    # hidden layers of the encoder MLP and of the decoder MLP

    def __post_init__(self):
        for name in ("latent_tokens", "latent_channels", "latent_dim", "token_dim", "hidden", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LatentActionError(f"{name}: got {value!r}, expected an integer >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LatentVAEConfig":
        return _folders.config_from_dict(cls, data, "latent action VAE config")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class LatentActionVAE(nn.Module):
    """Tokens [B, T, C] <-> latent actions [B, latent_dim]."""

    def __init__(self, config: LatentVAEConfig):
        super().__init__()
        self.config = config
        c = config
        flat = c.latent_tokens * c.token_dim
        self.token_in = nn.Linear(c.latent_channels, c.token_dim)
        self.encoder = _mlp([flat] + [c.hidden] * c.layers + [2 * c.latent_dim])
        self.decoder = _mlp([c.latent_dim] + [c.hidden] * c.layers + [flat])
        self.token_out = nn.Sequential(nn.SiLU(), nn.Linear(c.token_dim, c.latent_channels))

    def _check(self, tokens: torch.Tensor) -> None:
        want = (self.config.latent_tokens, self.config.latent_channels)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != want:
            raise LatentActionError(f"tokens: shape {tuple(tokens.shape)}, expected (B, {want[0]}, {want[1]}) "
                                    "(the flow autoencoder's latent_tokens x latent_channels)")

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, C] normalised tokens -> (mean, logvar), each [B, latent_dim]."""
        self._check(tokens)
        h = self.token_in(tokens).flatten(1)                                        # [B,T*token_dim]
        mean, logvar = self.encoder(h).chunk(2, dim=-1)                             # [B,D] each
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, latent_dim] -> [B, T, C] normalised tokens."""
        h = self.decoder(z).unflatten(1, (self.config.latent_tokens, self.config.token_dim))   # [B,T,token_dim]
        return self.token_out(h)

    def forward(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Posterior, a reparameterised sample (the mean in eval mode) and its reconstruction."""
        mean, logvar = self.encode(tokens)
        if self.training:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps
        else:
            z = mean
        return {"mean": mean, "logvar": logvar, "z": z, "recon": self.decode(z)}

    @torch.no_grad()
    def latent_actions(self, tokens: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """[N, T, C] -> [N, latent_dim] posterior means (the latent actions)."""
        out = [self.encode(tokens[i: i + batch])[0] for i in range(0, len(tokens), batch)]
        return torch.cat(out) if out else torch.zeros(0, self.config.latent_dim)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last axis, mean over the batch."""
    return (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()


def alignment_loss(mean: torch.Tensor, actions: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    """MSE between latent means and real actions [B, D] over the rows where `labeled` [B] is true;
    exactly zero (still differentiable) when no row is."""
    if mean.shape != actions.shape:
        raise LatentActionError(f"actions: shape {tuple(actions.shape)}, expected the latent means' "
                                f"{tuple(mean.shape)} (latent_dim = the action size when aligning)")
    mask = labeled.to(mean.dtype)
    actions = torch.where(labeled[:, None], actions, torch.zeros_like(actions))   # unlabeled rows may be nan
    per_row = (mean - actions).pow(2).mean(-1)                                      # [B]
    return (per_row * mask).sum() / mask.sum().clamp_min(1.0)


def latent_vae_loss(vae: LatentActionVAE, tokens: torch.Tensor, actions: torch.Tensor, labeled: torch.Tensor,
                    beta: float, align_weight: float, generator: torch.Generator | None = None
                    ) -> dict[str, torch.Tensor]:
    """The training loss (module docstring) and its parts."""
    out = vae(tokens, generator)
    recon = torch.nn.functional.mse_loss(out["recon"], tokens)
    kl = kl_divergence(out["mean"], out["logvar"])
    align = alignment_loss(out["mean"], actions, labeled) if align_weight > 0 else out["mean"].sum() * 0.0
    return {"loss": recon + beta * kl + align_weight * align, "recon": recon, "kl": kl, "align": align,
            "labeled": labeled.sum().to(torch.float32)}


# Statistics ---------------------------------------------------------------------------------------
def action_statistics(latents) -> dict:
    """{"min","max","mean","std"} lists per dimension of (N, D) latent actions (the stats.json layout)."""
    import numpy as np

    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise LatentActionError(f"latent actions: shape {x.shape}, expected (N, D) with N >= 1")
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist()}


def stats_document(action: dict, source: str, extra: dict | None = None) -> dict:
    """A latent_action_stats.json document: {"min","max","mean","std"} at the top level (the layout
    of the "action" entry of stats/<robot>.json, read by training/dataset.py's load_latent_stats),
    names, latent_dim, source."""
    dim = len(action["min"])
    return {**action, "names": [f"latent_{i}" for i in range(dim)], "latent_dim": dim, "source": source,
            **(extra or {})}


def load_latent_action_stats(path: str | Path):
    """The min/max of a latent_action_stats.json as a policy.transforms.MinMax (normalise with
    transforms.normalize, exactly as real actions)."""
    import json

    import numpy as np

    from motus_ros.policy.transforms import MinMax

    p = Path(path)
    if not p.is_file():
        raise LatentActionError(f"latent action statistics '{p}' not found")
    try:
        data = json.loads(p.read_text())
        return MinMax(np.asarray(data["min"], np.float64), np.asarray(data["max"], np.float64))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise LatentActionError(f"{p}: expected {{\"min\": [D numbers], \"max\": [D numbers]}} ({exc})") from exc


# Folders ------------------------------------------------------------------------------------------
def save_latent_vae(vae: LatentActionVAE, folder: str | Path, ae_info: dict, action_target: dict,
                    stats: dict, training: dict | None = None) -> Path:
    """config.json + model.safetensors + latent_action_stats.json, atomically."""
    config = {"config": vae.config.to_dict(), "flow_autoencoder": ae_info, "action_target": action_target,
              "training": training or {}}
    return _folders.write_folder(folder, VAE_FORMAT, config, vae.state_dict(), {STATS_FILE: stats})


def load_latent_vae(folder: str | Path, what: str = "latent action model") -> tuple[LatentActionVAE, dict]:
    """(the VAE of a folder written by save_latent_vae, frozen and in eval mode; its config.json)."""
    data = _folders.read_config(folder, VAE_FORMAT, what)
    vae = LatentActionVAE(LatentVAEConfig.from_dict(data["config"]))
    _folders.load_into(vae, _folders.read_weights(folder), f"{what} {folder}")
    return vae.requires_grad_(False).eval(), data


__all__ = ["LatentActionVAE", "LatentVAEConfig", "STATS_FILE", "VAE_FORMAT", "action_statistics",
           "alignment_loss", "kl_divergence", "latent_vae_loss", "load_latent_action_stats", "load_latent_vae",
           "save_latent_vae", "stats_document"]
