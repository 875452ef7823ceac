"""Training samples for Motus from converted episodes (`motus-ros convert`, motus_ros/data/convert.py).

One sample ("window") is anchored at a video frame f of an episode, at control step s = frame_steps[f]:
  condition frame  frames[f]                     tiled three-camera image (the policy's input)
  future frames    frames[f+1 .. f+F]            F = config.num_future_frames (8 at 5 Hz = 1.6 s)
  state            state[s]                      follower joint positions (14)
  actions          action[s+1 .. s+chunk]        leader targets, chunk = config.chunk_size (48 at 30 Hz)
Rows past the end of an episode repeat its last frame / action (the arms hold still once the task
is done), as ACT pads its chunks; the ratio chunk / control rate must equal F / video rate, so the
predicted frames and the actions cover the same 1.6 s (arXiv 2512.13030: 8 frames at 5 Hz and 48
actions at 30 Hz). The action rows line up with the executor's schedule: row i is the target for
time stamp + (i + 1) * period (motus_ros/execution/chunks.py).

Actions and state are normalised per dimension with the dataset's min/max statistics to [0, 1]
(policy.transforms.normalize), frames to [-1, 1] at the model's video size.

Targets (load_dataset(targets=...)):
  "actions"          stage 3, the default: the joint actions and state above. Episodes without
                     joint data (convert.py's label-free episodes, "has_actions": false) are loaded
                     but give no window (Dataset.trainable); a dataset without any has no action
                     statistics and is refused.
  "latent_actions"   stage 2 (arXiv 2512.13030, latent actions; Tab. 1): the action rows are latent
                     actions made from the video by `motus-ros latent-actions label DATA --model DIR`,
                     one per consecutive frame pair, read from each episode's sidecar
                     episodes/<name>/latent_actions.npz:
                       latent_actions (F-1, D) float32  the interval from frame i to frame i+1
                       frame_steps    (F-1,) int64      control step of each interval's end
                                                        (== the episode's frame_steps[1:])
                     normalised to [0, 1] with latent_action_stats.json ({"min": [D], "max": [D]})
                     in the dataset folder; D must be the model's action_dim. From 5 Hz to the
                     control rate: linear interpolation between the interval ends, the first
                     value held before the first end, the last after the last (latent_targets).
                     Why not hold each over its interval: the labeller aligns latent action k to
                     the absolute joint target at its interval's end, frame_steps[k+1]
                     (motus_ros/latent_actions/__init__.py), so it is a position-like value at
                     that step, as the joint targets are; interpolating it the way convert.py
                     resamples joints keeps the exact value at every frame step and gives the
                     smooth, per-step chunks stage 3 trains on, where holding would make every
                     chunk a staircase that jumps to each frame's target up to 0.2 s early.
                     Past the episode's end the last value is held, as the arms hold still.
                     The state input is hidden (every entry 0.5, as TrainConfig.state_dropout
                     hides it): latent actions come from video and have no state.
                     Every episode of the dataset, with or without joint data, needs its sidecar.
  "none"             frames only (no statistics needed).
Pure module: numpy and torch, no ROS.
"""
from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motus_ros import layout
from motus_ros.policy.transforms import MinMax, NormStats, load_stats, normalize, resize_image, to_model_pixels

RATE_TOLERANCE = 1e-6  # relative; chunk / control rate vs frames / video rate
TARGETS = ("actions", "latent_actions", "none")
LATENT_ACTIONS_FILE = "latent_actions.npz"           # per episode folder (stage-2 targets)
LATENT_STATS_FILE = "latent_action_stats.json"       # in the dataset folder
LABEL_COMMAND = "motus-ros latent-actions label"     # writes both
HIDDEN_STATE = 0.5       # normalised state input of a window without a state (mid-range)


class DatasetError(ValueError):
    """A dataset folder that cannot be used for training; the message names the file and field."""


@dataclass
class Episode:
    """One converted episode: states and actions in memory, frames read from disk when asked for
    (a training run reads the latent cache instead, so hundreds of episodes of video never sit in
    memory at once)."""

    name: str
    split: str
    robot: str
    task: str
    state: np.ndarray | None   # (N,14) float32; None: no joint data (a label-free episode)
    action: np.ndarray | None  # (N,14) float32; None with state
    frame_steps: np.ndarray    # (F,) int64 control step of each frame
    path: Path                 # episodes/<name>/data.npz
    num_steps: int = 0         # N, control steps (timestamps)
    latent_actions: np.ndarray | None = None   # (F-1, D) float32, targets "latent_actions" only
    latent_steps: np.ndarray | None = None     # (F-1,) int64 control step of each interval's end

    def __post_init__(self) -> None:
        if not self.num_steps and self.action is not None:
            self.num_steps = len(self.action)

    @property
    def num_frames(self) -> int:
        return len(self.frame_steps)

    @property
    def has_actions(self) -> bool:
        return self.state is not None and self.action is not None

    @property
    def frames(self) -> np.ndarray:
        """(F,H,W,3) uint8 at the converted tile size; the last two episodes read stay cached."""
        st = self.path.stat()
        return _read_frames(str(self.path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _read_frames(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Keyed by modification time and size too, so a rewritten file is read again."""
    with np.load(path) as data:
        frames = np.asarray(data["frames"])
    frames.setflags(write=False)         # shared by every caller of the cache
    return frames


def _npz_array_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array `key` in an .npz without decompressing it."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    return tuple(shape), np.dtype(dtype)


@dataclass(frozen=True)
class Window:
    """A sample: episode index and anchor frame index."""

    episode: int
    frame: int


@dataclass
class Dataset:
    """All episodes of a converted dataset folder plus its normalisation statistics."""

    root: Path
    episodes: list[Episode]
    stats: NormStats | None          # joint statistics (None unless targets "actions")
    stats_path: Path | None
    control_rate_hz: float
    video_rate_hz: float
    targets: str = "actions"         # TARGETS, see the module docstring
    latent_stats: MinMax | None = None      # targets "latent_actions": range of each latent dimension
    latent_stats_path: Path | None = None

    def split(self, name: str) -> list[int]:
        return [i for i, e in enumerate(self.episodes) if e.split == name]

    def trainable(self, ids: list[int]) -> list[int]:
        """The episodes of `ids` that give windows for this dataset's targets: with joint data
        (targets "actions"), with at least one latent action (targets "latent_actions")."""
        if self.targets == "actions":
            return [i for i in ids if self.episodes[i].has_actions]
        if self.targets == "latent_actions":
            return [i for i in ids if len(self.episodes[i].latent_actions)]
        return list(ids)

    @property
    def action_size(self) -> int:
        """Dimensions of an action row: 14 joints, or D latent dimensions."""
        return len(self.latent_stats.min) if self.targets == "latent_actions" else layout.DOF

    @property
    def tasks(self) -> list[str]:
        return sorted({e.task for e in self.episodes})


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path} (is this a folder written by `motus-ros convert`?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def load_episode(folder: Path, split: str, robot: str, task: str, has_actions: bool = True) -> Episode:
    """Read episodes/<name>/data.npz; DatasetError naming the array when one is missing or bad.
    has_actions False (dataset.json): a label-free episode, without state and action arrays."""
    path = folder / "data.npz"
    if not path.is_file():
        raise DatasetError(f"episode {folder.name}: {path} not found")
    with np.load(path) as data:
        needed = ("state", "action", "frames", "frame_steps") if has_actions else ("timestamps", "frames",
                                                                                   "frame_steps")
        missing = [k for k in needed if k not in data]
        if missing:
            raise DatasetError(f"episode {folder.name}: data.npz lacks {missing}; expected the arrays of "
                               "motus_ros/data/convert.py")
        state = np.asarray(data["state"], dtype=np.float32) if has_actions else None
        action = np.asarray(data["action"], dtype=np.float32) if has_actions else None
        n = len(state) if has_actions else len(data["timestamps"])
        steps = np.asarray(data["frame_steps"], dtype=np.int64)
    frames_shape, frames_dtype = _npz_array_header(path, "frames")
    for key, arr, shape in (("state", state, (n, layout.DOF)), ("action", action, (n, layout.DOF))):
        if arr is None:
            continue
        if arr.shape != shape:
            raise DatasetError(f"episode {folder.name}: {key} shape {arr.shape}, expected {shape}")
        if not np.isfinite(arr).all():
            raise DatasetError(f"episode {folder.name}: {key} contains non-finite values")
    if len(frames_shape) != 4 or frames_shape[3] != 3 or frames_dtype != np.uint8:
        raise DatasetError(f"episode {folder.name}: frames shape {frames_shape} dtype {frames_dtype}, "
                           "expected (F,H,W,3) uint8")
    if steps.shape != (frames_shape[0],) or frames_shape[0] == 0:
        raise DatasetError(f"episode {folder.name}: frame_steps shape {steps.shape}, expected ({frames_shape[0]},) "
                           "and at least one frame")
    if steps.min() < 0 or steps.max() >= n:
        raise DatasetError(f"episode {folder.name}: frame_steps outside 0..{n - 1}")
    return Episode(folder.name, split, robot, task, state, action, steps, path, n)


def _label_command(root: Path) -> str:
    return f"`{LABEL_COMMAND} {root} --model DIR`"


def load_latent_actions(episode: Episode, root: Path) -> None:
    """Attach the episode's stage-2 targets from its sidecar (module docstring); DatasetError
    naming the episode, and the command that writes it, when it is missing or does not fit."""
    path = episode.path.parent / LATENT_ACTIONS_FILE
    where = f"episode {episode.name}: {path}"
    if not path.is_file():
        raise DatasetError(f"episode {episode.name}: no latent actions ({path} not found); make them with "
                           f"{_label_command(root)}")
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in ("latent_actions", "frame_steps") if k in data}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{where}: unreadable ({exc}); write it again with {_label_command(root)}") from exc
    if len(arrays) < 2:
        raise DatasetError(f"{where} lacks {sorted({'latent_actions', 'frame_steps'} - set(arrays))}; expected "
                           f"latent_actions (F-1, D) and frame_steps (F-1,) as {_label_command(root)} writes them")
    latents = arrays["latent_actions"].astype(np.float32)
    steps = arrays["frame_steps"].astype(np.int64)
    intervals = max(0, episode.num_frames - 1)
    if latents.ndim != 2 or latents.shape[0] != intervals:
        raise DatasetError(f"{where}: latent_actions shape {latents.shape}, expected ({intervals}, D): one per "
                           f"pair of the episode's {episode.num_frames} frames (written for other data? write it "
                           f"again with {_label_command(root)})")
    if not np.array_equal(steps, episode.frame_steps[1:]):
        raise DatasetError(f"{where}: frame_steps {steps[:4].tolist()}... differ from the episode's frame "
                           f"steps after the first {episode.frame_steps[1:5].tolist()}... (written for other "
                           f"data? write it again with {_label_command(root)})")
    if not np.isfinite(latents).all():
        raise DatasetError(f"{where}: latent_actions contain non-finite values")
    episode.latent_actions, episode.latent_steps = latents, steps


def load_latent_stats(root: Path) -> tuple[MinMax, Path]:
    """latent_action_stats.json of a dataset folder -> per-dimension range (D,)."""
    path = root / LATENT_STATS_FILE
    if not path.is_file():
        raise DatasetError(f"{root}: no latent action statistics ({path} not found); make them with "
                           f"{_label_command(root)}")
    data = _read_json(path, LATENT_STATS_FILE)
    try:
        lo = np.asarray(data["min"], dtype=np.float64)
        hi = np.asarray(data["max"], dtype=np.float64)
        if lo.ndim != 1 or lo.shape != hi.shape or not len(lo):
            raise ValueError(f"min {lo.shape} and max {hi.shape}, expected two lists of D numbers")
        return MinMax(lo, hi), path
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: expected {{\"min\": [D numbers], \"max\": [D numbers]}} ({exc})") from exc


def load_dataset(root: str | Path, stats: str | Path | None = None, targets: str = "actions") -> Dataset:
    """A folder written by `motus-ros convert --format motus`. targets "actions" (stage 3): joint
    statistics from stats/<robot>.json of the episodes with joint data (one robot per training
    run) unless `stats` names a file; "latent_actions" (stage 2): the sidecars and
    latent_action_stats.json; "none": frames only. See the module docstring."""
    if targets not in TARGETS:
        raise ValueError(f"targets: got {targets!r}, expected one of {list(TARGETS)}")
    root = Path(root)
    meta = _read_json(root / "dataset.json", "dataset.json")
    entries = meta.get("episodes")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{root / 'dataset.json'}: 'episodes' is empty; nothing to train on")
    norm = None
    if targets == "actions":
        labeled = [e for e in entries if e.get("has_actions", True)]
        if not labeled and stats is None:
            raise DatasetError(
                f"{root}: none of its {len(entries)} episodes has joint data (all are label-free, "
                f"\"has_actions\": false in dataset.json), so it has no action statistics and nothing to train "
                f"on real actions (stage 3) with; pretrain on its latent actions instead ({_label_command(root)}, "
                "then `motus-ros train --stage 2`)")
        robots = sorted({str(e.get("robot", "")) for e in labeled})
        if stats is None:
            if len(robots) != 1:
                raise DatasetError(f"{root}: episodes of several robots {robots}; pass stats= (one robot per run)")
            stats = root / "stats" / f"{robots[0]}.json"
        try:
            norm = load_stats(stats)
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(f"statistics: {exc}") from exc
    episodes = [load_episode(root / "episodes" / e["name"], str(e.get("split", "train")), str(e.get("robot", "")),
                             str(e.get("task", "")), bool(e.get("has_actions", True))) for e in entries]
    latent_stats = latent_stats_path = None
    if targets == "latent_actions":
        latent_stats, latent_stats_path = load_latent_stats(root)
        for ep in episodes:
            load_latent_actions(ep, root)
            if len(ep.latent_actions) and ep.latent_actions.shape[1] != len(latent_stats.min):
                raise DatasetError(
                    f"episode {ep.name}: latent actions of {ep.latent_actions.shape[1]} dimensions, but "
                    f"{latent_stats_path.name} has {len(latent_stats.min)}; write both again with "
                    f"{_label_command(root)}")
    return Dataset(root, episodes, norm, Path(stats) if stats is not None else None,
                   float(meta.get("control_rate_hz", layout.CONTROL_RATE_HZ)),
                   float(meta.get("video_rate_hz", layout.VIDEO_RATE_HZ)), targets, latent_stats, latent_stats_path)


def check_rates(dataset: Dataset, config) -> None:
    """The chunk and the future frames must span the same time (DatasetError otherwise)."""
    action_span = config.chunk_size / dataset.control_rate_hz
    video_span = config.num_future_frames / dataset.video_rate_hz
    if abs(action_span - video_span) > RATE_TOLERANCE * max(action_span, video_span):
        raise DatasetError(
            f"dataset rates: chunk_size {config.chunk_size} at control_rate_hz {dataset.control_rate_hz:g} spans "
            f"{action_span:.3f} s but num_future_frames {config.num_future_frames} at video_rate_hz "
            f"{dataset.video_rate_hz:g} spans {video_span:.3f} s; expected equal spans")


def check_targets(dataset: Dataset, config) -> None:
    """The action rows must have the model's action_dim dimensions (DatasetError otherwise)."""
    if dataset.action_size != config.action_dim:
        what = (f"latent actions of {dataset.action_size} dimensions ({dataset.latent_stats_path})"
                if dataset.targets == "latent_actions" else f"actions of {dataset.action_size} joints")
        raise DatasetError(f"{what}, but the model's action_dim is {config.action_dim}; expected equal (the "
                           "action expert is shared by stage 2 and stage 3: label with a latent action model "
                           f"of {config.action_dim} dimensions)")


def windows(dataset: Dataset, episode_ids: list[int]) -> list[Window]:
    """Every frame of the given episodes as an anchor (the tail is padded, see module docstring)."""
    return [Window(i, f) for i in episode_ids for f in range(dataset.episodes[i].num_frames)]


def window_indices(episode: Episode, frame: int, num_future: int, chunk: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(frame indices [1+F], state step, action steps [chunk]) with end-of-episode padding."""
    f_idx = np.minimum(np.arange(frame, frame + num_future + 1), episode.num_frames - 1)
    s = int(episode.frame_steps[frame])
    a_idx = np.minimum(np.arange(s + 1, s + chunk + 1), episode.num_steps - 1)
    return f_idx, s, a_idx


def latent_targets(episode: Episode, steps: np.ndarray) -> np.ndarray:
    """(len(steps), D) float64 latent action at each control step: linear between the interval
    ends (latent_steps), held before the first and after the last (module docstring)."""
    lat = episode.latent_actions                                              # [F-1, D] at latent_steps
    return np.stack([np.interp(steps, episode.latent_steps, lat[:, d]) for d in range(lat.shape[1])], axis=1)


def window_targets(dataset: Dataset, window: Window, config) -> tuple[np.ndarray, np.ndarray]:
    """(state [state_dim], actions [chunk, action dims]) of one window, normalised to [0, 1]
    (float64): joint state and actions, or the hidden state and latent actions."""
    ep = dataset.episodes[window.episode]
    _, s, a_idx = window_indices(ep, window.frame, config.num_future_frames, config.chunk_size)
    if dataset.targets == "latent_actions":
        return (np.full(config.state_dim, HIDDEN_STATE),
                normalize(latent_targets(ep, a_idx), dataset.latent_stats))
    if dataset.targets != "actions" or not ep.has_actions:
        raise DatasetError(f"episode {ep.name}: no action targets (targets {dataset.targets!r}, "
                           f"joint data: {ep.has_actions})")
    return normalize(ep.state[s], dataset.stats.state), normalize(ep.action[a_idx], dataset.stats.action)


def window_frames(dataset: Dataset, window: Window, config) -> np.ndarray:
    """Frames [3,1+F,H,W] of one window in [-1,1] at the model's video size."""
    ep = dataset.episodes[window.episode]
    f_idx, _, _ = window_indices(ep, window.frame, config.num_future_frames, config.chunk_size)
    video = ep.frames
    pix = [to_model_pixels(resize_image(video[i], config.video_height, config.video_width)) for i in f_idx]
    return np.stack(pix, axis=1).astype(np.float32)                         # [3,1+F,H,W]


def window_arrays(dataset: Dataset, window: Window, config) -> dict[str, np.ndarray]:
    """Model inputs of one window: frames [3,1+F,H,W] in [-1,1], state [14], actions [chunk,14]
    (both normalised to [0,1] with the dataset statistics; see window_targets)."""
    state, actions = window_targets(dataset, window, config)
    return {"frames": window_frames(dataset, window, config), "state": state.astype(np.float32),
            "actions": actions.astype(np.float32)}


__all__ = ["Dataset", "DatasetError", "Episode", "LATENT_ACTIONS_FILE", "LATENT_STATS_FILE", "Window", "check_rates",
           "check_targets", "latent_targets", "load_dataset", "load_latent_actions", "window_arrays", "window_frames",
           "window_indices", "window_targets", "windows"]
