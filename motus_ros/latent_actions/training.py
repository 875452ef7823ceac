"""Training of the flow autoencoder (train_flow_ae) and of the latent-action VAE (train_latent_vae) on
converted episodes, resumable like `motus-ros train-vae` (training/vae_trainer.py): the same
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

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from motus_ros.training.trainer import LAST, STATE_FILE, lr_lambda, resolve_resume
from motus_ros.training.vae_trainer import hardware

from . import pairs as pr
from ._folders import LatentActionError, fingerprint
from .flow import flow_to_rgb
from .flow_ae import (FlowAE, FlowAEConfig, evaluate_ae, flow_report, latent_statistics, load_flow_ae,
                      reconstruction_loss, save_flow_ae)
from .latent_vae import (STATS_FILE, LatentActionVAE, LatentVAEConfig, action_statistics, latent_vae_loss,
                         load_latent_vae, save_latent_vae, stats_document)

METRICS_FILE = "metrics.json"
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


class _Run:
    """The loop both trainings share; subclasses build the model, read the data and define a step."""

    name = ""
    model: torch.nn.Module

    def __init__(self, cfg: RunLimits, log):
        self.started = time.perf_counter()
        self.log = log
        self.out = Path(cfg.out)
        self.resume_dir = resolve_resume(cfg.resume) if cfg.resume else None
        state = torch.load(self.resume_dir / STATE_FILE, map_location="cpu", weights_only=True) \
            if self.resume_dir else None
        if state is not None:
            cfg = self.keep_architecture(cfg, json.loads(state["config"]))
        check_limits(cfg)                                    # before any data is read
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.build(self.resume_dir if state is not None else None)
        self.load_data()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.train_s = 0, 0.0
        self.history: dict = {"steps": [], "evaluations": []}
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.train_s = int(state["step"]), float(state["train_s"])
            self.gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            self.history = json.loads(state["history"])
            self.log(f"[{self.name}] resumed from {self.resume_dir} at step {self.step}")
        self.history.setdefault("commands", []).append(cfg.command)   # every call of a resumed run
        for group in self.optimizer.param_groups:          # the schedule follows this call's --lr and --steps
            group["initial_lr"] = cfg.lr
        schedule = lr_lambda(min(cfg.warmup_steps, max(1, cfg.steps // 10)), max(1, cfg.steps), cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule, last_epoch=self.step - 1)
        self.deadline = self.started + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
        self.stop_reason = ""
        if state is None:
            self.evaluate()                                  # step 0: the untrained model's numbers

    # Subclass hooks -------------------------------------------------------------------------------
    def keep_architecture(self, cfg, saved: dict):
        """`cfg` with the architecture of a resumed run's saved config (run-length settings are cfg's)."""
        raise NotImplementedError

    def build(self, checkpoint: Path | None) -> None:
        """self.model: fresh, or the weights of a checkpoint folder."""
        raise NotImplementedError

    def load_data(self) -> None:
        """Training and held-out data in memory, and self.data_info for the record."""
        raise NotImplementedError

    def losses(self) -> dict[str, torch.Tensor]:
        """The loss of one sampled batch ("loss") and its parts."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """Held-out numbers at the current step, appended to the history."""
        raise NotImplementedError

    def save_weights(self, folder: Path, training: dict) -> None:
        """The model folder (with `training` as its record)."""
        raise NotImplementedError

    # Loop -----------------------------------------------------------------------------------------
    def loop(self) -> None:
        """Steps until `steps` or the deadline; checkpoint and evaluation every save_every steps."""
        from tqdm import tqdm

        cfg = self.cfg
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=min(self.step, cfg.steps), desc=self.name, file=sys.stderr,
                   disable=not cfg.progress)
        while self.step < cfg.steps:
            if self.deadline and time.perf_counter() > self.deadline:
                self.stop_reason = "max_minutes"
                break
            t0 = time.perf_counter()
            losses = self.losses()
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.train_s += time.perf_counter() - t0
            record = {"step": self.step, **{k: round(float(v.detach()), 6) for k, v in losses.items()},
                      "lr": self.scheduler.get_last_lr()[0]}
            self.history["steps"].append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.evaluate()
                self.save_state()
        bar.close()
        self.stop_reason = self.stop_reason or "steps"

    def save_state(self) -> None:
        folder = self.out / LAST
        self.save_weights(folder, {"note": "training checkpoint"})
        tmp = folder / (STATE_FILE + ".tmp")
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step, "train_s": self.train_s,
                    "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": json.dumps(self.history), "config": json.dumps(asdict(self.cfg))}, tmp)
        os.replace(tmp, folder / STATE_FILE)

    def record(self, extra: dict) -> dict:
        cfg = self.cfg
        steps = self.history["steps"]
        return {"command": cfg.command, "commands": self.history["commands"], "data": self.data_info,
                "hardware": hardware(), "steps": self.step, "stop_reason": self.stop_reason,
                "train_time_s": round(self.train_s, 1),
                "wall_time_s_this_call": round(time.perf_counter() - self.started, 1),
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "first_train_loss": steps[0]["loss"] if steps else None,
                "final_train_loss_last_50_steps": round(float(np.mean([h["loss"] for h in steps[-50:]])), 6)
                if steps else None,
                **extra, "config": asdict(cfg)}

    def write_metrics(self) -> None:
        (self.out / METRICS_FILE).write_text(json.dumps(self.history) + "\n")

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

    def evaluate(self) -> dict:
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
        report = self.evaluate() if len(self.eval_flow) else {}
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

    def keep_architecture(self, cfg: VAETrainConfig, saved: dict) -> VAETrainConfig:
        keep = ("latent_dim", "token_dim", "hidden", "layers")
        return replace(cfg, **{k: saved[k] for k in keep})

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
    def evaluate(self, flow_epe: bool = False) -> dict:
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
        report = self.evaluate(flow_epe=True)
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
