"""Frame pairs of a converted dataset: their flow (cached, flow.episode_flow), the real action each
one is aligned to, which ones count as labelled, and the linear probe of latent -> real actions."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from motus_ros import layout
from motus_ros.policy.transforms import normalize
from motus_ros.training import dataset as ds

from ._folders import LatentActionError
from .flow import FlowSettings, episode_flow, make_estimator

ACTION_TARGET = {
    "quantity": "absolute action (leader joint target) at the control step of the pair's second frame",
    "normalisation": "per-dimension min/max of the dataset statistics to [0, 1] (policy.transforms.normalize)",
}


def load(root, targets: str = "none") -> ds.Dataset:
    """dataset.load_dataset, its errors as LatentActionError. Flow needs frames only ("none"); the
    VAE and the report also read real actions where there are some (load_with_actions)."""
    try:
        return ds.load_dataset(root, targets=targets)
    except ds.DatasetError as exc:
        raise LatentActionError(f"dataset {root}: {exc}") from None


def load_with_actions(root) -> ds.Dataset:
    """The dataset with its joint data and action statistics when an episode has joint data;
    frames only for a label-free dataset (every episode "has_actions": false)."""
    import json
    from pathlib import Path

    try:
        entries = json.loads((Path(root) / "dataset.json").read_text()).get("episodes") or []
    except (OSError, ValueError, AttributeError):
        entries = []                                   # load() reports what is wrong with the file
    labeled = any(isinstance(e, dict) and e.get("has_actions", True) for e in entries)
    return load(root, "actions" if labeled or not entries else "none")


def pair_actions(episode: ds.Episode, dataset: ds.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(targets, starts), each (F-1, 14) float32, for the pairs (frames[k], frames[k+1]); nan rows for
    an episode without joint data.

    The target is the absolute action at the interval's end, action[frame_steps[k+1]], normalised
    with the dataset's min/max to [0, 1]: the very quantity and scale the action expert predicts
    (dataset.window_targets' actions), so latent actions aligned to it can stand in for real actions
    in stage 2 and fine-tuning on real actions later changes nothing about the target space. The
    change over the interval would match what flow sees more directly, but it lives on another
    scale and distribution than the expert's targets; `starts` (the action at the interval's start,
    same normalisation) lets reports measure that change too (targets - starts).
    """
    steps = episode.frame_steps
    if not episode.has_actions or dataset.stats is None:
        blank = np.full((max(0, len(steps) - 1), layout.DOF), np.nan, np.float32)
        return blank, blank.copy()
    targets = normalize(episode.action[steps[1:]], dataset.stats.action).astype(np.float32)
    starts = normalize(episode.action[steps[:-1]], dataset.stats.action).astype(np.float32)
    return targets, starts


@dataclass
class Pairs:
    """Metadata of every pair of some episodes (one row per pair, episodes in the given order)."""

    episode_ids: list[int]           # dataset episode indices, in order
    episode: np.ndarray              # (N,) int64 position in episode_ids
    pair: np.ndarray                 # (N,) int64 k: frames k -> k+1
    end_steps: np.ndarray            # (N,) int64 control step of frame k+1
    actions: np.ndarray              # (N, 14) float32 normalised target (pair_actions)
    starts: np.ndarray               # (N, 14) float32 normalised action at the interval's start

    def __len__(self) -> int:
        return len(self.pair)

    @property
    def has_action(self) -> np.ndarray:
        """(N,) bool: the pair's episode has joint data (its rows are not nan)."""
        return np.isfinite(self.actions).all(1)


def collect_pairs(dataset: ds.Dataset, episode_ids: list[int]) -> Pairs:
    """Every pair of the episodes, in order, with its real actions (nan rows without joint data)."""
    ep_col, k_col, steps, acts, starts = [], [], [], [], []
    for pos, i in enumerate(episode_ids):
        e = dataset.episodes[i]
        n = max(0, e.num_frames - 1)
        t, s = pair_actions(e, dataset)
        ep_col.append(np.full(n, pos, np.int64))
        k_col.append(np.arange(n, dtype=np.int64))
        steps.append(e.frame_steps[1:].astype(np.int64))
        acts.append(t)
        starts.append(s)
    cat = lambda x, shape: np.concatenate(x) if x else np.zeros(shape)   # noqa: E731 - no episode: empty
    return Pairs(list(episode_ids), cat(ep_col, 0).astype(np.int64), cat(k_col, 0).astype(np.int64),
                 cat(steps, 0).astype(np.int64), cat(acts, (0, 14)).astype(np.float32),
                 cat(starts, (0, 14)).astype(np.float32))


def labeled_mask(has_action: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: round(fraction x N) of the N pairs (at least one when fraction > 0), drawn once with
    `seed` among the pairs with joint data (all of those when they are fewer)."""
    if not 0.0 <= fraction <= 1.0:
        raise LatentActionError(f"labeled_fraction: got {fraction}, expected a number in [0, 1]")
    n = len(has_action)
    count = 0 if fraction == 0 or n == 0 else max(1, int(round(fraction * n)))
    candidates = np.flatnonzero(has_action)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(candidates)[:count]] = True
    return mask


def episode_flows(dataset: ds.Dataset, episode_ids: list[int], settings: FlowSettings,
                  log: Callable[[str], None] | None = None, progress: bool = False,
                  counts: dict | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(dataset episode index, flow (F-1, H, W, 2)) of each episode, from the cache when valid.
    `counts` (when given) gathers cached / computed episodes and seconds."""
    from tqdm import tqdm

    estimator = make_estimator(settings)
    for i in tqdm(episode_ids, desc="flow", unit="episode", disable=not progress, file=sys.stderr):
        t0 = time.perf_counter()
        flow, cached = episode_flow(dataset.episodes[i], estimator, log=log)
        if counts is not None:
            key = "cached" if cached else "computed"
            counts[key] = counts.get(key, 0) + 1
            counts["seconds"] = counts.get("seconds", 0.0) + time.perf_counter() - t0
        yield i, flow


def splits(dataset: ds.Dataset) -> tuple[list[int], list[int]]:
    """(train, val) episode indices; LatentActionError when there is nothing to train on."""
    train, val = dataset.split("train"), dataset.split("val")
    if not train:
        raise LatentActionError(f"dataset {dataset.root}: no episode in the 'train' split")
    return train, val


def evenly(n: int, count: int) -> np.ndarray:
    """Indices of `count` evenly spaced items of n (all when count is 0 or >= n)."""
    if count <= 0 or count >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))


# Linear probe -------------------------------------------------------------------------------------
def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict:
    """Least squares y ~ [x, 1] on the train rows, R^2 on the val rows: mean over the dimensions of y
    that vary on val, and pooled (1 - total residual / total variance)."""
    if len(x_train) <= x_train.shape[1] or len(x_val) < 2:
        return {"r2_mean": None, "r2_pooled": None, "r2_per_dim": [], "train_rows": int(len(x_train)),
                "val_rows": int(len(x_val)), "note": "too few rows for a least-squares fit and a val R^2"}
    a = np.hstack([x_train, np.ones((len(x_train), 1))]).astype(np.float64)
    w, *_ = np.linalg.lstsq(a, y_train.astype(np.float64), rcond=None)
    pred = np.hstack([x_val, np.ones((len(x_val), 1))]) @ w
    res = ((y_val - pred) ** 2).sum(0)
    tot = ((y_val - y_val.mean(0)) ** 2).sum(0)
    varies = tot > 1e-12
    per_dim = np.where(varies, 1.0 - res / np.where(varies, tot, 1.0), np.nan)
    return {"r2_mean": round(float(np.nanmean(per_dim)), 4) if varies.any() else None,
            "r2_pooled": round(float(1.0 - res[varies].sum() / tot[varies].sum()), 4) if varies.any() else None,
            "r2_per_dim": [None if not np.isfinite(v) else round(float(v), 4) for v in per_dim],
            "train_rows": int(len(x_train)), "val_rows": int(len(x_val))}


def pca_features(x_train: np.ndarray, x_val: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `dim` principal components (fitted on train) of both: an unsupervised linear
    compression to the latent action's size, the probe's baseline."""
    mean = x_train.mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    basis = vt[:dim].T
    return (x_train - mean) @ basis, (x_val - mean) @ basis


__all__ = ["ACTION_TARGET", "Pairs", "collect_pairs", "episode_flows", "evenly", "labeled_mask", "linear_probe",
           "load", "load_with_actions", "pair_actions", "pca_features", "splits"]
