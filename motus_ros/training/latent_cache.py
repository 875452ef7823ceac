"""On-disk cache of the frozen encoders' outputs for every training window.

The video autoencoder (Wan VAE or the PatchAutoencoder stand-in), the VLM and the text encoder are
frozen during stage-2 pretraining and stage-3 fine-tuning (arXiv 2512.13030, Sec. 4), so their
outputs for a window never change: they are computed once (the first epoch's encoding pass) and
read back by every later epoch and every later run. The cache folder is keyed by a SHA-256 of
  - the dataset (dataset.json and every episode's data.npz, byte for byte),
  - the encoders' weights (every tensor of vae / vlm / text_encoder, in key order),
  - the geometry that shapes a window (video size, frames, chunk, encoder kinds),
so new data or other encoder weights never read stale latents. The cache holds no targets (joint
or latent actions, read from the dataset by the trainer), so stage 2 and stage 3 on the same data
share one; a run that needs windows the cache lacks (stage 2 adds the episodes without joint data)
encodes them and rewrites the cache with the windows it had plus the new ones.

Layout of <cache_root>/<key>/ (written to a temp folder, then renamed):
  meta.json       key, inputs of the key, windows [[episode, frame], ...], tasks
  latents.npy     (N,C,T,h,w) float16 normalised latents; frame 0 = condition frame
  vlm.npy         (N,L,D) float32 VLM last hidden layer, right-padded to the longest row
  vlm_mask.npy    (N,L) bool, False on padding
  task.npy        (N,) int64 index into tasks
  text_<i>.npy    (Lt,Dt) float32 text-encoder states of task i
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motus_ros.data.episode import file_sha256
from motus_ros.motus.tokenization import PROJECT_TOKENIZERS, tokenizer_fingerprint

from .dataset import Dataset, Window, window_frames

CACHE_VERSION = 1


def tensor_digest(modules: dict[str, torch.nn.Module | None]) -> str:
    """SHA-256 over the named modules' state dicts (key, dtype, shape and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        module = modules[name]
        digest.update(f"{name}:{type(module).__name__}".encode())
        if module is None:
            continue
        for key, value in sorted(module.state_dict().items()):
            t = value.detach().cpu().contiguous()
            digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def dataset_digest(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update((dataset.root / "dataset.json").read_bytes())
    for ep in dataset.episodes:
        digest.update(ep.name.encode())
        digest.update(file_sha256(dataset.root / "episodes" / ep.name / "data.npz").encode())
    return digest.hexdigest()


def cache_key(dataset: Dataset, model) -> tuple[str, dict]:
    cfg = model.config
    inputs = {
        "version": CACHE_VERSION,
        "dataset": dataset_digest(dataset),
        "encoders": tensor_digest({"vae": model.vae, "vlm": model.vlm, "text_encoder": model.text_encoder}),
        "geometry": {"video": [cfg.video_height, cfg.video_width], "future_frames": cfg.num_future_frames,
                     "chunk": cfg.chunk_size, "vae_kind": cfg.vae_kind, "vlm_image_size": list(cfg.vlm_image_size),
                     "text_max_len": cfg.text_max_len},
    }
    tokenizers = tokenizer_fingerprint(model)
    if tokenizers != PROJECT_TOKENIZERS:      # keys of caches made with the byte stand-in stay as they were
        inputs["tokenizers"] = tokenizers
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    return key, inputs


@dataclass
class LatentCache:
    """Read side of a cache folder; arrays are memory-mapped."""

    folder: Path
    windows: list[Window]
    tasks: list[str]
    latents: np.ndarray
    vlm: np.ndarray
    vlm_mask: np.ndarray
    task: np.ndarray
    text: list[np.ndarray]
    built: bool = False           # True when this process encoded it (False: read from disk)

    def index(self) -> dict[Window, int]:
        return {w: i for i, w in enumerate(self.windows)}


def open_cache(folder: Path, built: bool = False) -> LatentCache:
    meta = json.loads((folder / "meta.json").read_text())
    tasks = list(meta["tasks"])
    return LatentCache(
        folder=folder, windows=[Window(int(e), int(f)) for e, f in meta["windows"]], tasks=tasks,
        latents=np.load(folder / "latents.npy", mmap_mode="r"), vlm=np.load(folder / "vlm.npy", mmap_mode="r"),
        vlm_mask=np.load(folder / "vlm_mask.npy", mmap_mode="r"), task=np.load(folder / "task.npy"),
        text=[np.load(folder / f"text_{i}.npy") for i in range(len(tasks))], built=built)


@torch.no_grad()
def encode_windows(model, dataset: Dataset, wins: list[Window], batch_size: int = 4,
                   progress: bool = True) -> dict[str, object]:
    """Run the frozen encoders over every window; returns the arrays of the cache."""
    from tqdm import tqdm

    cfg = model.config
    device = model.device
    tasks = sorted({dataset.episodes[w.episode].task for w in wins})
    text = [model.encode_text([t], use_cache=False)[0].float().cpu().numpy() for t in tasks]
    latents, feats, masks, task_ids = [], [], [], []
    for start in tqdm(range(0, len(wins), batch_size), desc="encode", unit="batch", disable=not progress,
                      file=sys.stderr):
        batch = wins[start: start + batch_size]
        frames = torch.from_numpy(np.stack([window_frames(dataset, w, cfg) for w in batch])).to(device)
        instr = [dataset.episodes[w.episode].task for w in batch]
        latents.append(model.encode_frames(frames).to(torch.float16).cpu().numpy())   # [B,C,T,h,w]
        f, m = model.vlm(frames[:, :, 0], instr)                                       # [B,L,D], [B,L]
        feats.extend(f.float().cpu().numpy())
        masks.extend(m.cpu().numpy())
        task_ids.extend(tasks.index(t) for t in instr)
    length = max(len(f) for f in feats)
    vlm = np.zeros((len(feats), length, feats[0].shape[-1]), dtype=np.float32)
    vlm_mask = np.zeros((len(feats), length), dtype=bool)
    for i, (f, m) in enumerate(zip(feats, masks)):
        vlm[i, : len(f)] = f
        vlm_mask[i, : len(m)] = m
    return {"latents": np.concatenate(latents), "vlm": vlm, "vlm_mask": vlm_mask,
            "task": np.asarray(task_ids, dtype=np.int64), "text": text, "tasks": tasks}


def build_or_open(model, dataset: Dataset, wins: list[Window], cache_root: str | Path,
                  batch_size: int = 4, progress: bool = True) -> LatentCache:
    """The cache for (dataset, encoders, geometry): opened when present, else encoded and written."""
    key, inputs = cache_key(dataset, model)
    root = Path(cache_root)
    folder = root / key
    if (folder / "meta.json").is_file():
        cache = open_cache(folder)
        if set(cache.windows) >= set(wins):
            return cache
        have = set(wins)
        wins = list(wins) + [w for w in cache.windows if w not in have]   # keep what the other stage encoded
    arrays = encode_windows(model, dataset, wins, batch_size, progress)
    tmp = root / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("latents", "vlm", "vlm_mask", "task"):
        np.save(tmp / f"{name}.npy", arrays[name])
    for i, t in enumerate(arrays["text"]):
        np.save(tmp / f"text_{i}.npy", t)
    (tmp / "meta.json").write_text(json.dumps({"key": key, "inputs": inputs, "tasks": arrays["tasks"],
                                               "windows": [[w.episode, w.frame] for w in wins]}))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return open_cache(folder, built=True)


__all__ = ["LatentCache", "build_or_open", "cache_key", "encode_windows", "open_cache", "tensor_digest"]
