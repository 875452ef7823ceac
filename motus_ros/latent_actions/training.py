"""Training of the flow autoencoder (train_flow_ae) and of the latent-action VAE (train_latent_vae) on
converted episodes, in the resumable loop of `motus-ros train-vae` (training/step_loop.py): the same
checkpoint-last/ + training_state.pt, AdamW with linear warm-up and cosine decay, `steps` and
`max_minutes` limits, metrics.json, and the training record under "training" in config.json.

Flow comes from the per-episode cache (flow.episode_flow), computed with the autoencoder's
FlowSettings. Train split trains; the val split is the held-out report (the train split stands in,
and the record says so, when a dataset has no val episode).

Outputs in `out/`:
  config.json, model.safetensors   the model and the training record ("training")
  latent_action_stats.json         (VAE only) min/max/mean/std of the latent actions of the training pairs
  checkpoint-last/                 weights + training_state.pt: `--resume`
  metrics.json                     loss per step, evaluations
  reconstruction.png               (autoencoder only) held-out flow images above their reconstructions
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from motus_ros.training.step_loop import StepLoop

from . import pairs as pr
from ._folders import LatentActionError, fingerprint
from .flow import flow_to_rgb
from .flow_ae import (FlowAE, FlowAEConfig, evaluate_ae, flow_report, latent_statistics, load_flow_ae,
                      reconstruction_loss, save_flow_ae)
from .latent_vae import (STATS_FILE, LatentActionVAE, LatentVAEConfig, action_statistics, latent_vae_loss,
                         load_latent_vae, save_latent_vae, stats_document)

PREVIEW_FILE = "reconstruction.png"
PREVIEW_PAIRS = 4
STATS_IMAGES = 2048       # training flow images the autoencoder's latent statistics are measured on


@dataclass
class RunLimits:
    """Settings every training here shares (the run's length, schedule and bookkeeping)."""

    steps: int = 2000                 # total optimizer steps (a resumed run continues to it)
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    resume: str = ""
    save_every: int = 200             # checkpoint-last and a held-out evaluation every N steps
    max_minutes: float = 0.0          # 0 = no wall-clock cap; else stop (and save) after this long
    val_pairs: int = 128              # evenly spaced held-out pairs evaluated (0 = all)
    command: str = ""                 # recorded in the training record
    progress: bool = True


@dataclass
class AETrainConfig(RunLimits):
    """train_flow_ae: the dataset, the output folder and the autoencoder's configuration."""

    data: str = ""
    out: str = ""
    model: FlowAEConfig = field(default_factory=FlowAEConfig)   # a resumed run keeps its checkpoint's


@dataclass
class VAETrainConfig(RunLimits):
    """train_latent_vae: the dataset, the frozen autoencoder, the VAE's shape and its loss weights."""

    data: str = ""
    ae: str = ""                      # the flow autoencoder folder (frozen)
    out: str = ""
    batch_size: int = 64
    latent_dim: int = 14
    token_dim: int = 32
    hidden: int = 256
    layers: int = 2
    beta: float = 1e-3                # weight of the KL term
    align_weight: float = 1.0         # weight of the action-alignment MSE
    labeled_fraction: float = 0.1     # share of training pairs whose real action is used


def check_limits(cfg: RunLimits) -> None:
    """LatentActionError naming the field for values the loop cannot use."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise LatentActionError(msg)
    need(cfg.batch_size >= 1, f"batch_size: got {cfg.batch_size}, expected >= 1")
    need(cfg.steps >= 0, f"steps: got {cfg.steps}, expected >= 0")
    need(cfg.lr > 0, f"lr: got {cfg.lr}, expected > 0")
    need(cfg.save_every >= 1, f"save_every: got {cfg.save_every}, expected >= 1")
    need(cfg.max_minutes >= 0, f"max_minutes: got {cfg.max_minutes}, expected >= 0")
    need(cfg.val_pairs >= 0, f"val_pairs: got {cfg.val_pairs}, expected >= 0 (0 = all)")
    if isinstance(cfg, VAETrainConfig):
        need(cfg.beta >= 0, f"beta: got {cfg.beta}, expected >= 0")
        need(cfg.align_weight >= 0, f"align_weight: got {cfg.align_weight}, expected >= 0")
        need(0.0 <= cfg.labeled_fraction <= 1.0,
             f"labeled_fraction: got {cfg.labeled_fraction}, expected a number in [0, 1]")
        aligning = cfg.align_weight > 0 and cfg.labeled_fraction > 0
        need(not aligning or cfg.latent_dim == 14,
             f"latent_dim: got {cfg.latent_dim}, expected 14 (the action size) when align_weight > 0 and "
             "labeled_fraction > 0")


def _data_info(dataset, train_ids, val_ids) -> dict:
    return {"root": str(Path(dataset.root).resolve()), "episodes": len(dataset.episodes),
            "train_episodes": len(train_ids), "val_episodes": len(val_ids),
            "video_rate_hz": dataset.video_rate_hz, "control_rate_hz": dataset.control_rate_hz}


class _Run(StepLoop):
    """What both trainings here share beyond the loop (training/step_loop.py): the config check,
    batches drawn with the run's generator, the loss numbers in the record."""

    def check(self, cfg: RunLimits) -> None:
        check_limits(cfg)

    def record(self, extra: dict) -> dict:
        steps = self.history["steps"]
        return super().record({"parameters": sum(p.numel() for p in self.model.parameters()),
                               "first_train_loss": steps[0]["loss"] if steps else None,
                               "final_train_loss_last_50_steps": self.final_train_loss(), **extra})

    def batch_indices(self, n: int) -> torch.Tensor:
        return torch.randint(n, (self.cfg.batch_size,), generator=self.gen)


# Flow autoencoder -------------------------------------------------------------------------------------
class _AERun(_Run):
    name = "train-ae"

    def keep_architecture(self, cfg: AETrainConfig, saved: dict) -> AETrainConfig:
        return replace(cfg, model=FlowAEConfig.from_dict(saved["model"]))

    def build(self, checkpoint: Path | None) -> None:
        if checkpoint is not None:
            self.model = load_flow_ae(checkpoint.resolve()).requires_grad_(True)
        else:
            self.model = FlowAE(self.cfg.model)
        self.ae: FlowAE = self.model

    def load_data(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        data = pr.load(cfg.data)
        train_ids, val_ids = pr.splits(data)
        counts: dict = {}
        settings, max_flow = cfg.model.flow, cfg.model.max_flow
        images = [flow_to_rgb(f, max_flow) for _, f in
                  pr.episode_flows(data, train_ids, settings, self.log, cfg.progress, counts)]
        self.train_images = np.concatenate(images) if images else np.zeros((0, settings.height, settings.width, 3))
        if len(self.train_images) == 0:
            raise LatentActionError(f"dataset {cfg.data}: the train split has no frame pair (episodes of one frame)")
        eval_ids, self.eval_split = (val_ids, "val") if val_ids else (train_ids, "train (no val split)")
        flows = [f for _, f in pr.episode_flows(data, eval_ids, settings, self.log, False, counts)]
        flows = np.concatenate(flows) if flows else np.zeros((0, settings.height, settings.width, 2), np.float32)
        self.eval_flow = flows[pr.evenly(len(flows), cfg.val_pairs)]
        self.data_info = {**_data_info(data, train_ids, val_ids), "train_pairs": int(len(self.train_images)),
                          "eval_pairs": int(len(self.eval_flow)), "eval_split": self.eval_split,
                          "flow_cache": {k: round(v, 1) if isinstance(v, float) else v for k, v in counts.items()}}
        self.log(f"[train-ae] flow images {settings.height}x{settings.width}: {len(self.train_images)} train pairs, "
                 f"{len(self.eval_flow)} {self.eval_split} pairs evaluated [{time.perf_counter() - t0:.1f} s]")

    def losses(self) -> dict[str, torch.Tensor]:
        idx = self.batch_indices(len(self.train_images)).numpy()
        return reconstruction_loss(self.ae, self.ae.rgb_u8_to_images(self.train_images[idx]))

    def evaluate_heldout(self) -> dict:
        if len(self.eval_flow) == 0:
            return {}
        res = {"step": self.step, **evaluate_ae(self.ae, self.eval_flow)}
        self.history["evaluations"].append(res)
        self.log(f"[train-ae] step {self.step}: {self.eval_split} EPE {res['epe_px']} px (zero flow "
                 f"{res['zero_flow_epe_px']}), on moving pixels {res['epe_moving_px']} px (zero flow "
                 f"{res['zero_flow_epe_moving_px']})")
        return res

    def save_weights(self, folder: Path, training: dict) -> None:
        save_flow_ae(self.ae, folder, training)

    def finish(self) -> dict:
        self.save_state()
        self.ae.eval()
        t0 = time.perf_counter()
        sample = self.train_images[pr.evenly(len(self.train_images), STATS_IMAGES)]
        mean, std = latent_statistics(self.ae, sample)
        self.ae.latents_mean.copy_(mean)
        self.ae.latents_std.copy_(std)
        report = self.evaluate_heldout() if len(self.eval_flow) else {}
        m = self.cfg.model
        record = self.record({
            "latent_statistics": {"images": int(len(sample)), "seconds": round(time.perf_counter() - t0, 1)},
            "reconstruction": {"split": self.eval_split, **{k: v for k, v in report.items() if k != "step"}},
            "metric_note": f"endpoint error (EPE) in pixels of the {m.flow.height}x{m.flow.width} flow image between "
                           "the decoded flow (decoder output -> rgb_to_flow) and the input flow; moving = input "
                           "flow >= 1 px; colour_code = flow -> RGB -> flow alone (saturation at max_flow), "
                           "zero_flow = predicting no motion",
            "architecture_note": f"AutoencoderDC stages {list(m.block_out_channels)} ({list(m.block_types)}), "
                                 f"latent {m.latent_tokens} tokens ({m.grid[0]}x{m.grid[1]}) x {m.latent_channels} "
                                 "channels"})
        save_flow_ae(self.ae, self.out, record)
        self.write_metrics()
        if len(self.eval_flow):
            preview = self.eval_flow[pr.evenly(len(self.eval_flow), PREVIEW_PAIRS)]
            save_preview(self.ae, preview, self.out / PREVIEW_FILE)
        return record


def save_preview(ae: FlowAE, flow: np.ndarray, path: Path) -> Path:
    """Flow images (top row) over their reconstructions (bottom row), one PNG."""
    import cv2

    with torch.no_grad():
        decoded = ae.images_to_flow(ae.decode(ae.encode(ae.images(flow))))
    top = np.concatenate(list(flow_to_rgb(flow, ae.config.max_flow)), 1)
    bottom = np.concatenate(list(flow_to_rgb(decoded, ae.config.max_flow)), 1)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([top, bottom], 0), cv2.COLOR_RGB2BGR))
    return path


def train_flow_ae(cfg: AETrainConfig, log=print) -> dict:
    """Run (or resume) a flow-autoencoder training; returns the training record (also in out/config.json)."""
    run = _AERun(cfg, log)
    run.loop()
    return run.finish()


# Latent-action VAE ------------------------------------------------------------------------------------
def ae_identity(folder: str | Path, ae: FlowAE) -> dict:
    """How a VAE names its flow autoencoder: where it was, and its weights' fingerprint."""
    c = ae.config
    return {"path": str(Path(folder).resolve()), "fingerprint": fingerprint(folder),
            "latent_tokens": c.latent_tokens, "latent_channels": c.latent_channels,
            "flow": c.flow.to_dict(), "max_flow": c.max_flow}


def encode_pairs(ae: FlowAE, dataset, episode_ids: list[int], log, progress: bool, counts: dict,
                 keep_flow_rows: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
    """([N, T, C] normalised tokens of every pair of the episodes, the flow of rows `keep_flow_rows`)."""
    tokens, flows = [], []
    for _, flow in pr.episode_flows(dataset, episode_ids, ae.config.flow, log, progress, counts):
        tokens.append(ae.encode_flow(flow))
        if keep_flow_rows is not None:
            flows.append(flow)
    c = ae.config
    tok = torch.cat(tokens) if tokens else torch.zeros(0, c.latent_tokens, c.latent_channels)
    if keep_flow_rows is None:
        return tok, None
    flow = np.concatenate(flows) if flows else np.zeros((0, c.flow.height, c.flow.width, 2), np.float32)
    return tok, flow[keep_flow_rows]


class _VAERun(_Run):
    name = "train-vae"
    architecture = ("latent_dim", "token_dim", "hidden", "layers")

    def build(self, checkpoint: Path | None) -> None:
        cfg = self.cfg
        self.ae = load_flow_ae(cfg.ae, "--ae")
        self.ae_info = ae_identity(cfg.ae, self.ae)
        if checkpoint is not None:
            self.model, saved = load_latent_vae(checkpoint.resolve())
            self.model.requires_grad_(True)
            if saved["flow_autoencoder"]["fingerprint"] != self.ae_info["fingerprint"]:
                raise LatentActionError(f"--ae {cfg.ae}: not the flow autoencoder the resumed run was trained with "
                                        f"({saved['flow_autoencoder']['path']})")
        else:
            c = self.ae.config
            self.model = LatentActionVAE(LatentVAEConfig(c.latent_tokens, c.latent_channels, cfg.latent_dim,
                                                         cfg.token_dim, cfg.hidden, cfg.layers))
        self.vae: LatentActionVAE = self.model

    def load_data(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        data = pr.load_with_actions(cfg.data)
        train_ids, val_ids = pr.splits(data)
        counts: dict = {}
        self.train_pairs = pr.collect_pairs(data, train_ids)
        if len(self.train_pairs) == 0:
            raise LatentActionError(f"dataset {cfg.data}: the train split has no frame pair (episodes of one frame)")
        if cfg.align_weight > 0 and cfg.labeled_fraction > 0 and not self.train_pairs.has_action.any():
            raise LatentActionError(f"labeled_fraction: got {cfg.labeled_fraction}, but no train-split episode of "
                                    f"{cfg.data} has joint data to align to; expected 0 (or align_weight 0) for "
                                    "a label-free dataset")
        self.train_tokens, _ = encode_pairs(self.ae, data, train_ids, self.log, cfg.progress, counts)
        self.train_actions = torch.from_numpy(self.train_pairs.actions)       # nan rows: no joint data
        self.labeled = torch.from_numpy(pr.labeled_mask(self.train_pairs.has_action, cfg.labeled_fraction,
                                                        cfg.seed))
        eval_ids, self.eval_split = (val_ids, "val") if val_ids else (train_ids, "train (no val split)")
        eval_pairs = pr.collect_pairs(data, eval_ids)
        rows = pr.evenly(len(eval_pairs), cfg.val_pairs)
        tokens, self.eval_flow = encode_pairs(self.ae, data, eval_ids, self.log, False, counts, rows)
        self.eval_tokens, self.eval_actions = tokens[rows], torch.from_numpy(eval_pairs.actions[rows])
        self.val = (tokens, eval_pairs) if val_ids else None            # every val pair, for the probe
        self.data_info = {**_data_info(data, train_ids, val_ids), "train_pairs": len(self.train_pairs),
                          "labeled_pairs": int(self.labeled.sum()), "eval_pairs": int(len(rows)),
                          "eval_split": self.eval_split,
                          "flow_cache": {k: round(v, 1) if isinstance(v, float) else v for k, v in counts.items()}}
        self.log(f"[train-vae] {len(self.train_pairs)} train pairs ({int(self.labeled.sum())} labelled), "
                 f"{len(rows)} {self.eval_split} pairs evaluated [{time.perf_counter() - t0:.1f} s]")

    def losses(self) -> dict[str, torch.Tensor]:
        idx = self.batch_indices(len(self.train_tokens))
        return latent_vae_loss(self.vae, self.train_tokens[idx], self.train_actions[idx], self.labeled[idx],
                               self.cfg.beta, self.cfg.align_weight, self.gen)

    @torch.no_grad()
    def evaluate_heldout(self, flow_epe: bool = False) -> dict:
        if len(self.eval_tokens) == 0:
            return {}
        was_training = self.vae.training
        self.vae.eval()
        out = self.vae(self.eval_tokens)
        res = {"step": self.step, "recon_mse": round(float(torch.nn.functional.mse_loss(out["recon"],
                                                                                          self.eval_tokens)), 6)}
        known = torch.isfinite(self.eval_actions).all(1)
        if out["mean"].shape == self.eval_actions.shape and known.any():
            res["align_mse"] = round(float((out["mean"][known] - self.eval_actions[known]).pow(2).mean()), 6)
        if flow_epe:
            decoded = self.ae.decode_tokens(out["recon"])
            res["flow"] = flow_report(decoded, self.eval_flow, self.ae.config.max_flow)
            res["flow"]["autoencoder_alone_epe_px"] = evaluate_ae(self.ae, self.eval_flow)["epe_px"]
        self.vae.train(was_training)
        self.history["evaluations"].append(res)
        self.log(f"[train-vae] step {self.step}: {self.eval_split} token MSE {res['recon_mse']}"
                 + (f", alignment MSE {res['align_mse']}" if "align_mse" in res else "")
                 + (f", flow EPE {res['flow']['epe_px']} px" if flow_epe else ""))
        return res

    def save_weights(self, folder: Path, training: dict, stats: dict | None = None) -> None:
        stats = stats or stats_document(action_statistics(np.zeros((1, self.vae.config.latent_dim))),
                                        "placeholder: checkpoint without statistics")
        save_latent_vae(self.vae, folder, self.ae_info, pr.ACTION_TARGET, stats, training)

    def finish(self) -> dict:
        self.save_state()
        self.vae.eval()
        report = self.evaluate_heldout(flow_epe=True)
        latents = self.vae.latent_actions(self.train_tokens).numpy()
        stats = stats_document(action_statistics(latents),
                               f"latent actions of {len(latents)} training pairs of {self.data_info['root']}")
        probe = probe_report(self.vae, self.train_tokens, self.train_pairs, *self.val) if self.val else {}
        record = self.record({
            "labeled": {"fraction": self.cfg.labeled_fraction, "pairs": int(self.labeled.sum())},
            "evaluation": {"split": self.eval_split, **{k: v for k, v in report.items() if k != "step"}},
            "linear_probe": probe,
            "metric_note": "recon_mse: MSE of the normalised autoencoder tokens; align_mse: MSE of the latent "
                           "means against the normalised real actions of all evaluated pairs; flow: EPE in "
                           "pixels of flow decoded (frozen autoencoder) from the reconstructed tokens"})
        save_latent_vae(self.vae, self.out, self.ae_info, pr.ACTION_TARGET, stats, record)
        self.write_metrics()
        return record


def probe_report(vae: LatentActionVAE, train_tokens: torch.Tensor, train_pairs: pr.Pairs,
                 val_tokens: torch.Tensor, val_pairs: pr.Pairs) -> dict:
    """Linear probes on held-out pairs: latent actions -> the alignment target (absolute normalised
    action) and -> its change over the interval, with a 14-component PCA of the autoencoder tokens
    (an unsupervised linear compression of the same size) as the baseline."""
    tr, va = train_pairs.has_action, val_pairs.has_action          # pairs with joint data only
    if not tr.any() or not va.any():
        return {"note": "no train or no val pair with joint data: nothing to probe"}
    train_tokens, val_tokens = train_tokens[torch.from_numpy(tr)], val_tokens[torch.from_numpy(va)]
    change = lambda p, rows: p.actions[rows] - p.starts[rows]          # noqa: E731
    y = {"action": (train_pairs.actions[tr], val_pairs.actions[va]),
         "action_change": (change(train_pairs, tr), change(val_pairs, va))}
    lat_tr = vae.latent_actions(train_tokens).numpy()
    lat_va = vae.latent_actions(val_tokens).numpy()
    flat_tr, flat_va = train_tokens.flatten(1).numpy(), val_tokens.flatten(1).numpy()
    dim = min(vae.config.latent_dim, flat_tr.shape[1], max(1, len(flat_tr) - 1))
    pca_tr, pca_va = pr.pca_features(flat_tr, flat_va, dim)
    out = {}
    for name, (y_tr, y_va) in y.items():
        out[name] = {"latent_actions": pr.linear_probe(lat_tr, y_tr, lat_va, y_va),
                     f"pca{dim}_of_autoencoder_tokens": pr.linear_probe(pca_tr, y_tr, pca_va, y_va)}
    out["note"] = ("least squares with a bias on every train-split pair with joint data, R^2 on every such "
                   "val-split pair; "
                   "r2_mean over the action dimensions that vary on val, r2_pooled = 1 - total residual / total "
                   "variance")
    return out


def train_latent_vae(cfg: VAETrainConfig, log=print) -> dict:
    """Run (or resume) a latent-action VAE training; returns the training record (also in out/config.json)."""
    run = _VAERun(cfg, log)
    run.loop()
    return run.finish()


__all__ = ["AETrainConfig", "STATS_FILE", "VAETrainConfig", "ae_identity", "encode_pairs", "probe_report",
           "train_flow_ae", "train_latent_vae"]
