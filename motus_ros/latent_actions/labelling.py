"""Latent actions for every frame pair of a converted dataset (label_dataset: the sidecar files of the
package docstring) and the held-out report of a trained pair of models (report)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from motus_ros.data.episode import write_json_atomic

from . import pairs as pr
from ._folders import LatentActionError, fingerprint
from .flow_ae import FlowAE, evaluate_ae, flow_report, load_flow_ae
from .latent_vae import STATS_FILE, LatentActionVAE, action_statistics, load_latent_vae, stats_document
from .training import encode_pairs, probe_report

SIDECAR_FILE = "latent_actions.npz"
DATASET_STATS_FILE = STATS_FILE              # latent_action_stats.json in the dataset folder
RATE_TOLERANCE = 1e-6


def open_models(model: str | Path, ae: str | Path | None = None) -> tuple[LatentActionVAE, dict, FlowAE, Path]:
    """(VAE, its config.json, its flow autoencoder, the autoencoder's folder). `ae` defaults to the
    folder the VAE was trained with; either way its weights must be the ones the VAE was trained on."""
    vae, info = load_latent_vae(model, "--model")
    trained_with = info["flow_autoencoder"]
    folder = Path(ae) if ae else Path(trained_with["path"])
    if not ae and not folder.is_dir():
        raise LatentActionError(f"--model {model}: its flow autoencoder {folder} is gone; pass --ae DIR "
                                "(the autoencoder it was trained with)")
    flow_ae = load_flow_ae(folder, "--ae" if ae else "flow autoencoder")
    if fingerprint(folder) != trained_with["fingerprint"]:
        raise LatentActionError(f"--ae {folder}: not the flow autoencoder --model {model} was trained with "
                                f"(weights fingerprint {fingerprint(folder)[:12]}, expected "
                                f"{trained_with['fingerprint'][:12]} of {trained_with['path']})")
    return vae, info, flow_ae, folder


def _check_rate(dataset, info: dict, model) -> None:
    trained = info.get("training", {}).get("data", {}).get("video_rate_hz")
    if trained and abs(dataset.video_rate_hz - trained) > RATE_TOLERANCE * trained:
        raise LatentActionError(f"dataset {dataset.root}: video_rate_hz {dataset.video_rate_hz:g}, expected "
                                f"{trained:g} (the frame rate --model {model} was trained on: flow spans 1/rate s)")


def write_sidecar(path: Path, latent_actions: np.ndarray, frame_steps: np.ndarray) -> None:
    """latent_actions.npz, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, latent_actions=latent_actions.astype(np.float32), frame_steps=frame_steps.astype(np.int64))
    os.replace(tmp, path)


def label_dataset(data: str | Path, model: str | Path, ae: str | Path | None = None,
                  log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Write episodes/<name>/latent_actions.npz for every episode and latent_action_stats.json (over
    the train split; every episode when there is none) into the dataset folder; returns a summary."""
    t0 = time.perf_counter()
    vae, info, flow_ae, ae_folder = open_models(model, ae)
    dataset = pr.load(data)
    _check_rate(dataset, info, model)
    counts: dict = {}
    ids = list(range(len(dataset.episodes)))
    train = set(dataset.split("train")) or set(ids)
    stats_rows, pairs = [], 0
    for i, flow in pr.episode_flows(dataset, ids, flow_ae.config.flow, log, progress, counts):
        episode = dataset.episodes[i]
        latents = vae.latent_actions(flow_ae.encode_flow(flow)).numpy().astype(np.float32)   # (F-1, D)
        write_sidecar(Path(episode.path).parent / SIDECAR_FILE, latents, episode.frame_steps[1:])
        pairs += len(latents)
        if i in train and len(latents):
            stats_rows.append(latents)
    if not stats_rows:
        raise LatentActionError(f"dataset {data}: no frame pair in the episodes the statistics are taken over")
    rows = np.concatenate(stats_rows)
    extra = {"model": {"path": str(Path(model).resolve()), "fingerprint": fingerprint(model),
                       "flow_autoencoder": str(ae_folder.resolve())},
             "episodes": len(ids), "pairs": pairs, "statistics_pairs": int(len(rows)),
             "video_rate_hz": dataset.video_rate_hz}
    split = "train split" if dataset.split("train") else "all episodes (no train split)"
    doc = stats_document(action_statistics(rows), f"latent actions of {len(rows)} frame pairs ({split}) of "
                                                  f"{Path(data).resolve()}, model {Path(model).resolve()}", extra)
    write_json_atomic(Path(data) / DATASET_STATS_FILE, doc)
    return {"dataset": str(Path(data).resolve()), "episodes": len(ids), "pairs": pairs,
            "latent_dim": vae.config.latent_dim, "statistics": str(Path(data).resolve() / DATASET_STATS_FILE),
            "flow_cache": {k: round(v, 1) if isinstance(v, float) else v for k, v in counts.items()},
            "seconds": round(time.perf_counter() - t0, 1)}


def report(data: str | Path, model: str | Path, ae: str | Path | None = None, val_pairs: int = 0,
           log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """EPE of the flow autoencoder on val pairs, and linear probes of latent actions -> real actions
    (least squares on the train split, R^2 on the val split)."""
    t0 = time.perf_counter()
    vae, info, flow_ae, ae_folder = open_models(model, ae)
    dataset = pr.load_with_actions(data)
    _check_rate(dataset, info, model)
    train_ids, val_ids = pr.splits(dataset)
    if not val_ids:
        raise LatentActionError(f"dataset {data}: no episode in the 'val' split; the report is on held-out pairs")
    counts: dict = {}
    val = pr.collect_pairs(dataset, val_ids)
    rows = pr.evenly(len(val), val_pairs)
    val_tokens, val_flow = encode_pairs(flow_ae, dataset, val_ids, log, progress, counts, rows)
    train_tokens, _ = encode_pairs(flow_ae, dataset, train_ids, log, progress, counts)
    with torch.no_grad():
        recon = vae.decode(vae.latent_actions(val_tokens[rows]))
    vae_flow = flow_ae.decode_tokens(recon)
    return {"dataset": str(Path(data).resolve()), "model": str(Path(model).resolve()),
            "flow_autoencoder": str(ae_folder.resolve()),
            "autoencoder": {"split": "val", **evaluate_ae(flow_ae, val_flow)},
            "latent_action_reconstruction": {"split": "val", **flow_report(vae_flow, val_flow,
                                                                           flow_ae.config.max_flow)},
            "linear_probe": probe_report(vae, train_tokens, pr.collect_pairs(dataset, train_ids), val_tokens, val),
            "metric_note": f"EPE in pixels of the {flow_ae.config.flow.height}x{flow_ae.config.flow.width} flow "
                           "image; latent_action_reconstruction decodes the latent action back through the VAE "
                           "decoder and the frozen autoencoder decoder",
            "flow_cache": {k: round(v, 1) if isinstance(v, float) else v for k, v in counts.items()},
            "seconds": round(time.perf_counter() - t0, 1)}


__all__ = ["DATASET_STATS_FILE", "SIDECAR_FILE", "label_dataset", "open_models", "report", "write_sidecar"]
