"""The per-step denoising network as a module of plain tensors, for compilers and exporters.

`Motus.denoise` takes a Conditioning dataclass and raw timesteps; compilers (torch.compile with CUDA
graphs) and exporters (ONNX, TensorRT) want a fixed list of tensors and no float64. StepNetwork runs
the same layers as `Motus.denoise` on:

  video_latents      [B,C,T,h,w] float32   noisy video latents, frame 0 = clean condition latent
  actions            [B,chunk,A] float32   noisy (or given) normalized actions
  state              [B,S]       float32   normalized joint state
  t_video_features   [B,2,256]   float32   sinusoidal features of (0, t_video): row 0 for the
                                           condition-frame tokens under conventions.condition_timestep
                                           'zero', row 1 for the rest (every token under 'shared')
  t_action_features  [B,256]     float32   sinusoidal features of t_action
  und_tokens         [B,Lu,Du]   float32   understanding tokens (cached conditioning)
  und_mask           [B,Lu]      bool      False = padding
  cross_k, cross_v   [L,B,H,Lt,hd] float32 per-layer text cross-attention keys/values (cached)

and returns (v_video [B,C,T,h,w], v_action [B,chunk,A]) in float32. The timestep features are
computed outside (in float64, as `timestep_features` does) because TensorRT has no float64; the
3D RoPE table depends only on the latent grid, so it is built once here (a constant in exports).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TIME_FREQ_DIM
from ..experts import LayerInputs, joint_layer, timestep_features
from ..model import fp32_region

INPUT_NAMES = ("video_latents", "actions", "state", "t_video_features", "t_action_features", "und_tokens",
               "und_mask", "cross_k", "cross_v")
OUTPUT_NAMES = ("v_video", "v_action")


def step_features(model, t_video: torch.Tensor, t_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Timesteps [B] in [0,1] -> (t_video_features [B,2,256], t_action_features [B,256]) float32."""
    b = t_video.shape[0]
    tv = torch.stack([torch.zeros_like(t_video.float()), t_video.float().view(b)], dim=1)   # [B,2]
    return timestep_features(tv, TIME_FREQ_DIM), timestep_features(t_action.float().view(b), TIME_FREQ_DIM)


def pack_conditioning(cond) -> dict[str, torch.Tensor]:
    """Conditioning -> the step network's cached inputs (und_tokens, und_mask, cross_k, cross_v)."""
    und = cond.und_tokens
    mask = cond.und_mask
    if mask is None:
        mask = torch.ones(und.shape[:2], dtype=torch.bool, device=und.device)
    cross_k = torch.stack([k for k, _ in cond.cross_kv])                 # [L,B,H,Lt,hd]
    cross_v = torch.stack([v for _, v in cond.cross_kv])
    return {"und_tokens": und.float(), "und_mask": mask.to(und.device, torch.bool),
            "cross_k": cross_k.float(), "cross_v": cross_v.float()}


class StepNetwork(nn.Module):
    """One network evaluation of Motus (the body of `Motus.denoise`) on plain tensors; see module doc."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.config = cfg
        self.video, self.action, self.und = model.video, model.action, model.und
        h, w = cfg.latent_size
        pt, ph, pw = cfg.patch_size
        self.grid = (cfg.latent_frames // pt, h // ph, w // pw)
        probe = torch.zeros(1, cfg.latent_channels, cfg.latent_frames, h, w)
        cos, sin = self.video.wan.rope(probe)                                # [1,Nv,1,hd] float64 on CPU
        # apply_rope casts the table to float32 at use, so storing it in float32 changes nothing.
        self.register_buffer("rope_cos", cos.float().to(model.video.wan.patch_embedding.weight.device),
                             persistent=False)
        self.register_buffer("rope_sin", sin.float().to(model.video.wan.patch_embedding.weight.device),
                             persistent=False)
        per_frame = self.grid[1] * self.grid[2]
        n_tokens = self.grid[0] * per_frame
        # Token -> row of t_video_features: the condition frame's tokens take row 0 (t = 0) under
        # conventions.condition_timestep 'zero'; under 'shared' (official) every token takes row 1.
        index = torch.ones(n_tokens, dtype=torch.long)
        if cfg.conventions.condition_timestep == "zero":
            index[:per_frame] = 0
        self.register_buffer("token_time_index", index.to(self.rope_cos.device), persistent=False)

    def forward(self, video_latents, actions, state, t_video_features, t_action_features, und_tokens, und_mask,
                cross_k, cross_v):
        cfg = self.config
        b = video_latents.shape[0]
        wan = self.video.wan
        xv = wan.patch_embedding(video_latents.to(wan.patch_embedding.weight.dtype))   # [B,D,f,h,w]
        xv = xv.flatten(2).transpose(1, 2).contiguous()                                # [B,Nv,D]
        ce = wan.condition_embedder
        feats = t_video_features.index_select(1, self.token_time_index)               # [B,Nv,256]
        with fp32_region(xv.device):
            temb_v = ce.time_embedder(feats.to(ce.time_embedder.linear_1.weight.dtype))   # [B,Nv,D]
            if self.video.frame_actions is not None:                                      # video_action_conditioning
                temb_v = temb_v + self.video.frame_actions.tokens(
                    actions, t_action_features, self.grid[1] * self.grid[2]).to(temb_v.dtype)
            mod_v = ce.time_proj(ce.act_fn(temb_v)).unflatten(2, (6, -1))                 # [B,Nv,6,D]
            temb_a = self.action.time_embedding(t_action_features)                        # [B,Da]
            mod_a = self.action.time_projection(temb_a).unflatten(1, (6, -1))             # [B,6,Da]

        xa = self.action.input_encoder(state.float(), actions.float(), self.action.registers)   # [B,1+chunk+R,Da]
        xu = und_tokens.to(self.und.vlm_adapter[0].weight.dtype)

        ones = torch.ones(b, xv.shape[1] + xa.shape[1], dtype=torch.bool, device=xv.device)
        key_mask = torch.cat([ones, und_mask.to(torch.bool)], dim=1)                  # [B,Nv+Na+Nu]
        dtype = wan.blocks[0].attn2.to_k.weight.dtype
        cross_kv = [(cross_k[i].to(dtype), cross_v[i].to(dtype)) for i in range(cfg.num_layers)]
        inp = LayerInputs(mod_v, mod_a, (self.rope_cos, self.rope_sin), cross_kv, key_mask)
        for i in range(cfg.num_layers):
            xv, xa, xu = joint_layer(i, self.video, self.action, self.und, xv, xa, xu, inp)

        with fp32_region(xv.device):
            v_video = self.video.head(xv, temb_v, self.grid).float()
        chunk = actions.shape[1]
        v_action = self.action.decoder(xa[:, 1: 1 + chunk], temb_a).float()          # drop state and registers
        return v_video, v_action


def example_inputs(model, batch: int = 1, und_len: int | None = None, text_len: int | None = None,
                   device: str | torch.device = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes (export tracing, engine building, tests)."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    lu = und_len or default_und_len(cfg)
    lt = text_len or cfg.text_max_len
    shapes = example_shapes(cfg, batch, lu, lt)
    out = {}
    for name, shape in shapes.items():
        if name == "und_mask":
            out[name] = torch.ones(shape, dtype=torch.bool)
        elif name in ("t_video_features", "t_action_features"):
            continue
        else:
            out[name] = torch.randn(shape, generator=g)
    tv, ta = step_features(model, torch.rand(batch, generator=g), torch.rand(batch, generator=g))
    out["t_video_features"], out["t_action_features"] = tv, ta
    return {k: out[k].to(device) for k in INPUT_NAMES}


def default_und_len(cfg) -> int:
    """Understanding tokens for one image + a typical instruction: vision start/end + merged patches + 32."""
    hv, wv = cfg.vlm_image_size
    return 2 + (hv // 32) * (wv // 32) + 32


def example_shapes(cfg, batch: int, und_len: int, text_len: int) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes of the step network for the given batch and conditioning lengths."""
    h, w = cfg.latent_size
    return {
        "video_latents": (batch, cfg.latent_channels, cfg.latent_frames, h, w),
        "actions": (batch, cfg.chunk_size, cfg.action_dim),
        "state": (batch, cfg.state_dim),
        "t_video_features": (batch, 2, TIME_FREQ_DIM),
        "t_action_features": (batch, TIME_FREQ_DIM),
        "und_tokens": (batch, und_len, cfg.und_hidden),
        "und_mask": (batch, und_len),
        "cross_k": (cfg.num_layers, batch, cfg.num_heads, text_len, cfg.head_dim),
        "cross_v": (cfg.num_layers, batch, cfg.num_heads, text_len, cfg.head_dim),
    }


__all__ = ["StepNetwork", "INPUT_NAMES", "OUTPUT_NAMES", "step_features", "pack_conditioning", "example_inputs",
           "example_shapes", "default_und_len"]
