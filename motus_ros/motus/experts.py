"""The three experts of Motus and their tri-modal joint attention (arXiv 2512.13030, Sec. 3).

Each expert keeps its own transformer stack of the same depth; at layer i each projects its tokens
to q/k/v in the shared head space (heads x head_dim), one bidirectional attention runs over
[video | action | und], and each expert takes its slice back through its own output projection,
gated residual and FFN. Video q/k get Wan's 3D RoPE; action and understanding q/k get none.

Parameter names of the action and understanding experts follow the official release
(`wan_action_qkv`, `wan_und_o`, `vlm_adapter`, ...), so official checkpoints map by prefix; the
video expert is diffusers' WanTransformer3DModel used block by block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import NUM_TRAIN_TIMESTEPS, TIME_FREQ_DIM, MotusConfig


def timestep_features(t: torch.Tensor, dim: int = TIME_FREQ_DIM) -> torch.Tensor:
    """Sinusoidal features of t in [0,1] (scaled to Wan's 0..1000), cos first: [...] -> [..., dim] float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = (t.double() * NUM_TRAIN_TIMESTEPS).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def sincos_positions(length: int, dim: int) -> torch.Tensor:
    """Fixed 1D sin-cos position table [length, dim] (sin half first, as in MAE/official code)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


def mlp(in_features: int, out_features: int, depth: int) -> nn.Sequential:
    """Official 'mlpNx_silu' projector: Linear, then (SiLU, Linear) x (depth - 1)."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(depth - 1):
        layers += [nn.SiLU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Affine-free LayerNorm in float32 (WanLayerNorm / FP32LayerNorm)."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps).type_as(x)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved rotary embedding. x [B,N,H,D]; cos/sin [1,N,1,D] (diffusers Wan layout)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)              # [B,N,H,D/2] each
    c, s = cos[..., 0::2].float(), sin[..., 1::2].float()
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)      # [B,N,H,D/2,2]
    return out.flatten(-2).type_as(x)


# Action expert ------------------------------------------------------------------------------------
class StateActionEncoder(nn.Module):
    """[state(1) | actions(chunk) | registers] -> tokens, plus fixed sin-cos positions."""

    def __init__(self, cfg: MotusConfig):
        super().__init__()
        self.state_encoder = mlp(cfg.state_dim, cfg.action_hidden, 3)
        self.action_encoder = mlp(cfg.action_dim, cfg.action_hidden, 3)
        # conventions.action_positions "spare_row" (official layout) adds one row that is never read.
        length = 1 + cfg.chunk_size + cfg.num_registers + cfg.conventions.spare_position_rows
        # Saved in checkpoints (as in the official release): its length tells the chunk size.
        self.register_buffer("pos_embedding", sincos_positions(length, cfg.action_hidden).unsqueeze(0))

    def forward(self, state: torch.Tensor, actions: torch.Tensor, registers: torch.Tensor | None) -> torch.Tensor:
        parts = [self.state_encoder(state.unsqueeze(1)), self.action_encoder(actions)]  # [B,1,D], [B,chunk,D]
        if registers is not None:
            parts.append(registers.expand(state.shape[0], -1, -1))                       # [B,R,D]
        x = torch.cat(parts, dim=1)                                                       # [B,1+chunk+R,D]
        return x + self.pos_embedding[:, : x.shape[1]]


class ActionBlock(nn.Module):
    def __init__(self, cfg: MotusConfig):
        super().__init__()
        d, h, hd = cfg.action_hidden, cfg.num_heads, cfg.head_dim
        self.eps = cfg.action_eps
        self.wan_action_qkv = nn.Parameter(torch.randn(3, h, d, hd) / math.sqrt(d * hd))
        self.wan_action_o = nn.Linear(h * hd, d, bias=False)
        self.wan_action_norm_q = nn.RMSNorm(h * hd, eps=cfg.action_eps)
        self.wan_action_norm_k = nn.RMSNorm(h * hd, eps=cfg.action_eps)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.action_ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.action_ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / math.sqrt(d))


class ActionDecoder(nn.Module):
    def __init__(self, cfg: MotusConfig):
        super().__init__()
        self.eps = cfg.action_eps
        self.action_head = mlp(cfg.action_hidden, cfg.action_dim, 1)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.action_hidden) / math.sqrt(cfg.action_hidden))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + temb.unsqueeze(1)).chunk(2, dim=1)      # [B,1,D] each
        return self.action_head(layer_norm(x, self.eps) * (1 + scale) + shift)


class ActionExpert(nn.Module):
    """Action expert (hidden 1024 in the paper): AdaLN from the action timestep, own FFNs."""

    def __init__(self, cfg: MotusConfig):
        super().__init__()
        d = cfg.action_hidden
        self.input_encoder = StateActionEncoder(cfg)
        self.time_embedding = nn.Sequential(nn.Linear(TIME_FREQ_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(ActionBlock(cfg) for _ in range(cfg.num_layers))
        self.registers = nn.Parameter(torch.randn(1, cfg.num_registers, d) * 0.02) if cfg.num_registers else None
        self.decoder = ActionDecoder(cfg)
        nn.init.zeros_(self.decoder.action_head[-1].weight)   # start by predicting zero velocity
        nn.init.zeros_(self.decoder.action_head[-1].bias)

    def time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t [B] in [0,1] -> (temb [B,D], adaLN params [B,6,D])."""
        temb = self.time_embedding(timestep_features(t))
        return temb, self.time_projection(temb).unflatten(1, (6, -1))


# Understanding expert -----------------------------------------------------------------------------
class UndBlock(nn.Module):
    def __init__(self, cfg: MotusConfig):
        super().__init__()
        d, h, hd = cfg.und_hidden, cfg.num_heads, cfg.head_dim
        self.eps = cfg.und_eps
        self.wan_und_qkv = nn.Parameter(torch.randn(3, h, d, hd) / math.sqrt(d * hd))
        self.wan_und_o = nn.Linear(h * hd, d, bias=False)
        self.wan_und_norm_q = nn.RMSNorm(h * hd, eps=cfg.und_eps)
        self.wan_und_norm_k = nn.RMSNorm(h * hd, eps=cfg.und_eps)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.und_ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.und_ffn_dim, d))


class UndExpert(nn.Module):
    """Understanding expert (hidden 512): VLM last layer -> adapter -> LayerNorm/attention/FFN blocks."""

    def __init__(self, cfg: MotusConfig):
        super().__init__()
        self.vlm_adapter = mlp(cfg.vlm_hidden, cfg.und_hidden, 3)
        self.blocks = nn.ModuleList(UndBlock(cfg) for _ in range(cfg.num_layers))


# Video expert -------------------------------------------------------------------------------------
class FrameActionEmbedder(nn.Module):
    """video_action_conditioning "frame": the action chunk [B,chunk,A] and t_action [B] -> one
    embedding per future latent frame [B,F,D], from the chunk's rows in that frame's time span.

    The dataset's windows make the chunk and the future frames cover the same time (48 rows at 30 Hz,
    8 frames at 5 Hz: 1.6 s), so the chunk splits evenly: frame j gets rows (j-1)*r .. j*r-1, the
    targets of its interval. t_action says how noisy those rows are (VLA and Joint mode denoise them).
    The output layer starts at zero, so a model that gains this path computes what it did before.
    (Not in Motus, arXiv 2512.13030: a project addition, off in the official configs.)"""

    def __init__(self, cfg: MotusConfig):
        super().__init__()
        self.frames = cfg.latent_frames - 1
        self.rows = cfg.chunk_size // self.frames
        d = cfg.attn_dim
        self.net = nn.Sequential(nn.Linear(self.rows * cfg.action_dim + TIME_FREQ_DIM, d), nn.SiLU(),
                                 nn.Linear(d, d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, actions: torch.Tensor, t_action_features: torch.Tensor) -> torch.Tensor:
        """actions [B,chunk,A], t_action_features [B,TIME_FREQ_DIM] (timestep_features) -> [B,F,D]."""
        b, chunk, a = actions.shape
        if chunk != self.rows * self.frames:
            raise ValueError(f"actions: {chunk} rows, expected chunk_size={self.rows * self.frames}")
        groups = actions.float().reshape(b, self.frames, self.rows * a)                        # [B,F,r*A]
        feats = t_action_features.float().unsqueeze(1).expand(b, self.frames, -1)
        return self.net(torch.cat([groups, feats], dim=-1))                                   # [B,F,D]

    def tokens(self, actions: torch.Tensor, t_action_features: torch.Tensor, per_frame: int) -> torch.Tensor:
        """[B,Nv,D] for VideoExpert.time's `extra`: zero on the condition frame's tokens, each future
        frame's embedding on that frame's tokens (token order: frame-major, as VideoExpert.embed)."""
        emb = self(actions, t_action_features).repeat_interleave(per_frame, dim=1)             # [B,F*pf,D]
        return torch.cat([torch.zeros_like(emb[:, :per_frame]), emb], dim=1)


class VideoExpert(nn.Module):
    """Wan 2.2 TI2V transformer (diffusers WanTransformer3DModel), driven block by block."""

    def __init__(self, cfg: MotusConfig):
        super().__init__()
        from diffusers import WanTransformer3DModel

        self.wan = WanTransformer3DModel(
            patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
            in_channels=cfg.latent_channels, out_channels=cfg.latent_channels, text_dim=cfg.text_dim,
            freq_dim=TIME_FREQ_DIM, ffn_dim=cfg.video_ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=cfg.video_eps, rope_max_seq_len=cfg.rope_max_seq_len,
        )
        self.eps = cfg.video_eps
        self.frame_actions = FrameActionEmbedder(cfg) if cfg.video_action_conditioning == "frame" else None

    def embed(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """latents [B,C,T,H,W] -> tokens [B,N,D] (N = T*H/2*W/2), rope (cos, sin) [1,N,1,head_dim]."""
        rope = self.wan.rope(latents)
        x = self.wan.patch_embedding(latents.to(self.wan.patch_embedding.weight.dtype))   # [B,D,T,h,w]
        return x.flatten(2).transpose(1, 2).contiguous(), rope

    def time(self, t_tokens: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token timesteps [B,N] in [0,1] -> (temb [B,N,D], adaLN params [B,N,6,D]) (Wan 2.2 TI2V).
        extra [B,N,D]: added to the time embedding before the adaLN projection (frame actions)."""
        ce = self.wan.condition_embedder
        feats = timestep_features(t_tokens).to(ce.time_embedder.linear_1.weight.dtype)
        temb = ce.time_embedder(feats)
        if extra is not None:
            temb = temb + extra.to(temb.dtype)
        proj = ce.time_proj(ce.act_fn(temb))
        return temb, proj.unflatten(2, (6, -1))

    def text(self, context: torch.Tensor) -> torch.Tensor:
        """umT5 states [B,L,text_dim] -> [B,L,D]; step-invariant."""
        return self.wan.condition_embedder.text_embedder(context)

    def cross_kv(self, layer: int, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the text cross-attention of one layer [B,H,L,hd]; step-invariant."""
        attn = self.wan.blocks[layer].attn2
        k = attn.norm_k(attn.to_k(context)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        v = attn.to_v(context).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        return k, v

    def head(self, x: torch.Tensor, temb: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Tokens [B,N,D] -> velocity [B,C,T,H,W]."""
        w = self.wan
        shift, scale = (w.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)  # [B,N,1,D]
        x = layer_norm(x, self.eps).float() * (1 + scale.squeeze(2)) + shift.squeeze(2)
        x = w.proj_out(x.to(w.proj_out.weight.dtype))                                          # [B,N,C*pt*ph*pw]
        b = x.shape[0]
        f, h, ww = grid
        pt, ph, pw = w.config.patch_size
        x = x.reshape(b, f, h, ww, pt, ph, pw, -1)                                             # [B,f,h,w,pt,ph,pw,C]
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)                                                  # [B,C,f,pt,h,ph,w,pw]
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


# The joint layer ----------------------------------------------------------------------------------
@dataclass
class LayerInputs:
    """Per-call tensors a joint layer needs besides the three token streams."""

    video_mod: torch.Tensor                      # [B,N,6,D] video adaLN params (before the table)
    action_mod: torch.Tensor                     # [B,6,Da]
    rope: tuple[torch.Tensor, torch.Tensor]
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    und_key_mask: torch.Tensor | None            # [B, Lv+La+Lu] bool, False = padding, or None
    trace: dict | None = None                    # when a dict: L{i}_after_attn / L{i}_out (video, action, und)


def joint_layer(i: int, video: VideoExpert, action: ActionExpert, und: UndExpert,
                xv: torch.Tensor, xa: torch.Tensor, xu: torch.Tensor, inp: LayerInputs):
    """One Mixture-of-Transformers layer: tri-modal joint attention, then each expert's own path."""
    vb, ab, ub = video.wan.blocks[i], action.blocks[i], und.blocks[i]
    b, nv, _ = xv.shape
    na, nu = xa.shape[1], xu.shape[1]

    # adaLN: (table + temb projection) -> shift, scale, gate (attention) and (FFN).
    v_shift, v_scale, v_gate, vc_shift, vc_scale, vc_gate = (
        vb.scale_shift_table.unsqueeze(0) + inp.video_mod.float()).unbind(2)          # [B,N,D] each
    a_shift, a_scale, a_gate, ac_shift, ac_scale, ac_gate = (
        ab.modulation + inp.action_mod.float()).unsqueeze(2).unbind(1)                # [B,1,Da] each

    # Video q/k/v: Wan self-attention projections, RMSNorm across heads, 3D RoPE.
    nv_in = (layer_norm(xv, video.eps).float() * (1 + v_scale) + v_shift).type_as(xv)
    a1 = vb.attn1
    qv = a1.norm_q(a1.to_q(nv_in)).unflatten(2, (a1.heads, -1))                        # [B,Nv,H,hd]
    kv = a1.norm_k(a1.to_k(nv_in)).unflatten(2, (a1.heads, -1))
    vv = a1.to_v(nv_in).unflatten(2, (a1.heads, -1))
    qv, kv = apply_rope(qv, *inp.rope), apply_rope(kv, *inp.rope)

    # Action q/k/v in the shared head space; no RoPE (fixed sin-cos positions at the input).
    na_in = layer_norm(xa, ab.eps) * (1 + a_scale) + a_shift
    qa, ka, va = torch.einsum("btd,khde->kbthe", na_in, ab.wan_action_qkv)             # [B,Na,H,hd] each
    qa = ab.wan_action_norm_q(qa.flatten(2)).view_as(qa)
    ka = ab.wan_action_norm_k(ka.flatten(2)).view_as(ka)

    # Understanding q/k/v: plain LayerNorm, no timestep.
    nu_in = layer_norm(xu, ub.eps)
    qu, ku, vu = torch.einsum("btd,khde->kbthe", nu_in, ub.wan_und_qkv)
    qu = ub.wan_und_norm_q(qu.flatten(2)).view_as(qu)
    ku = ub.wan_und_norm_k(ku.flatten(2)).view_as(ku)

    dtype = qv.dtype
    q = torch.cat([qv, qa.to(dtype), qu.to(dtype)], 1).transpose(1, 2)                 # [B,H,L,hd]
    k = torch.cat([kv, ka.to(dtype), ku.to(dtype)], 1).transpose(1, 2)
    v = torch.cat([vv, va.to(dtype), vu.to(dtype)], 1).transpose(1, 2)
    mask = None if inp.und_key_mask is None else inp.und_key_mask[:, None, None, :]     # [B,1,1,L]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2)  # [B,L,H*hd]
    ov, oa, ou = out.split([nv, na, nu], dim=1)

    # Video: output projection + gate, text cross-attention (cached K/V), gated FFN.
    xv = (xv.float() + a1.to_out[0](ov) * v_gate).type_as(xv)
    xv_attn = xv
    a2 = vb.attn2
    qc = a2.norm_q(a2.to_q(vb.norm2(xv.float()).type_as(xv))).unflatten(2, (a2.heads, -1)).transpose(1, 2)
    ck, cv = inp.cross_kv[i]
    xv = xv + a2.to_out[0](F.scaled_dot_product_attention(qc, ck, cv).transpose(1, 2).flatten(2))
    f_in = (layer_norm(xv, video.eps).float() * (1 + vc_scale) + vc_shift).type_as(xv)
    xv = (xv.float() + vb.ffn(f_in).float() * vc_gate).type_as(xv)

    # Action: own output projection, gated residual, gated FFN.
    xa = xa + ab.wan_action_o(oa.to(xa.dtype)) * a_gate
    xa_attn = xa
    xa = xa + ab.ffn(layer_norm(xa, ab.eps) * (1 + ac_scale) + ac_shift) * ac_gate

    # Understanding: plain residuals.
    xu = xu + ub.wan_und_o(ou.to(xu.dtype))
    if inp.trace is not None:
        inp.trace[f"L{i}_after_attn"] = (xv_attn, xa_attn, xu)
    xu = xu + ub.ffn(layer_norm(xu, ub.eps))
    if inp.trace is not None:
        inp.trace[f"L{i}_out"] = (xv, xa, xu)
    return xv, xa, xu
