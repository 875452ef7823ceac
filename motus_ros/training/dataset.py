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
from motus_ros.policy.transforms import NormStats, load_stats, normalize, resize_image, to_model_pixels

RATE_TOLERANCE = 1e-6  # relative; chunk / control rate vs frames / video rate


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
    state: np.ndarray          # (N,14) float32
    action: np.ndarray         # (N,14) float32
    frame_steps: np.ndarray    # (F,) int64 control step of each frame
    path: Path                 # episodes/<name>/data.npz

    @property
    def num_frames(self) -> int:
        return len(self.frame_steps)

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
    stats: NormStats
    stats_path: Path
    control_rate_hz: float
    video_rate_hz: float

    def split(self, name: str) -> list[int]:
        return [i for i, e in enumerate(self.episodes) if e.split == name]

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


def load_episode(folder: Path, split: str, robot: str, task: str) -> Episode:
    """Read episodes/<name>/data.npz; DatasetError naming the array when one is missing or bad."""
    path = folder / "data.npz"
    if not path.is_file():
        raise DatasetError(f"episode {folder.name}: {path} not found")
    with np.load(path) as data:
        missing = [k for k in ("state", "action", "frames", "frame_steps") if k not in data]
        if missing:
            raise DatasetError(f"episode {folder.name}: data.npz lacks {missing}; expected the arrays of "
                               "motus_ros/data/convert.py")
        state = np.asarray(data["state"], dtype=np.float32)
        action = np.asarray(data["action"], dtype=np.float32)
        steps = np.asarray(data["frame_steps"], dtype=np.int64)
    frames_shape, frames_dtype = _npz_array_header(path, "frames")
    n = len(state)
    for key, arr, shape in (("state", state, (n, layout.DOF)), ("action", action, (n, layout.DOF))):
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
    return Episode(folder.name, split, robot, task, state, action, steps, path)


def load_dataset(root: str | Path, stats: str | Path | None = None) -> Dataset:
    """A folder written by `motus-ros convert --format motus`; statistics from stats/<robot>.json
    (one robot per training run) unless `stats` names a file."""
    root = Path(root)
    meta = _read_json(root / "dataset.json", "dataset.json")
    entries = meta.get("episodes")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{root / 'dataset.json'}: 'episodes' is empty; nothing to train on")
    robots = sorted({str(e.get("robot", "")) for e in entries})
    if stats is None:
        if len(robots) != 1:
            raise DatasetError(f"{root}: episodes of several robots {robots}; pass stats= (one robot per run)")
        stats = root / "stats" / f"{robots[0]}.json"
    try:
        norm = load_stats(stats)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"statistics: {exc}") from exc
    episodes = [load_episode(root / "episodes" / e["name"], str(e.get("split", "train")), str(e.get("robot", "")),
                             str(e.get("task", ""))) for e in entries]
    return Dataset(root, episodes, norm, Path(stats), float(meta.get("control_rate_hz", layout.CONTROL_RATE_HZ)),
                   float(meta.get("video_rate_hz", layout.VIDEO_RATE_HZ)))


def check_rates(dataset: Dataset, config) -> None:
    """The chunk and the future frames must span the same time (DatasetError otherwise)."""
    action_span = config.chunk_size / dataset.control_rate_hz
    video_span = config.num_future_frames / dataset.video_rate_hz
    if abs(action_span - video_span) > RATE_TOLERANCE * max(action_span, video_span):
        raise DatasetError(
            f"dataset rates: chunk_size {config.chunk_size} at control_rate_hz {dataset.control_rate_hz:g} spans "
            f"{action_span:.3f} s but num_future_frames {config.num_future_frames} at video_rate_hz "
            f"{dataset.video_rate_hz:g} spans {video_span:.3f} s; expected equal spans")


def windows(dataset: Dataset, episode_ids: list[int]) -> list[Window]:
    """Every frame of the given episodes as an anchor (the tail is padded, see module docstring)."""
    return [Window(i, f) for i in episode_ids for f in range(dataset.episodes[i].num_frames)]


def window_indices(episode: Episode, frame: int, num_future: int, chunk: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(frame indices [1+F], state step, action steps [chunk]) with end-of-episode padding."""
    f_idx = np.minimum(np.arange(frame, frame + num_future + 1), episode.num_frames - 1)
    s = int(episode.frame_steps[frame])
    a_idx = np.minimum(np.arange(s + 1, s + chunk + 1), len(episode.action) - 1)
    return f_idx, s, a_idx


def window_arrays(dataset: Dataset, window: Window, config) -> dict[str, np.ndarray]:
    """Model inputs of one window: frames [3,1+F,H,W] in [-1,1], state [14], actions [chunk,14]
    (both normalised to [0,1] with the dataset statistics)."""
    ep = dataset.episodes[window.episode]
    f_idx, s, a_idx = window_indices(ep, window.frame, config.num_future_frames, config.chunk_size)
    video = ep.frames
    pix = [to_model_pixels(resize_image(video[i], config.video_height, config.video_width)) for i in f_idx]
    frames = np.stack(pix, axis=1).astype(np.float32)                       # [3,1+F,H,W]
    state = normalize(ep.state[s], dataset.stats.state).astype(np.float32)
    actions = normalize(ep.action[a_idx], dataset.stats.action).astype(np.float32)
    return {"frames": frames, "state": state, "actions": actions}


__all__ = ["Dataset", "DatasetError", "Episode", "Window", "check_rates", "load_dataset", "window_arrays",
           "window_indices", "windows"]
