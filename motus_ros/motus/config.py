"""Model configuration of Motus (arXiv 2512.13030) with the presets `tiny`, `small` and `paper`.

One dataclass describes the three experts (video, action, understanding), the frozen encoders
(frames <-> latents autoencoder, vision-language model, text encoder) and the inference flow
schedule. The numbers of the training objective (timestep parameters, loss weights) are not model
fields: they live in motus.flow.LossSettings (LOSS_FIELDS below names them for older files).
`Conventions` records the choices where the official release (thu-ml/Motus) and this project's
own presets differ, so that a checkpoint always runs and trains with the ones it was made with.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Paper / official-release constants (arXiv 2512.13030 Table 11; thu-ml/Motus configs/robotwin.yaml).
PAPER_NUM_LAYERS = 30
PAPER_CHUNK = 48                 # actions per chunk (1.6 s at 30 Hz)
PAPER_VIDEO_FRAMES = 8           # future frames per chunk (5 Hz)
PAPER_VIDEO_HEIGHT = 384         # tiled three-camera image, pixels
PAPER_VIDEO_WIDTH = 320
PAPER_INFERENCE_STEPS = 10
NUM_TRAIN_TIMESTEPS = 1000       # Wan convention: the timestep embedding sees t * 1000
TIME_FREQ_DIM = 256              # sinusoidal timestep features (Wan and the action expert)
OFFICIAL_TRAIN_SHIFT = 5.0       # official training: FlowMatchScheduler(shift=5), 1000 discrete sigmas
                                 # (flow.LossSettings.official() / flow.OFFICIAL_LOSS)
QWEN3_VL_ROPE_THETA = 5_000_000.0  # Qwen3-VL text rope theta (its config.json; transformers 4.x default)

CONDITION_TIMESTEPS = ("zero", "shared")
TEXT_CONTEXTS = ("longest", "fixed")
TIMESTEP_SAMPLINGS = ("logit_normal", "shifted_uniform", "flow_shift")
VIDEO_LOSSES = ("future_frames", "all_frames")
ACTION_POSITIONS = ("exact", "spare_row")
VLM_PROMPTS = ("image_text", "chat_text_image", "chat_image_text")
VIDEO_TARGETS = ("absolute", "residual")
VIDEO_PREDICTIONS = ("velocity", "sample")
TOKENIZER_SOURCES = ("byte", "files")
# Frames <-> latents: "wan" (diffusers AutoencoderKLWan, Wan 2.2 layout), "patch" (parameter-free
# stand-in), "learned" (a small AutoencoderKL trained by `motus-ros train-vae`, read from vae_path).
VAE_KINDS = ("wan", "patch", "learned")
# MotusConfig.video_action_conditioning: the official shared attention only, or also per frame.
VIDEO_ACTION_CONDITIONING = ("attention", "frame")
# Training-objective fields that model configs held before motus.flow.LossSettings existed: an older
# config.json still has them. MotusConfig.from_dict drops them (legacy_loss_fields reads them).
LOSS_FIELDS = ("logit_mean", "logit_std", "uniform_shift", "video_loss_weight", "action_loss_weight")


def strict_from_dict(cls, data, what: str):
    """Dataclass `cls` from a dict (None: the defaults; an instance: itself); missing keys take the
    defaults, unknown keys are a ValueError naming `what` and the known fields."""
    if data is None:
        return cls()
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a mapping, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{what}: unknown fields {unknown}; known fields: {known}")
    return cls(**data)


@dataclass(frozen=True)
class Conventions:
    """Where the official Motus and this project's presets compute or train differently.

    condition_timestep  "zero": the condition frame's video tokens get t = 0 (Wan 2.2 TI2V; project
                        presets). "shared": every video token gets the video t, condition frame
                        included (official Motus).
    text_context        "longest": umT5 states zero-padded to the longest instruction of the batch
                        (project). "fixed": zero-padded (or cut) to text_max_len before the text
                        projection, all positions attended, no mask (official: Wan text_len).
    timestep_sampling   training t of video and action, drawn independently. "logit_normal":
                        sigmoid(logit_mean + logit_std N(0,1)) (project). "shifted_uniform":
                        continuous uniform, shifted by uniform_shift. "flow_shift": uniform over the
                        1000 discrete sigmas of FlowMatchScheduler(shift=uniform_shift), i.e.
                        shift(1 - k/1000), k = 0..999 (official, shift 5). The parameters named here
                        are training settings (motus.flow.LossSettings), not part of the model config.
    video_loss          "future_frames": MSE over latent frames 1.. only (project). "all_frames":
                        frame 0 zeroed in prediction and target, mean over all T frames (official).
    action_positions    rows of the fixed sin-cos position table of the action expert. "exact":
                        1 + chunk + registers. "spare_row": one more, never read (official: its
                        ActionExpertConfig.chunk_size already counts the state token and the
                        encoder adds 1 for it again).
    vlm_prompt          the understanding expert's Qwen3-VL input. "image_text": image tokens then the
                        instruction, no chat template (project). "chat_text_image": the processor's
                        chat template over one user message [instruction, image], no generation
                        prompt (official inference: deploy_policy.py, inference_example.py).
                        "chat_image_text": [image, instruction] with the generation prompt (the
                        official training datasets, utils/vlm_utils.py). Without tokenizer files the
                        byte stand-in keeps the text/image order but has no chat template.
    video_target        what the video expert denoises for the future latent frames. "absolute": the
                        latents themselves (official and the presets). "residual": their difference
                        from the condition latent, times MotusConfig.video_residual_scale (models
                        trained here on a fixed-camera scene: a model that has learned nothing yet
                        predicts "nothing moves", the copy baseline, instead of noise).
    video_prediction    what the video head outputs. "velocity": v = eps - x0 (official and the presets).
                        "sample": the clean future x0 itself, trained with MSE on x0 (the velocity
                        loss weighted by t^2); the sampler turns it into v = (x_t - x0) / t. With
                        video_target "residual" a zero head output is exactly the copy baseline, so
                        an output layer started at zero imagines "nothing moves" from the first step
                        and training only has to add the motion.
    A config without conventions (checkpoints older than this field) has the project's.
    """

    condition_timestep: str = "zero"
    text_context: str = "longest"
    timestep_sampling: str = "logit_normal"
    video_loss: str = "future_frames"
    action_positions: str = "exact"
    vlm_prompt: str = "image_text"
    video_target: str = "absolute"
    video_prediction: str = "velocity"

    def __post_init__(self) -> None:
        for name, allowed in (("condition_timestep", CONDITION_TIMESTEPS), ("text_context", TEXT_CONTEXTS),
                              ("timestep_sampling", TIMESTEP_SAMPLINGS), ("video_loss", VIDEO_LOSSES),
                              ("action_positions", ACTION_POSITIONS), ("vlm_prompt", VLM_PROMPTS),
                              ("video_target", VIDEO_TARGETS), ("video_prediction", VIDEO_PREDICTIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"conventions.{name}='{value}', expected one of: {', '.join(allowed)}")

    @property
    def spare_position_rows(self) -> int:
        return 1 if self.action_positions == "spare_row" else 0

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | Conventions | None") -> "Conventions":
        """Missing keys take the project's values; unknown keys are an error."""
        return strict_from_dict(cls, data, "conventions")

    def describe(self) -> str:
        """One line naming the conventions, e.g. for `checkpoint inspect` and start-up logs."""
        kind = {PROJECT_CONVENTIONS: "project", OFFICIAL_CONVENTIONS: "official"}.get(self, "custom")
        return f"{kind} conventions: " + ", ".join(f"{k}={v}" for k, v in self.to_dict().items())


PROJECT_CONVENTIONS = Conventions()
OFFICIAL_CONVENTIONS = Conventions(condition_timestep="shared", text_context="fixed", timestep_sampling="flow_shift",
                                   video_loss="all_frames", action_positions="spare_row",
                                   vlm_prompt="chat_text_image")


@dataclass
class MotusConfig:
    """Every size of the model; presets below. Units: pixels for video sizes, frames for counts."""

    name: str = "custom"
    num_layers: int = PAPER_NUM_LAYERS
    # Shared attention head space of the tri-modal joint attention (Wan 2.2 TI2V-5B: 24 x 128).
    num_heads: int = 24
    head_dim: int = 128
    # Video expert (Wan 2.2 TI2V-5B transformer).
    latent_channels: int = 48
    patch_size: tuple[int, int, int] = (1, 2, 2)
    video_ffn_dim: int = 14336
    text_dim: int = 4096           # umT5-XXL width
    video_eps: float = 1e-6
    rope_max_seq_len: int = 1024
    # Action expert.
    action_dim: int = 14
    state_dim: int = 14
    action_hidden: int = 1024
    action_ffn_dim: int = 4096
    chunk_size: int = PAPER_CHUNK
    num_registers: int = 4
    action_eps: float = 1e-6
    # Understanding expert.
    und_hidden: int = 512
    und_ffn_dim: int = 2048
    vlm_hidden: int = 2048         # Qwen3-VL-2B last hidden layer width
    und_eps: float = 1e-5
    # Video geometry.
    video_height: int = PAPER_VIDEO_HEIGHT
    video_width: int = PAPER_VIDEO_WIDTH
    num_future_frames: int = PAPER_VIDEO_FRAMES
    vae_spatial: int = 16          # Wan 2.2 VAE: 16x spatial, 4x temporal compression
    vae_temporal: int = 4
    # Frozen encoders: kind + constructor arguments (see encoders.py).
    vae_kind: str = "wan"          # one of VAE_KINDS (see encoders.build_encoders)
    vae_config: dict[str, Any] = field(default_factory=dict)
    # vae_kind "learned": folder of the trained autoencoder (motus/video_ae.py: config.json with its
    # geometry and latent statistics + model.safetensors); relative = against the package share folder.
    vae_path: str = ""
    vlm_kind: str = "qwen3_vl"
    vlm_config: dict[str, Any] = field(default_factory=dict)
    vlm_image_size: tuple[int, int] = (384, 320)   # (height, width) the VLM sees, multiple of 32
    text_kind: str = "umt5"
    text_config: dict[str, Any] = field(default_factory=dict)
    text_max_len: int = 64
    # Tokenizers: "byte" = ByteTokenizer stand-in (no files); "files" = the Qwen3-VL processor / umT5
    # tokenizer saved in the checkpoint folder (tokenization.VLM_PROCESSOR_DIR / TEXT_TOKENIZER_DIR).
    vlm_tokenizer: str = "byte"
    text_tokenizer: str = "byte"
    # Flow matching at inference (the training objective's numbers: motus.flow.LossSettings).
    num_inference_steps: int = PAPER_INFERENCE_STEPS
    sampler_shift: float = 1.0
    # conventions.video_target "residual": future latents enter the video expert as
    # (latent - condition latent) * video_residual_scale (about 1 / the residuals' std).
    video_residual_scale: float = 1.0
    # How the future video frames read the action chunk (VIDEO_ACTION_CONDITIONING). "attention":
    # only through the shared self-attention (official Motus). "frame": besides that, every future
    # latent frame's tokens add an embedding of the action rows of that frame's time span (and of
    # t_action) to their time embedding, so each layer's adaLN sees them: a direct path, tried where
    # the attention path stayed unused (models/sim_world_model: in 1 600 CPU steps it did not help).
    video_action_conditioning: str = "attention"
    # Official-vs-project choices (see Conventions); presets keep the project's.
    conventions: Conventions = field(default_factory=Conventions)

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.vlm_image_size = tuple(int(p) for p in self.vlm_image_size)
        self.conventions = Conventions.from_dict(self.conventions)
        self.validate()

    @property
    def timestep_sampling(self) -> str:
        """Training timestep distribution (kept as a name for older code; see Conventions)."""
        return self.conventions.timestep_sampling

    # Derived sizes -------------------------------------------------------------------------
    @property
    def attn_dim(self) -> int:
        """Width of the shared head space (= video expert width)."""
        return self.num_heads * self.head_dim

    @property
    def latent_frames(self) -> int:
        """Latent frames: 1 condition frame + future frames / temporal compression."""
        return 1 + self.num_future_frames // self.vae_temporal

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.video_height // self.vae_spatial, self.video_width // self.vae_spatial

    @property
    def video_tokens_per_frame(self) -> int:
        h, w = self.latent_size
        return (h // self.patch_size[1]) * (w // self.patch_size[2])

    def validate(self) -> None:
        """Raise ValueError naming the field when sizes are inconsistent."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"MotusConfig '{self.name}': {msg}")
        need(self.num_layers >= 1, f"num_layers={self.num_layers}, expected >= 1")
        need(self.head_dim % 2 == 0 and self.head_dim >= 6, f"head_dim={self.head_dim}, expected even and >= 6 (3D RoPE)")
        unit = self.vae_spatial * self.patch_size[1]
        need(self.video_height % unit == 0 and self.video_width % unit == 0,
             f"video size {self.video_height}x{self.video_width}, expected multiples of {unit}")
        need(self.num_future_frames % self.vae_temporal == 0,
             f"num_future_frames={self.num_future_frames}, expected a multiple of vae_temporal={self.vae_temporal}")
        need(self.chunk_size >= 1, f"chunk_size={self.chunk_size}, expected >= 1")
        need(self.video_action_conditioning in VIDEO_ACTION_CONDITIONING,
             f"video_action_conditioning='{self.video_action_conditioning}', expected one of: "
             f"{', '.join(VIDEO_ACTION_CONDITIONING)}")
        future = self.latent_frames - 1
        need(self.video_action_conditioning != "frame" or self.patch_size[0] == 1,
             f"patch_size={list(self.patch_size)}, expected a temporal patch of 1 "
             "(video_action_conditioning 'frame' gives each latent frame's tokens their own actions)")
        need(self.video_action_conditioning != "frame" or (future >= 1 and self.chunk_size % future == 0),
             f"chunk_size={self.chunk_size}, expected a multiple of the {future} future latent frames "
             "(video_action_conditioning 'frame' splits the chunk evenly over them)")
        need(self.video_residual_scale > 0, f"video_residual_scale={self.video_residual_scale}, expected > 0")
        need(self.vae_kind in VAE_KINDS, f"vae_kind='{self.vae_kind}', expected one of: {', '.join(VAE_KINDS)}")
        need(self.vae_kind != "learned" or bool(self.vae_path),
             "vae_kind='learned' needs vae_path (the folder `motus-ros train-vae` wrote, e.g. models/sim_video_ae)")
        for name in ("vlm_tokenizer", "text_tokenizer"):
            need(getattr(self, name) in TOKENIZER_SOURCES,
                 f"{name}='{getattr(self, name)}', expected one of: {', '.join(TOKENIZER_SOURCES)}")
        need(self.vlm_image_size[0] % 32 == 0 and self.vlm_image_size[1] % 32 == 0,
             f"vlm_image_size={self.vlm_image_size}, expected multiples of 32 (patch 16 x merge 2)")

    # Serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["vlm_image_size"] = list(self.vlm_image_size)
        d["conventions"] = self.conventions.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MotusConfig":
        """A config from its dict. No 'conventions' (files older than the field) = the project's;
        a top-level 'timestep_sampling' (the field's old place) sets conventions.timestep_sampling;
        the training-objective fields of older files (LOSS_FIELDS) are dropped: read them with
        legacy_loss_fields into a motus.flow.LossSettings."""
        data = _fold_legacy(dict(data))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"MotusConfig: unknown fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "MotusConfig":
        """dataclasses.replace; also takes the legacy `timestep_sampling` and a partial `conventions` dict."""
        _refuse_loss_fields(changes)
        changes = self._merge_conventions(changes)
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: dict[str, Any]) -> "MotusConfig":
        """A copy with fields changed, e.g. from `train --set`; `conventions` may be a partial dict
        (the other conventions are kept) and `conventions.NAME` keys change one convention.
        Training-objective names (LOSS_FIELDS) are refused: they are motus.flow.LossSettings fields."""
        _refuse_loss_fields(overrides)
        return MotusConfig.from_dict({**self.to_dict(), **self._merge_conventions(dict(overrides))})

    def _merge_conventions(self, changes: dict[str, Any]) -> dict[str, Any]:
        changes = dict(changes)
        conv = changes.pop("conventions", None)
        if isinstance(conv, Conventions):
            conv = conv.to_dict()
        merged = {**self.conventions.to_dict(), **(conv or {})}
        if "timestep_sampling" in changes:
            merged["timestep_sampling"] = changes.pop("timestep_sampling")
        for key in [k for k in changes if k.startswith("conventions.")]:
            merged[key.split(".", 1)[1]] = changes.pop(key)
        if merged != self.conventions.to_dict() or conv is not None:
            changes["conventions"] = Conventions.from_dict(merged)
        return changes


def legacy_loss_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The training-objective fields (LOSS_FIELDS) an older config dict still holds ({} for newer ones)."""
    return {k: data[k] for k in LOSS_FIELDS if k in data}


def _refuse_loss_fields(changes: dict[str, Any]) -> None:
    moved = sorted(set(changes) & set(LOSS_FIELDS))
    if moved:
        raise ValueError(f"MotusConfig: {', '.join(moved)} are training settings, not model fields: set them in "
                         "motus.flow.LossSettings (TrainConfig.loss, or `motus-ros train --set NAME=VALUE`)")


def _fold_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """Old top-level 'timestep_sampling' -> conventions.timestep_sampling (the top-level key wins);
    old training-objective fields (LOSS_FIELDS) are dropped."""
    for key in LOSS_FIELDS:
        data.pop(key, None)
    if "timestep_sampling" in data:
        conv = data.get("conventions")
        conv = conv.to_dict() if isinstance(conv, Conventions) else dict(conv or {})
        conv["timestep_sampling"] = data.pop("timestep_sampling")
        data["conventions"] = conv
    return data


# Encoder configurations ------------------------------------------------------------------------
def _tiny_vlm(hidden: int) -> dict[str, Any]:
    """A random Qwen3-VL with the real architecture at toy width (tests, CPU)."""
    return {
        "text_config": {
            "vocab_size": 512, "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": hidden // 2, "max_position_embeddings": 2048,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
        },
        "vision_config": {
            "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
            "out_hidden_size": hidden, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "num_position_embeddings": 64, "deepstack_visual_indexes": [0],
        },
        "image_token_id": 500, "video_token_id": 501, "vision_start_token_id": 502, "vision_end_token_id": 503,
    }


def _tiny_text(d_model: int) -> dict[str, Any]:
    return {"vocab_size": 512, "d_model": d_model, "d_kv": 8, "d_ff": 2 * d_model, "num_layers": 1,
            "num_heads": 2, "relative_attention_num_buckets": 8}


def _tiny_wan_vae() -> dict[str, Any]:
    """AutoencoderKLWan with the Wan 2.2 layout (residual, patch 2, 48 channels) at toy width."""
    return {"base_dim": 8, "decoder_base_dim": 8, "z_dim": 48, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
            "temperal_downsample": [False, True, True], "attn_scales": [], "is_residual": True,
            "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
            "scale_factor_temporal": 4, "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48}


# Public configs of the pretrained backbones (Hugging Face config.json of Qwen/Qwen3-VL-2B-Instruct,
# google/umt5-xxl and Wan-AI/Wan2.2-TI2V-5B-Diffusers/vae). Used to build them on the meta device.
PAPER_VLM = {
    "text_config": {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144,
        "tie_word_embeddings": True,
        # rope_theta inside rope_scaling: transformers 5 ignores a top-level one next to rope_scaling.
        "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True,
                         "rope_theta": QWEN3_VL_ROPE_THETA},
    },
    "vision_config": {
        "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17],
    },
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "tie_word_embeddings": True,
}
PAPER_TEXT = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
              "num_heads": 64, "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu"}
# Per-channel statistics the Wan 2.2 VAE normalises its 48 latent channels with (latent = (mu - mean)
# / std). Wan2.2_VAE.pth does not hold them: they are fixed in the Wan 2.2 code and in the public
# vae/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744]
PAPER_VAE = {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
             "temperal_downsample": [False, True, True], "attn_scales": [], "is_residual": True,
             "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
             "scale_factor_temporal": 4, "latents_mean": WAN22_LATENTS_MEAN, "latents_std": WAN22_LATENTS_STD}


def vlm_config_with_rope_theta(vlm_config: dict[str, Any], default: float = QWEN3_VL_ROPE_THETA) -> dict[str, Any]:
    """A Qwen3-VL config dict whose text rope theta is explicit and where transformers 5 reads it.

    transformers 4.x read `text_config.rope_theta` (default 5e6); 5.x reads it from
    `rope_scaling` / `rope_parameters` (default 5e5) and ignores a top-level value beside them. An
    unset theta is made `default` (Qwen3-VL's own), so the same file means the same model in both.
    """
    import copy

    out = copy.deepcopy(vlm_config)
    text = out.setdefault("text_config", {})
    top = text.pop("rope_theta", None)
    key = "rope_parameters" if "rope_parameters" in text else "rope_scaling"
    rope = dict(text.get(key) or {"rope_type": "default"})
    if top is not None:
        rope["rope_theta"] = float(top)
    rope.setdefault("rope_theta", float(default))
    text[key] = rope
    return out


def preset(name: str) -> MotusConfig:
    """Build a named preset: tiny (tests, seconds on a CPU), small (trainable), paper (arXiv 2512.13030)."""
    if name == "tiny":
        return MotusConfig(
            name="tiny", num_layers=2, num_heads=2, head_dim=16, video_ffn_dim=64, text_dim=32,
            action_hidden=32, action_ffn_dim=64, und_hidden=32, und_ffn_dim=64, vlm_hidden=32,
            video_height=192, video_width=160, vae_kind="wan", vae_config=_tiny_wan_vae(),
            vlm_config=_tiny_vlm(32), vlm_image_size=(64, 64), text_config=_tiny_text(32), text_max_len=32,
        )
    if name == "small":
        return MotusConfig(
            name="small", num_layers=6, num_heads=4, head_dim=32, video_ffn_dim=512, text_dim=64,
            action_hidden=128, action_ffn_dim=512, und_hidden=64, und_ffn_dim=256, vlm_hidden=64,
            vae_kind="patch", vae_config={}, vlm_config=_tiny_vlm(64), vlm_image_size=(96, 96),
            text_config=_tiny_text(64), text_max_len=32,
        )
    if name == "paper":
        return MotusConfig(name="paper", vae_kind="wan", vae_config=dict(PAPER_VAE), vlm_config=dict(PAPER_VLM),
                           text_config=dict(PAPER_TEXT), text_max_len=512)
    raise ValueError(f"unknown preset '{name}'; expected one of: {', '.join(PRESETS)}")


PRESETS = ("tiny", "small", "paper")
