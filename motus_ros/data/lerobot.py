"""Export recorded episode bags as a LeRobot dataset v3.0 (codebase_version "v3.0").

Layout written (templates as in LeRobot v3):

    meta/info.json                                  features, fps, totals, path templates, splits
    meta/stats.json                                 min/max/mean/std/count per feature
    meta/tasks.parquet                              task_index, indexed by task text
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks, index
                                                    ranges, video file/timestamps, episode stats
    data/chunk-000/file-000.parquet                 one row per control step (30 Hz): action,
                                                    observation.state, timestamp, frame_index,
                                                    episode_index, index, task_index
    videos/observation.images.cam_<camera>/chunk-XXX/file-YYY.mp4   one file per episode (MPEG-4
                                                    part 2, 30 fps, nearest recorded image per step)

Times, the choice between header stamps and receive times, and the cut at a simulator reset are
those of convert.read_bag, so both formats hold the same steps.

Episodes without joint data (convert.py's label-free episodes) are refused: LeRobot's action and
observation.state features are required per frame. Parquet needs pyarrow; without it the export refuses before writing anything (LeRobotUnavailable).
Train episodes come first, so `splits` are contiguous episode ranges ("0:k", "k:n").
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from motus_ros import layout
from motus_ros.data import episode as ep
from motus_ros.data.convert import (ConvertConfig, ConvertError, ConvertReport, ConvertedEpisode,
                                    _log, assign_splits, make_timeline, read_bag, read_or_skip,
                                    resample, stream_frames, warn_receive_times)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
CHUNKS_SIZE = 1000        # files per chunk folder (LeRobot default)
VIDEO_CODEC = ("mp4v", "mpeg4")  # OpenCV fourcc, ffmpeg codec name
IMAGE_STATS_EVERY = 10    # frames sampled for image statistics
PYARROW_HINT = "pyarrow==26.0.1"


class LeRobotUnavailable(RuntimeError):
    """The export cannot run at all (missing dependency, output already a dataset)."""


def video_key(camera: str) -> str:
    return f"observation.images.cam_{camera}"


def write_parquet(path: Path, columns: dict, index_column: str | None = None) -> None:
    """Columns (1-D arrays/lists; 2-D arrays become fixed-size lists) -> a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    arrays = {}
    for name, value in columns.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), value.shape[1])
        else:
            arrays[name] = pa.array(value.tolist() if isinstance(value, np.ndarray) else value)
    table = pa.table(arrays)
    if index_column is not None:  # pandas reads this column back as the index (tasks.parquet)
        others = [n for n in columns if n != index_column]
        pandas_meta = {"index_columns": [index_column], "column_indexes": [], "columns": [
            {"name": n, "field_name": n, "pandas_type": "int64" if n != index_column else "unicode",
             "numpy_type": "int64" if n != index_column else "object", "metadata": None}
            for n in [*others, index_column]], "creator": {"library": "motus_ros"},
            "pandas_version": "2.2.0"}
        table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _require_pyarrow() -> Callable:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise LeRobotUnavailable(
            "--format lerobot writes Parquet tables (LeRobot dataset v3) and needs pyarrow, which "
            f"is not installed; install {PYARROW_HINT} (nothing was written)") from None
    return write_parquet


def _vector_stats(data: np.ndarray) -> dict:
    data = np.asarray(data, dtype=np.float64)
    return {"min": data.min(0).tolist(), "max": data.max(0).tolist(), "mean": data.mean(0).tolist(),
            "std": data.std(0).tolist(), "count": [int(len(data))]}


class _ImageStats:
    """Per-channel statistics of images scaled to [0, 1], LeRobot's (3, 1, 1) shape."""

    def __init__(self):
        self.n, self.sum, self.sq = 0, np.zeros(3), np.zeros(3)
        self.min, self.max = np.full(3, np.inf), np.full(3, -np.inf)
        self.frames = 0

    def add(self, img: np.ndarray) -> None:
        x = img.reshape(-1, 3).astype(np.float64) / 255.0
        self.n += len(x)
        self.sum += x.sum(0)
        self.sq += (x * x).sum(0)
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))
        self.frames += 1

    def result(self) -> dict:
        mean = self.sum / max(self.n, 1)
        std = np.sqrt(np.maximum(self.sq / max(self.n, 1) - mean ** 2, 0.0))
        shape = lambda v: [[[float(c)]] for c in v]  # noqa: E731
        return {"min": shape(self.min), "max": shape(self.max), "mean": shape(mean),
                "std": shape(std), "count": [self.frames]}


def _write_episode_videos(contents, times_abs: np.ndarray, out: Path, ep_index: int, fps: float,
                          image_stats: dict[str, _ImageStats]) -> dict[str, tuple[int, int]]:
    """One mp4 per camera for this episode (temp names, renamed when all succeeded)."""
    import cv2
    writers: dict[str, cv2.VideoWriter] = {}
    sizes: dict[str, tuple[int, int]] = {}
    chunk, file = divmod(ep_index, CHUNKS_SIZE)
    finals = {cam: out / VIDEO_PATH.format(video_key=video_key(cam), chunk_index=chunk, file_index=file)
              for cam in contents.cameras}
    temps = {cam: p.with_name(f".{p.stem}.tmp.mp4") for cam, p in finals.items()}

    def sink(cam: str, i: int, rgb: np.ndarray) -> None:
        if cam not in writers:
            temps[cam].parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            writers[cam] = cv2.VideoWriter(str(temps[cam]), cv2.VideoWriter_fourcc(*VIDEO_CODEC[0]),
                                           fps, (w, h))
            if not writers[cam].isOpened():
                raise ConvertError(f"OpenCV cannot write {VIDEO_CODEC[0]} video to {temps[cam]}")
            sizes[cam] = (h, w)
        if rgb.shape[:2] != sizes[cam]:
            raise ConvertError(f"camera {cam}: image size changes during the episode")
        writers[cam].write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if i % IMAGE_STATS_EVERY == 0:
            image_stats.setdefault(cam, _ImageStats()).add(rgb)

    try:
        stream_frames(contents, times_abs, sink)
    finally:
        for writer in writers.values():
            writer.release()
    for cam in finals:
        os.replace(temps[cam], finals[cam])
    return sizes


def export_lerobot(bags: list[Path], out: Path, cfg: ConvertConfig | None = None,
                   progress: bool = True, robot_type: str | None = None,
                   table_writer: Callable | None = None,
                   log: Callable[[str], None] = _log) -> ConvertReport:
    """Bags -> LeRobot v3 dataset in `out`; bad bags are reported and skipped."""
    cfg = cfg or ConvertConfig()
    table_writer = table_writer or _require_pyarrow()
    out = Path(out)
    if (out / "meta" / "info.json").exists():
        raise LeRobotUnavailable(f"{out} already holds a LeRobot dataset; choose an empty --out")
    failures: list[tuple[str, str]] = []
    from tqdm import tqdm

    loaded = _read_bags(bags, cfg, progress, failures, log)
    out.mkdir(parents=True, exist_ok=True)
    tables = _Tables(cfg.control_rate_hz)
    for bag, contents, timeline, split in tqdm(loaded, desc="export", unit="episode", disable=not progress,
                                               file=sys.stderr):
        try:
            tables.add_episode(bag, contents, timeline, split, out, log)
        except _VideoFailed as exc:
            failures.append((str(bag), f"{type(exc.__cause__).__name__}: {exc.__cause__}"))
            log(f"skipped {bag}: {exc.__cause__}")
    if tables.episodes:
        tables.write(out, table_writer)
    _write_info(out, tables, robot_type, log)
    return ConvertReport(tables.episodes, failures)


def _read_bags(bags: list[Path], cfg: ConvertConfig, progress: bool, failures: list, log) -> list[tuple]:
    """Phase 1: joints and timelines of every readable bag (cheap), in export order: the train
    split first. Returns [(bag, contents, timeline, split)]; unreadable bags go to `failures`."""
    from tqdm import tqdm

    loaded = []
    for bag in tqdm(bags, desc="read", unit="bag", disable=not progress, file=sys.stderr):
        def read(bag=bag):
            contents = read_bag(bag, cfg)
            if contents.state is None:
                raise ConvertError("no joint data (a camera-only bag, or --no-actions): a LeRobot "
                                   "dataset needs action and observation.state; use --format motus")
            warn_receive_times(bag, contents, cfg, log)
            return contents, make_timeline(contents, cfg)

        result = read_or_skip(bag, read, failures, log)
        if result is not None:
            loaded.append((bag, *result))
    names = [f"{i}:{Path(b).name}" for i, (b, _, _) in enumerate(loaded)]
    splits = assign_splits(names, cfg.val_fraction, cfg.seed)
    order = sorted(range(len(loaded)), key=lambda i: (splits[names[i]] != "train", i))
    return [(*loaded[i], splits[names[i]]) for i in order]


class _VideoFailed(Exception):
    """An episode's videos could not be written (the cause is chained); the episode is skipped."""


class _Tables:
    """Phase 2: the frame rows, episode rows, tasks and statistics of the exported episodes."""

    def __init__(self, fps: float):
        self.fps = fps
        self.tasks: dict[str, int] = {}
        self.rows: dict[str, list] = {k: [] for k in ("action", "observation.state", "timestamp",
                                                      "frame_index", "episode_index", "index", "task_index")}
        self.episode_rows: list[dict] = []
        self.episodes: list[ConvertedEpisode] = []
        self.image_stats: dict[str, _ImageStats] = {}
        self.video_shapes: dict[str, tuple[int, int]] = {}
        self.total = 0                      # frames so far: the next episode's first global index

    def add_episode(self, bag, contents, timeline, split: str, out: Path, log) -> None:
        """Write the episode's videos, then append its rows (nothing is appended if the videos fail)."""
        ep_index, fps = len(self.episodes), self.fps
        state = resample(contents.state, timeline.t0, timeline.steps)
        action = resample(contents.action, timeline.t0, timeline.steps)
        try:
            sizes = _write_episode_videos(contents, timeline.t0 + timeline.steps, out, ep_index,
                                          fps, self.image_stats)
        except Exception as exc:  # noqa: BLE001
            raise _VideoFailed() from exc
        for cam, size in sizes.items():
            if self.video_shapes.setdefault(cam, size) != size:
                log(f"warning: {bag}: camera {cam} is {size[1]}x{size[0]}, other episodes "
                    f"{self.video_shapes[cam][1]}x{self.video_shapes[cam][0]}")
        n, total = len(timeline.steps), self.total
        task_index = self.tasks.setdefault(contents.task, len(self.tasks))
        rows = self.rows
        rows["action"].append(action)
        rows["observation.state"].append(state)
        rows["timestamp"].append(timeline.steps.astype(np.float32))
        rows["frame_index"].append(np.arange(n, dtype=np.int64))
        rows["episode_index"].append(np.full(n, ep_index, dtype=np.int64))
        rows["index"].append(np.arange(total, total + n, dtype=np.int64))
        rows["task_index"].append(np.full(n, task_index, dtype=np.int64))
        self.episode_rows.append(self._episode_row(ep_index, contents, n, action, state))
        self.total += n
        self.episodes.append(ConvertedEpisode(
            name=Path(bag).name, source=str(bag), robot=contents.robot, task=contents.task,
            timestamps=timeline.steps, state=state, action=action,
            frame_steps=np.arange(n), frame_times=timeline.steps, sync_error_s={},
            time_source=contents.time_source, time_source_reason=contents.time_source_reason,
            split=split, episode_start_s=contents.episode_start_s, dropped=contents.dropped))

    def _episode_row(self, ep_index: int, contents, n: int, action: np.ndarray, state: np.ndarray) -> dict:
        """meta/episodes row: length, where its frames and videos are, per-episode statistics."""
        chunk, file = divmod(ep_index, CHUNKS_SIZE)
        row = {"episode_index": ep_index, "tasks": [contents.task], "length": n,
               "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": self.total, "dataset_to_index": self.total + n,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for cam in contents.cameras:
            row.update({f"videos/{video_key(cam)}/chunk_index": chunk,
                        f"videos/{video_key(cam)}/file_index": file,
                        f"videos/{video_key(cam)}/from_timestamp": 0.0,
                        f"videos/{video_key(cam)}/to_timestamp": n / self.fps})
        for key, values in (("action", action), ("observation.state", state)):
            for stat, value in _vector_stats(values).items():
                row[f"stats/{key}/{stat}"] = value
        return row

    def write(self, out: Path, table_writer: Callable) -> None:
        """data/, meta/episodes/, meta/tasks.parquet and meta/stats.json."""
        data = {k: np.concatenate(v) for k, v in self.rows.items()}
        table_writer(out / DATA_PATH.format(chunk_index=0, file_index=0), data)
        table_writer(out / EPISODES_PATH.format(chunk_index=0, file_index=0),
                     {k: [r[k] for r in self.episode_rows] for k in self.episode_rows[0]})
        table_writer(out / TASKS_PATH, {"task_index": list(self.tasks.values()), "task": list(self.tasks)},
                     index_column="task")
        stats = {"action": _vector_stats(data["action"]),
                 "observation.state": _vector_stats(data["observation.state"])}
        stats.update({video_key(cam): s.result() for cam, s in self.image_stats.items()})
        ep.write_json_atomic(out / "meta" / "stats.json", stats)


def _features(video_shapes: dict[str, tuple[int, int]], fps: float) -> dict:
    """info.json `features`: joint vectors, one video per camera, the index columns."""
    features = {
        "action": {"dtype": "float32", "shape": [layout.DOF], "names": list(layout.JOINT_NAMES)},
        "observation.state": {"dtype": "float32", "shape": [layout.DOF],
                              "names": list(layout.JOINT_NAMES)},
    }
    for cam, (h, w) in video_shapes.items():
        features[video_key(cam)] = {
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": VIDEO_CODEC[1],
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False}}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _write_info(out: Path, tables: _Tables, robot_type: str | None, log) -> None:
    """meta/info.json: robot type (the episodes' one unless given), sizes, splits, features."""
    episodes, fps = tables.episodes, tables.fps
    robots = sorted({e.robot for e in episodes})
    if robot_type is None:
        robot_type = robots[0] if len(robots) == 1 else ("mixed" if robots else "unknown")
        if len(robots) > 1:
            log(f"warning: episodes from several robots {robots}; robot_type 'mixed'")
    n_train = sum(e.split == "train" for e in episodes)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    ep.write_json_atomic(out / "meta" / "info.json", {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type,
        "total_episodes": len(episodes), "total_frames": tables.total, "total_tasks": len(tables.tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{n_train}", **({"val": f"{n_train}:{len(episodes)}"}
                                                if n_train < len(episodes) else {})},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if tables.video_shapes else None,
        "features": _features(tables.video_shapes, fps),
    })
