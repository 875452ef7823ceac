"""The resumable step loop of the autoencoder trainings: `motus-ros train-vae` (training/vae_trainer.py)
and `motus-ros latent-actions train-ae|train-vae` (latent_actions/training.py).

A run starts a model or restores one from checkpoint-last/, reads its data, then takes AdamW steps
(linear warm-up, cosine decay to min_lr_ratio at `steps`: trainer.lr_lambda) until `steps` or
`max_minutes`. Every save_every steps it evaluates on held-out data and writes checkpoint-last/
(weights + training_state.pt: optimizer, step, training seconds, RNG states, history, config), so that
`--resume` continues where it stopped; the schedule follows the resuming call's --lr and --steps.

Subclasses build the model, read the data, and define one step's losses, the held-out evaluation and
the weights folder. The config is a dataclass; the loop reads its out, resume, seed, steps, lr,
weight_decay, warmup_steps, min_lr_ratio, grad_clip, save_every, max_minutes, command and progress.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

# The same state file name and checkpoint-last folder as `motus-ros train`.
from .trainer import LAST, STATE_FILE, lr_lambda, resolve_resume

METRICS_FILE = "metrics.json"
LOSS_WINDOW = 50          # steps the final training loss is averaged over


def hardware() -> dict:
    """Where a CPU run ran: platform, versions, CPU model and thread counts (for the training record)."""
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": "cpu"}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


class StepLoop:
    """A resumable training run; a resumed run restores weights, optimizer, schedule, RNG and history."""

    name = ""                                 # log prefix and progress-bar label
    architecture: tuple[str, ...] = ()        # config fields a resumed run takes from its checkpoint
    checkpoint_note = "training checkpoint"   # the training record of checkpoint-last/
    model: torch.nn.Module

    def __init__(self, cfg, log):
        self.started = time.perf_counter()
        self.log = log
        self.out = Path(cfg.out)
        self.resume_dir = resolve_resume(cfg.resume) if cfg.resume else None
        state = torch.load(self.resume_dir / STATE_FILE, map_location="cpu", weights_only=True) \
            if self.resume_dir else None
        if state is not None:
            cfg = self.keep_architecture(cfg, json.loads(state["config"]))
        self.check(cfg)                                      # before any data is read
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.build(self.resume_dir if state is not None else None)
        self.load_data()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        groups = self.param_groups()
        self.optimizer = torch.optim.AdamW([{"params": params} for params, _ in groups], lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
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
        # The schedule follows this call's --lr and --steps (a resumed run may be given more steps).
        for group, (_, scale) in zip(self.optimizer.param_groups, groups):
            group["initial_lr"] = cfg.lr * scale
        schedule = lr_lambda(min(cfg.warmup_steps, max(1, cfg.steps // 10)), max(1, cfg.steps), cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule, last_epoch=self.step - 1)
        self.deadline = self.started + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
        self.stop_reason = ""
        if state is None:
            self.start()

    # Subclass hooks -------------------------------------------------------------------------------
    def keep_architecture(self, cfg, saved: dict):
        """`cfg` with the architecture of a resumed run's saved config (run-length settings are cfg's)."""
        return replace(cfg, **{k: saved[k] for k in self.architecture})

    def check(self, cfg) -> None:
        """An error naming the field for config values the loop cannot use."""
        raise NotImplementedError

    def build(self, checkpoint: Path | None) -> None:
        """self.model: fresh, or the weights of a checkpoint folder."""
        raise NotImplementedError

    def load_data(self) -> None:
        """Training and held-out data in memory, and self.data_info for the record."""
        raise NotImplementedError

    def param_groups(self) -> list[tuple[list[torch.nn.Parameter], float]]:
        """The optimizer's parameter groups, each with its learning rate relative to lr."""
        return [(self.params, 1.0)]

    def start(self) -> None:
        """A fresh run's step 0 (not a resumed one's): by default the untrained model's held-out numbers."""
        self.evaluate_heldout()

    def losses(self) -> dict[str, torch.Tensor]:
        """The loss of one sampled batch ("loss") and its parts."""
        raise NotImplementedError

    def evaluate_heldout(self) -> dict:
        """Held-out numbers at the current step, appended to the history and logged."""
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
                self.evaluate_heldout()
                self.save_state()
        bar.close()
        self.stop_reason = self.stop_reason or "steps"

    def save_state(self) -> None:
        """checkpoint-last/: the weights, then training_state.pt (replaced atomically)."""
        folder = self.out / LAST
        self.save_weights(folder, {"note": self.checkpoint_note})
        tmp = folder / (STATE_FILE + ".tmp")
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step, "train_s": self.train_s,
                    "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": json.dumps(self.history), "config": json.dumps(asdict(self.cfg))}, tmp)
        os.replace(tmp, folder / STATE_FILE)

    # Finish ---------------------------------------------------------------------------------------
    def final_train_loss(self) -> float | None:
        """Mean training loss of the last LOSS_WINDOW steps (None before the first step)."""
        steps = self.history["steps"]
        return round(float(np.mean([h["loss"] for h in steps[-LOSS_WINDOW:]])), 6) if steps else None

    def record(self, extra: dict) -> dict:
        """The training record: the run's bookkeeping, then `extra`, then the config."""
        cfg = self.cfg
        return {"command": cfg.command, "commands": self.history["commands"], "data": self.data_info,
                "hardware": hardware(), "steps": self.step, "stop_reason": self.stop_reason,
                "train_time_s": round(self.train_s, 1),
                "wall_time_s_this_call": round(time.perf_counter() - self.started, 1),
                **extra, "config": asdict(cfg)}

    def write_metrics(self) -> None:
        """metrics.json: the loss of every step and every evaluation, and the command of every call."""
        (self.out / METRICS_FILE).write_text(json.dumps(self.history) + "\n")


__all__ = ["LAST", "METRICS_FILE", "STATE_FILE", "StepLoop", "hardware"]
