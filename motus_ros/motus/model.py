"""Motus: video, action and understanding experts fused by joint attention, with one generate()
path for the five inference modes (arXiv 2512.13030, Sec. 3-4).

Modes are chosen only by the per-modality timesteps (t = 1 pure noise, t = 0 clean):
  joint: video 1 -> 0, action 1 -> 0      vla: video held at 1, action 1 -> 0
  wm:    video 1 -> 0, action 0 (given)   idm: video 0 (given), action 1 -> 0
  vgm:   video 1 -> 0, action held at 1
A held-clean input is returned bit-identical; a held-noise input is never updated.

`config.conventions` decides the condition frame's timestep and the text padding (official Motus
vs the project's presets; see config.Conventions). Precision: float32 on CPU; on CUDA, bf16 autocast
(as the official code runs) with the timestep embeddings and the video head kept in float32.
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import MotusConfig
from .experts import ActionExpert, LayerInputs, UndExpert, VideoExpert, joint_layer, timestep_features
from .modes import CLEAN, DENOISE, MODE_TABLE, MODES, NOISE, check_mode  # noqa: F401 - MODES re-exported
from .sampler import FlowMatchEulerSampler

TEXT_CACHE_SIZE = 16  # instructions kept (the text depends only on the instruction)


def fp32_region(device: torch.device):
    """Autocast off: what the official code keeps in float32 under bf16 (timestep embeddings, video head)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def pad_text(states: torch.Tensor, length: int) -> torch.Tensor:
    """umT5 states [B,L,C] zero-padded (or cut) to [B,length,C] (conventions.text_context 'fixed')."""
    n = states.shape[1]
    if n >= length:
        return states[:, :length]
    return torch.cat([states, states.new_zeros(states.shape[0], length - n, states.shape[2])], dim=1)


@dataclass
class Conditioning:
    """Step-invariant inputs of one call: computed once, reused at every denoising step."""

    und_tokens: torch.Tensor                 # [B,Lu,Du] understanding tokens after the VLM adapter
    und_mask: torch.Tensor | None            # [B,Lu] bool (False = padding) or None
    text: torch.Tensor                       # [B,Lt,D] text context in the video width
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]   # per layer [B,H,Lt,hd] keys and values
    cond_latent: torch.Tensor                # [B,C,1,h,w] latent of the condition frame


@dataclass
class GenerateOutput:
    actions: torch.Tensor | None             # [B,chunk,A] normalized; None when held at noise (vgm)
    video_latents: torch.Tensor | None       # [B,C,T,h,w] incl. condition frame; None in vla
    frames: torch.Tensor | None              # [B,3,F,H,W] in [-1,1], future frames; only when denoised
    mode: str
    timing: dict[str, float] = field(default_factory=dict)


class Motus(nn.Module):
    """The three experts plus (optionally) the frozen encoders: autoencoder, VLM, text encoder."""

    def __init__(self, config: MotusConfig, build_encoders: bool = True):
        super().__init__()
        self.config = config
        self.video = VideoExpert(config)
        self.action = ActionExpert(config)
        self.und = UndExpert(config)
        if build_encoders:
            from .encoders import build_encoders as _build

            self.vae, self.vlm, self.text_encoder = _build(config)
        else:
            self.vae = self.vlm = self.text_encoder = None
        self.tokenizer_folder = None  # checkpoint folder whose tokenizer files are attached (tokenization.py)
        self._text_cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self.text_encoder_calls = 0   # counts umT5 forwards (tests check text is encoded once)

    # Bookkeeping ---------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (works on the meta device)."""
        def count(m):
            return 0 if m is None else sum(p.numel() for p in m.parameters())
        return {"video_expert": count(self.video), "action_expert": count(self.action),
                "und_expert": count(self.und), "vae": count(self.vae), "vlm": count(self.vlm),
                "text_encoder": count(self.text_encoder)}

    @property
    def device(self) -> torch.device:
        return self.action.registers.device if self.action.registers is not None else next(self.parameters()).device

    def _need_encoders(self) -> None:
        if self.vae is None:
            raise RuntimeError("this Motus was built with build_encoders=False; conditioning needs the encoders")

    # Step-invariant conditioning -----------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,3,F,H,W] in [-1,1] -> latents [B,C,1+(F-1)/4,h,w]."""
        self._need_encoders()
        return self.vae.encode(frames.float())

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        self._need_encoders()
        return self.vae.decode(latents.float())

    def encode_text(self, instructions: list[str], use_cache: bool = True) -> torch.Tensor:
        """umT5 states [B,L,text_dim]; cached per instruction tuple (text depends on nothing else)."""
        self._need_encoders()
        key = tuple(instructions)
        if use_cache and key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        self.text_encoder_calls += 1
        out = self.text_encoder(list(instructions))
        if use_cache:
            self._text_cache[key] = out
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return out

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    def prepare_conditioning(self, images: torch.Tensor, instructions: list[str], use_text_cache: bool = True,
                             text_states: torch.Tensor | None = None) -> Conditioning:
        """images [B,3,H,W] in [-1,1] (the condition frame, tiled) + instructions -> Conditioning."""
        self._need_encoders()
        vlm_feats, vlm_mask = self.vlm(images, list(instructions))           # [B,L,vlm_hidden], [B,L]
        und_tokens = self.und.vlm_adapter(vlm_feats.to(self.und.vlm_adapter[0].weight.dtype))
        und_mask = None if bool(vlm_mask.all()) else vlm_mask
        if text_states is None:
            text_states = self.encode_text(list(instructions), use_cache=use_text_cache)
        text = self.text_context(text_states.to(self.video.wan.condition_embedder.text_embedder.linear_1.weight.dtype))
        cross_kv = [self.video.cross_kv(i, text) for i in range(self.config.num_layers)]
        cond_latent = self.encode_frames(images.unsqueeze(2))                   # [B,C,1,h,w]
        return Conditioning(und_tokens, und_mask, text, cross_kv, cond_latent)

    def conditioning_from_features(self, vlm_feats: torch.Tensor, text_states: torch.Tensor,
                                   cond_latent: torch.Tensor, vlm_mask: torch.Tensor | None = None) -> Conditioning:
        """Conditioning from precomputed encoder outputs (training on cached features)."""
        und_tokens = self.und.vlm_adapter(vlm_feats)
        text = self.text_context(text_states)
        cross_kv = [self.video.cross_kv(i, text) for i in range(self.config.num_layers)]
        return Conditioning(und_tokens, vlm_mask, text, cross_kv, cond_latent)

    def text_context(self, text_states: torch.Tensor) -> torch.Tensor:
        """umT5 states [B,L,text_dim] -> text context [B,L',D] for the cross-attention.

        conventions.text_context 'fixed' (official): zero-padded (or cut) to text_max_len before the
        projection, all positions attended; 'longest': as given (padded to the batch's longest).
        """
        if self.config.conventions.text_context == "fixed":
            text_states = pad_text(text_states, self.config.text_max_len)
        return self.video.text(text_states)

    # The video expert's space (conventions.video_target) -----------------------------------------
    def video_to_model(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B,C,T,h,w] (frame 0 = condition) -> what the video expert denoises: the same, or
        under video_target 'residual' the future frames as (latent - condition) * video_residual_scale."""
        if self.config.conventions.video_target == "absolute":
            return latents
        cond = latents[:, :, :1]
        return torch.cat([cond, (latents[:, :, 1:] - cond) * self.config.video_residual_scale], dim=2)

    def video_from_model(self, video: torch.Tensor) -> torch.Tensor:
        """Inverse of video_to_model: the video expert's frames back to autoencoder latents."""
        if self.config.conventions.video_target == "absolute":
            return video
        cond = video[:, :, :1]
        return torch.cat([cond, cond + video[:, :, 1:] / self.config.video_residual_scale], dim=2)

    # One network evaluation ----------------------------------------------------------------------
    def denoise(self, cond: Conditioning, video_latents: torch.Tensor, t_video: torch.Tensor,
                actions: torch.Tensor, t_action: torch.Tensor, state: torch.Tensor,
                need_video: bool = True, trace: dict | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Velocities for video latents [B,C,T,h,w] (frame 0 = clean condition) and actions [B,chunk,A]
        (the video head's output is the clean sample instead under conventions.video_prediction
        'sample'; `sample` converts it).

        t_video, t_action: [B] in [0,1]. The condition frame's tokens get t = 0 under
        conventions.condition_timestep 'zero' (Wan 2.2 TI2V), t_video under 'shared' (official).
        trace: a dict to receive the intermediates (inputs of the three streams, time embeddings,
        text context, per-layer outputs), for parity checks against the official implementation.
        """
        cfg = self.config
        b = video_latents.shape[0]
        xv, rope = self.video.embed(video_latents)                             # [B,Nv,D]
        pt, ph, pw = cfg.patch_size
        grid = (video_latents.shape[2] // pt, video_latents.shape[3] // ph, video_latents.shape[4] // pw)
        per_frame = grid[1] * grid[2]
        t_tok = t_video.float().view(b, 1).expand(b, xv.shape[1]).clone()     # [B,Nv]
        if cfg.conventions.condition_timestep == "zero":
            t_tok[:, :per_frame] = 0.0                                         # condition frame is clean
        regs = self.action.registers
        xa = self.action.input_encoder(state.float(), actions.float(), regs)    # [B,1+chunk+R,Da]
        with fp32_region(xv.device):
            frame_actions = None
            if self.video.frame_actions is not None:                           # video_action_conditioning
                frame_actions = self.video.frame_actions.tokens(
                    actions, timestep_features(t_action.float().view(b)), per_frame)
            temb_v, mod_v = self.video.time(t_tok, frame_actions)              # [B,Nv,D], [B,Nv,6,D]
            temb_a, mod_a = self.action.time(t_action.float().view(b))         # [B,Da], [B,6,Da]
        xu = cond.und_tokens
        if trace is not None:
            na = xa.shape[1]
            trace.update(video_tokens_in=xv, action_tokens_in=xa, und_tokens_in=xu, t5_context=cond.text,
                         video_temb=temb_v, video_tproj=mod_v,
                         action_temb=temb_a.unsqueeze(1).expand(b, na, -1),
                         action_tproj=mod_a.unsqueeze(1).expand(b, na, -1, -1))

        key_mask = None
        if cond.und_mask is not None:
            ones = torch.ones(b, xv.shape[1] + xa.shape[1], dtype=torch.bool, device=xv.device)
            key_mask = torch.cat([ones, cond.und_mask.to(xv.device)], dim=1)   # [B,Nv+Na+Nu]
        inp = LayerInputs(mod_v, mod_a, rope, cond.cross_kv, key_mask, trace)
        for i in range(cfg.num_layers):
            xv, xa, xu = joint_layer(i, self.video, self.action, self.und, xv, xa, xu, inp)

        v_video = None
        if need_video:
            with fp32_region(xv.device):
                v_video = self.video.head(xv, temb_v, grid).float()
        chunk = actions.shape[1]
        v_action = self.action.decoder(xa[:, 1: 1 + chunk], temb_a).float()   # drop state and registers
        return v_video, v_action

    # Inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: Conditioning, video: torch.Tensor, actions: torch.Tensor, state: torch.Tensor,
               mode: str = "joint", steps: int | None = None, step_fn=None, recondition=None,
               timing: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoising loop of `generate` from given starting tensors.

        video [B,C,T,h,w]: frame 0 = the clean condition latent, frames 1.. noise (or the given clean
        video in idm), in the video expert's space (video_to_model); actions [B,chunk,A]: noise (or the given actions in wm). Euler steps from
        t = 1 to 0 (`steps` equal steps, warped by sampler_shift), the same t for every modality
        being denoised; frame 0 is never updated, i.e. the condition latent is written back after
        every step (official `inference_step`). recondition: None, or a callable giving a fresh
        Conditioning before every step after the first (the official per-step VLM re-run).
        Returns (video, actions) after the last step.
        """
        video_role, action_role = MODE_TABLE[check_mode(mode)]
        steps = self.config.num_inference_steps if steps is None else int(steps)
        step_fn = step_fn or self.denoise
        timing = {} if timing is None else timing
        b, device = video.shape[0], video.device
        sampler = FlowMatchEulerSampler(steps, self.config.sampler_shift)
        ones = torch.ones(b, device=device)
        for i in range(steps):
            if recondition is not None and i > 0:
                t0 = time.perf_counter()
                cond = recondition()
                timing["conditioning_s"] = timing.get("conditioning_s", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            t_now = float(sampler.sigmas[i])
            tv = {CLEAN: 0.0, NOISE: 1.0, DENOISE: t_now}[video_role] * ones
            ta = {CLEAN: 0.0, NOISE: 1.0, DENOISE: t_now}[action_role] * ones
            v_video, v_action = step_fn(cond, video, tv, actions, ta, state, need_video=video_role == DENOISE)
            if video_role == DENOISE and self.config.conventions.video_prediction == "sample":
                v_video = (video - v_video) / t_now           # the head gave x0; t_now > 0 inside the loop
            if video_role == DENOISE:
                future = sampler.step(v_video[:, :, 1:], i, video[:, :, 1:])
                video = torch.cat([video[:, :, :1], future], dim=2)
            if action_role == DENOISE:
                actions = sampler.step(v_action, i, actions)
            timing["denoise_s"] = timing.get("denoise_s", 0.0) + time.perf_counter() - t0
        return video, actions

    @torch.no_grad()
    def generate(self, images: torch.Tensor, state: torch.Tensor, instructions: list[str], mode: str = "vla",
                 steps: int | None = None, actions: torch.Tensor | None = None,
                 future_frames: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 recompute_conditioning: bool = False, step_fn=None, precision: str = "auto") -> GenerateOutput:
        """Run one chunk in any mode.

        images [B,3,H,W] in [-1,1] at the model video size (condition frame); state [B,S] normalized;
        actions [B,chunk,A] normalized (wm); future_frames [B,3,F,H,W] in [-1,1] (idm).
        recompute_conditioning=True re-runs VLM, text encoder and condition-frame encoding at every
        step, as the official release does (kept for the benchmark baseline).
        step_fn: the per-step network, called like `denoise` (cond, video, t_video, actions, t_action,
        state, need_video=...); None = self.denoise (eager). Backends (motus.backends) plug in here.
        precision: of the eager self.denoise ("auto": float32 on CPU, bf16 autocast on CUDA).
        """
        mode = check_mode(mode)
        video_role, action_role = MODE_TABLE[mode]
        cfg = self.config
        steps = cfg.num_inference_steps if steps is None else int(steps)
        b = images.shape[0]
        device = images.device
        if action_role == CLEAN and actions is None:
            raise ValueError(f"mode '{mode}' needs 'actions' [B,{cfg.chunk_size},{cfg.action_dim}]")
        if video_role == CLEAN and future_frames is None:
            raise ValueError(f"mode '{mode}' needs 'future_frames' [B,3,{cfg.num_future_frames},H,W]")
        if actions is not None and tuple(actions.shape[1:]) != (cfg.chunk_size, cfg.action_dim):
            raise ValueError(f"actions shape {tuple(actions.shape)}, expected [B,{cfg.chunk_size},{cfg.action_dim}]")

        timing = {"conditioning_s": 0.0, "denoise_s": 0.0}
        start = time.perf_counter()
        cond = self.prepare_conditioning(images, instructions, use_text_cache=not recompute_conditioning)
        h, w = cfg.latent_size
        given_video = None
        if video_role == CLEAN:
            given_video = self.encode_frames(torch.cat([images.unsqueeze(2), future_frames.to(device)], dim=2))
            given_video = self.video_to_model(given_video)
        timing["conditioning_s"] += time.perf_counter() - start

        # Initial noise is always drawn in the same order so seeds mean the same across modes.
        future_noise = torch.randn((b, cfg.latent_channels, cfg.latent_frames - 1, h, w), generator=generator,
                                   dtype=torch.float32).to(device)
        action_noise = torch.randn((b, cfg.chunk_size, cfg.action_dim), generator=generator,
                                   dtype=torch.float32).to(device)
        video = given_video if video_role == CLEAN else torch.cat([cond.cond_latent, future_noise], dim=2)
        act = actions.to(device) if action_role == CLEAN else action_noise

        recondition = None
        if recompute_conditioning:
            recondition = functools.partial(self.prepare_conditioning, images, instructions, use_text_cache=False)
        if step_fn is None:
            from .backends.torch_backend import TorchBackend
            step_fn = TorchBackend(self, precision=precision)
        video, act = self.sample(cond, video, act, state.to(device), mode=mode, steps=steps, step_fn=step_fn,
                                 recondition=recondition, timing=timing)

        video = self.video_from_model(video)
        given_video = None if given_video is None else self.video_from_model(given_video)
        frames = None
        if video_role == DENOISE:
            t0 = time.perf_counter()
            frames = self.decode_latents(video)[:, :, 1:]                       # drop the condition frame
            timing["decode_s"] = time.perf_counter() - t0
        timing["total_s"] = time.perf_counter() - start
        return GenerateOutput(
            actions=None if action_role == NOISE else (actions if action_role == CLEAN else act),
            video_latents=None if video_role == NOISE else (given_video if video_role == CLEAN else video),
            frames=frames, mode=mode, timing=timing)


def build_model(config: MotusConfig, device: str | torch.device = "cpu", build_encoders: bool = True,
                seed: int | None = 0) -> Motus:
    """Construct a Motus on a device ('meta' builds shapes only, for counting or key checks)."""
    if str(device) == "meta":
        with torch.device("meta"):
            return Motus(config, build_encoders=build_encoders)
    if seed is not None:
        torch.manual_seed(seed)
    model = Motus(config, build_encoders=build_encoders)
    return model.to(device).eval()
