"""Recorded episode bags -> training episodes for Motus (and, via lerobot.py, LeRobot v3).

Output layout of `convert(..., out)` (format "motus"):

    out/dataset.json                 episodes, splits, rates, joint names, tile size, failures
    out/stats.json                   per robot: min/max/mean/std per dimension of action and
                                     state (train episodes; all when no train episode)
    out/stats/<robot>.json           the same for one robot, in the format of
                                     motus_ros.policy.transforms.load_stats
    out/episodes/<bag name>/episode.json   source bag, robot, task, split, counts, sync errors
    out/episodes/<bag name>/data.npz       arrays:
        timestamps     (N,)  float64  seconds from episode start, control rate (30 Hz)
        state          (N,14) float32 follower joint positions (/puppet/joint_states), resampled
        action         (N,14) float32 leader joint positions (/master/joint_states; else the
                                      joint commands), resampled: the target at each step
        frame_times    (F,)  float64  seconds from episode start, video rate (5 Hz)
        frame_steps    (F,)  int64    control step index of each frame (timestamps[s] == frame_times)
        frames         (F,384,320,3) uint8 RGB, the three cameras tiled (the policy's
                                      transforms.tile_cameras; tiling.py when absent)

Episodes without joint data ("label-free": video only, for stage-2 pretraining on latent actions,
README "Training and evaluation"): a bag with camera topics but neither the follower joint states nor an action
topic, or any bag converted with `ConvertConfig(actions=False)` (`motus-ros convert --no-actions`,
the joint data withheld on purpose). Their data.npz has timestamps, frame_times, frame_steps and
frames (the same 30 Hz / 5 Hz timelines, spanning the cameras), and no state or action array;
their episode.json and their entry in dataset.json's "episodes" carry "has_actions": false. The key
is absent for episodes with joint data, so datasets written before read as they always did.
Statistics (stats.json, stats/<robot>.json) come from the episodes with joint data only: a robot
with none has no entry and no stats/<robot>.json, so training on real actions (stage 3) refuses
the dataset with a message saying so. The train/val split is drawn separately among the episodes
with and without joint data, so each kind keeps a train episode.
A bag with follower states but no action topic (or actions without states) is refused as before:
a recording that lost half of its joint data; `--no-actions` converts it without them.

Camera topics may hold sensor_msgs/Image or sensor_msgs/CompressedImage (JPEG/PNG, on
`<topic>/compressed`, as recorded with image_transport compressed); both are decoded to RGB.
Columns follow layout.JOINT_NAMES ([left 6 joints, left gripper, right 6, right gripper]).
Joint values are linearly interpolated at each control step; camera frames are the nearest
recorded image (the largest gap is stored per camera in episode.json).

Times are header stamps when they are sane on every topic, else the bag's receive times
(choose_time_source; the choice and its reason are stored in episode.json and logged). Header
stamps are preferred because receive times are when the recorder got to a message: a recorder
that lags behind a deep reliable history receives joint states late by up to that history (the
demo bags: 0.5 s of simulated time), which would skew states against images. A message repeated
byte for byte (a driver republishing its last reading) is dropped before the check.

A bag that holds a simulator reset (/sim/episode_start, std_msgs/Header stamped with the
simulated time of the new episode's first state) keeps only what follows the last reset: no
state, action or frame from before it is exported.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from motus_ros import layout
from motus_ros.data import episode as ep
from motus_ros.data import image_codec
from motus_ros.data import types as bag_types
from motus_ros.data.bag_repair import BagError, needs_repair
from motus_ros.data.tiling import TILE_HEIGHT, TILE_WIDTH, resolve_tiler

FORMAT_VERSION = 1
HEADER_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
                "sensor_msgs/msg/JointState"}


class ConvertError(Exception):
    """A bag that cannot become an episode; the message says why."""


@dataclass
class ConvertConfig:
    control_rate_hz: float = layout.CONTROL_RATE_HZ
    video_rate_hz: float = layout.VIDEO_RATE_HZ
    state_topic: str = layout.TOPICS["joint_states"]
    action_topics: tuple[str, ...] = (layout.TOPICS["leader_joint_states"],
                                      layout.TOPICS["joint_command"])
    camera_topics: dict[str, str] = field(default_factory=lambda: {
        c: layout.camera_image_topic(c) for c in layout.CAMERAS})
    instruction_topic: str = layout.TOPICS["instruction"]
    tile_height: int = TILE_HEIGHT
    tile_width: int = TILE_WIDTH
    val_fraction: float = 0.1
    seed: int = 0
    time_source: str = "auto"  # auto | header | log
    episode_start_topic: str = layout.TOPICS["episode_start"]   # std_msgs/Header: an episode reset
    compress: bool = True
    min_steps: int = 2
    actions: bool = True       # False: write no joint data (label-free episodes) even when the bag has it


@dataclass
class JointSeries:
    topic: str
    times: np.ndarray      # (M,) float64 seconds, increasing
    positions: np.ndarray  # (M, 14) float64, layout order


@dataclass
class CameraIndex:
    topic: str              # topic in the bag (may be <topic>/compressed)
    msgtype: str
    times: np.ndarray       # (K,) float64 seconds (bag order) of the usable images
    ordinals: np.ndarray    # (K,) int64: position of each usable image among the topic's messages


@dataclass
class BagContents:
    """Everything but the pixels of one bag (frames are read on demand)."""

    path: Path
    state: JointSeries | None     # None (with action): a label-free episode, see the module docstring
    action: JointSeries | None
    cameras: dict[str, CameraIndex]
    task: str
    robot: str
    sidecar: dict
    time_source: str          # header | log
    time_source_reason: str
    episode_start_s: float | None = None   # last reset in the bag (chosen clock), None: no reset
    dropped: dict = field(default_factory=dict)  # {"duplicates"|"before_reset": {topic: count}}


def expand_bag_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Bag folders as given; a folder of bag folders (e.g. data/episodes) is expanded."""
    result = []
    for path in map(Path, paths):
        is_bag = (path / "metadata.yaml").exists() or any(path.glob("*.mcap"))
        subs = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() and not is_bag else []
        bags = [p for p in subs if (p / "metadata.yaml").exists() or any(p.glob("*.mcap"))]
        result.extend(bags if bags else [path])
    return result


def _header_time(data: bytes, zero: float | None = None) -> float | None:
    """Stamp (s) of a CDR message whose first field is std_msgs/Header; `zero` if it is zero."""
    little = data[1] == 1  # CDR encapsulation: 0x0001 = little endian
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return zero if sec == 0 and nsec == 0 else sec + nsec * 1e-9


STALE_STAMP_FRACTION = 0.01  # more repeated header stamps than this: stamps are not trusted
# Median header-minus-receive time of every topic must lie in [-HEADER_MAX_DELAY_S,
# +HEADER_MAX_LEAD_S]. Stamps ahead of the recorder's clock cannot be delivery delay: another
# clock. Stamps behind it are delivery delay up to what a lagging recorder can hold back (its
# own and the publisher's keep-last histories, 2 x 100 joint states: 4 s at 50 Hz); beyond, or
# seconds of 1.7e9 (wall time against simulated time), another clock. The topics' offsets are not
# compared with each other: a recorder lagging on one deep topic offsets it from the others
# while its stamps stay true (the demo bags: joint states -0.5 s, cameras -0.1 s).
HEADER_MAX_LEAD_S = 0.5
HEADER_MAX_DELAY_S = 5.0


def header_problems(hdr: list, logs: list) -> list[str]:
    """Why one topic's header stamps (s, None = unset) cannot serve as its times; [] if they can.
    logs: the receive times (s) of the same messages."""
    if any(h is None for h in hdr):
        return ["has zero stamps"]
    problems = []
    h = np.asarray(hdr, dtype=np.float64)
    if len(h) > 1 and np.mean(np.diff(np.sort(h)) <= 0) > STALE_STAMP_FRACTION:
        problems.append("repeats stamps")
    if len(h):
        offset = float(np.median(h - np.asarray(logs, dtype=np.float64)))
        if not -HEADER_MAX_DELAY_S <= offset <= HEADER_MAX_LEAD_S:
            problems.append(f"stamps a clock that disagrees with the recording's (median stamp "
                            f"minus receive time {offset:+.3g} s, expected "
                            f"-{HEADER_MAX_DELAY_S:g}..+{HEADER_MAX_LEAD_S:g} s)")
    return problems


def choose_time_source(streams: dict[str, tuple[list, list]], mode: str) -> tuple[str, str]:
    """('header' | 'log', reason) for all topics of a bag; streams: topic -> (header s, log s).

    Header stamps are the better clock (camera exposure, the physics state or joint read they
    report; receive times add the recorder's delays) and are used in auto mode when every topic
    has them set, unrepeated (a node republishing a stale stamp with new data; byte-identical
    republications are removed before) and on the recording's clock (header_problems). Else
    receive times, with the reason.
    """
    if mode == "log":
        return "log", "requested"
    problems = [f"{topic} {problem}" for topic, (hdr, logs) in streams.items()
                for problem in header_problems(hdr, logs)]
    if not problems:
        return "header", "header stamps consistent"
    if mode == "header":
        raise ConvertError(f"time_source 'header' but {'; '.join(problems)}")
    return "log", "; ".join(problems)


def _joint_matrix(msgs: list, topic: str) -> np.ndarray:
    """JointState messages -> (M, 14) positions in layout order (by name when names are given)."""
    rows = np.empty((len(msgs), layout.DOF), dtype=np.float64)
    order_cache: dict[tuple, np.ndarray] = {}
    for i, msg in enumerate(msgs):
        names = tuple(msg.name)
        pos = np.asarray(msg.position, dtype=np.float64)
        if names not in order_cache:
            if names and set(layout.JOINT_NAMES) <= set(names):
                order_cache[names] = np.array([names.index(n) for n in layout.JOINT_NAMES])
            elif not names and pos.size == layout.DOF:
                order_cache[names] = np.arange(layout.DOF)
            else:
                missing = [n for n in layout.JOINT_NAMES if n not in names]
                raise ConvertError(f"{topic}: joint names {list(names)} lack {missing} "
                                   f"(expected the 14 names of layout.JOINT_NAMES)")
        order = order_cache[names]
        if pos.size <= order.max():
            raise ConvertError(f"{topic}: message {i} has {pos.size} positions for "
                               f"{len(names)} names")
        rows[i] = pos[order]
    if not np.all(np.isfinite(rows)):
        raise ConvertError(f"{topic}: NaN or inf joint positions")
    return rows


def _sorted_series(topic: str, times: np.ndarray, values: np.ndarray) -> JointSeries:
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate([[True], np.diff(times) > 0])  # np.interp needs increasing x
    return JointSeries(topic, times[keep], values[keep])


def read_bag(path: Path, cfg: ConvertConfig) -> BagContents:
    """Joint states, camera stamps, task and robot of one bag; raises ConvertError/BagError."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise ConvertError("no such bag folder")
    if path.is_dir() and not (path / "metadata.yaml").exists() and not any(path.glob("*.mcap")):
        raise ConvertError("not a bag folder (no metadata.yaml, no .mcap file)")
    if needs_repair(path):
        raise ConvertError("bag was not closed (recorder crashed?): no metadata.yaml or no MCAP "
                           f"footer; run `motus-ros bag repair {path}` first")
    store = bag_types.typestore()
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        if reader.message_count == 0:
            raise ConvertError("empty bag: 0 messages")
        has_state = cfg.state_topic in conns and conns[cfg.state_topic].msgcount > 0
        action_topic = next((t for t in cfg.action_topics if t in conns and conns[t].msgcount), None)
        hint = "; `--no-actions` converts it without joint data"
        if cfg.actions and action_topic is not None and not has_state:
            raise ConvertError(f"no follower joint states on {cfg.state_topic} (topics: "
                               f"{sorted(conns)}){hint}")
        if cfg.actions and has_state and action_topic is None:
            raise ConvertError(f"no actions: none of {list(cfg.action_topics)} has messages "
                               f"(topics: {sorted(conns)}){hint}")
        # Neither joint topic (a camera-only recording) or joint data withheld: label-free.
        joint_topics = (cfg.state_topic, action_topic) if cfg.actions and has_state else ()
        cam_conns = {}
        for cam, topic in cfg.camera_topics.items():
            for candidate in (topic, image_codec.compressed_topic(topic)):
                if candidate in conns and conns[candidate].msgcount:
                    cam_conns[cam] = conns[candidate]
                    break
            else:
                raise ConvertError(f"no images for camera {cam} on {topic} (topics: {sorted(conns)})")
        kept = {t: _Kept() for t in (*joint_topics, *(c.topic for c in cam_conns.values()))}
        instructions: list[str] = []
        resets: list[tuple[float, float]] = []   # (header s, receive s) of episode starts
        wanted = [*(conns[t] for t in joint_topics), *cam_conns.values()]
        for extra in (cfg.instruction_topic, cfg.episode_start_topic):
            if extra in conns:
                wanted.append(conns[extra])
        for conn, log_ns, raw in reader.messages(connections=wanted):
            if conn.topic in kept:
                joint = conn.topic in joint_topics
                kept[conn.topic].add(raw, log_ns * 1e-9,
                                     store.deserialize_cdr(raw, conn.msgtype) if joint else None)
            elif conn.topic == cfg.instruction_topic:
                instructions.append(store.deserialize_cdr(raw, conn.msgtype).data)
            elif conn.topic == cfg.episode_start_topic:
                resets.append((_header_time(raw, zero=0.0), log_ns * 1e-9))
    source, reason = choose_time_source({t: (k.hdr, k.logs) for t, k in kept.items()}, cfg.time_source)
    duplicates = {t: k.duplicates for t, k in kept.items() if k.duplicates}
    if duplicates and source == "header":
        reason += " (dropped byte-identical republications: " + ", ".join(
            f"{t} {n}" for t, n in duplicates.items()) + ")"
    times = {t: np.asarray(k.hdr if source == "header" else k.logs, dtype=np.float64)
             for t, k in kept.items()}
    # The episode starts at the last reset the bag holds; what precedes it is the old episode.
    # On receive times, a topic whose own stamps are sane is also cut at the reset's stamp: the
    # recorder may have received the old episode's last messages after the reset.
    start = max((h if source == "header" else r for h, r in resets), default=None)
    marker_ok = bool(resets) and not header_problems([h for h, _ in resets], [r for _, r in resets])
    start_stamp = max(h for h, _ in resets) if marker_ok else None
    before = {}
    keep = {}
    for topic, t in times.items():
        keep[topic] = t >= start if start is not None else np.ones(len(t), dtype=bool)
        k = kept[topic]
        if source == "log" and start_stamp is not None and not header_problems(k.hdr, k.logs):
            keep[topic] &= np.asarray(k.hdr, dtype=np.float64) >= start_stamp
        before[topic] = int(np.count_nonzero(~keep[topic]))
        if not keep[topic].any():
            raise ConvertError(f"{topic}: no message after the episode reset at {start:.3f} s "
                               f"({source} time; {len(t)} before it)")
    series = {topic: _sorted_series(topic, times[topic][keep[topic]],
                                    _joint_matrix(kept[topic].msgs, topic)[keep[topic]])
              for topic in joint_topics}
    cameras = {}
    for cam, conn in cam_conns.items():
        k, mask = kept[conn.topic], keep[conn.topic]
        cameras[cam] = CameraIndex(conn.topic, conn.msgtype, times[conn.topic][mask],
                                   np.asarray(k.ordinals, dtype=np.int64)[mask])
    dropped = {key: counts for key, counts in (
        ("duplicates", duplicates), ("before_reset", {t: n for t, n in before.items() if n}))
        if counts}
    sidecar = ep.read_sidecar(path)
    task = sidecar.get("task") or (instructions[-1] if instructions else "")
    return BagContents(path, series.get(cfg.state_topic), series.get(action_topic), cameras, task,
                       sidecar.get("robot_profile") or "unknown", sidecar, source, reason,
                       start, dropped)


class _Kept:
    """One topic's messages as read: header and receive times (s), bag ordinals, and for joint
    topics the decoded messages. A message equal byte for byte to the topic's previous one (a
    node republishing its last reading, stamp included) is counted and left out."""

    def __init__(self):
        self.hdr: list[float | None] = []
        self.logs: list[float] = []
        self.ordinals: list[int] = []
        self.msgs: list = []
        self.duplicates = 0
        self._count = 0
        self._previous: bytes | None = None

    def add(self, raw: bytes, log_s: float, msg) -> None:
        ordinal, self._count = self._count, self._count + 1
        raw = bytes(raw)
        if raw == self._previous:
            self.duplicates += 1
            return
        self._previous = raw
        self.hdr.append(_header_time(raw))
        self.logs.append(log_s)
        self.ordinals.append(ordinal)
        if msg is not None:
            self.msgs.append(msg)


def _nearest(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the nearest element of `times` (any order) for each query time."""
    order = np.argsort(times, kind="stable")
    sorted_t = times[order]
    idx = np.clip(np.searchsorted(sorted_t, query), 1, len(sorted_t) - 1) if len(sorted_t) > 1 \
        else np.zeros(len(query), dtype=int)
    if len(sorted_t) > 1:
        left_closer = (query - sorted_t[idx - 1]) <= (sorted_t[idx] - query)
        idx = np.where(left_closer, idx - 1, idx)
    return order[idx]


@dataclass
class Timeline:
    t0: float                 # absolute seconds of step 0
    steps: np.ndarray         # (N,) seconds from t0
    frame_steps: np.ndarray   # (F,) indices into steps

    @property
    def frame_times(self) -> np.ndarray:
        return self.steps[self.frame_steps]


def make_timeline(contents: BagContents, cfg: ConvertConfig) -> Timeline:
    """Control-rate grid over the span every stream covers; frames every rate/video_rate steps."""
    joints = [s.times for s in (contents.state, contents.action) if s is not None]
    streams = [*joints, *(c.times for c in contents.cameras.values())]
    t0 = max(float(s.min()) for s in streams)
    t1 = min(float(s.max()) for s in streams)
    n = int(np.floor((t1 - t0) * cfg.control_rate_hz + 1e-9)) + 1 if t1 >= t0 else 0
    if n < cfg.min_steps:
        raise ConvertError(f"too short: the streams overlap for {max(0.0, t1 - t0):.3f} s, "
                           f"{n} control steps (need {cfg.min_steps})")
    ratio = cfg.control_rate_hz / cfg.video_rate_hz
    if abs(ratio - round(ratio)) > 1e-9:
        raise ConvertError(f"control rate {cfg.control_rate_hz} Hz is not a multiple of the "
                           f"video rate {cfg.video_rate_hz} Hz")
    steps = np.arange(n, dtype=np.float64) / cfg.control_rate_hz
    return Timeline(t0, steps, np.arange(0, n, int(round(ratio)), dtype=np.int64))


def resample(series: JointSeries, t0: float, steps: np.ndarray) -> np.ndarray:
    """Linear interpolation of every joint at t0 + steps -> (N, 14) float32."""
    query = t0 + steps
    return np.stack([np.interp(query, series.times, series.positions[:, j])
                     for j in range(series.positions.shape[1])], axis=1).astype(np.float32)


def stream_frames(contents: BagContents, times_abs: np.ndarray,
                  sink: Callable[[str, int, np.ndarray], None]) -> dict[str, float]:
    """Call sink(cam, i, rgb) with the image nearest times_abs[i], for every camera and i, in
    increasing i per camera, reading the bag once; returns the largest time gap (s) per camera."""
    from rosbags.rosbag2 import Reader
    store = bag_types.typestore()
    picks, errors = {}, {}
    for cam, index in contents.cameras.items():
        chosen = _nearest(index.times, times_abs)
        targets: dict[int, list[int]] = {}   # message ordinal in the topic -> output indices
        for out_i, msg_i in enumerate(chosen):
            targets.setdefault(int(index.ordinals[msg_i]), []).append(out_i)
        picks[index.topic] = (cam, targets)
        errors[cam] = float(np.max(np.abs(index.times[chosen] - times_abs))) if len(chosen) else 0.0
    counters = {topic: 0 for topic in picks}
    next_out = {cam: 0 for cam, _ in picks.values()}
    pending: dict[str, dict[int, np.ndarray]] = {cam: {} for cam, _ in picks.values()}
    with Reader(contents.path) as reader:
        conns = [c for c in reader.connections if c.topic in picks]
        for conn, _, raw in reader.messages(connections=conns):
            i = counters[conn.topic]
            counters[conn.topic] += 1
            cam, targets = picks[conn.topic]
            if i not in targets:
                continue
            msg = store.deserialize_cdr(raw, conn.msgtype)
            try:   # CompressedImage (JPEG/PNG, e.g. recorded with image_transport compressed) or Image
                compressed = conn.msgtype == bag_types.COMPRESSED_IMAGE_TYPE
                img = (image_codec.decode_compressed(msg) if compressed
                       else image_codec.image_to_rgb(msg))
            except ValueError as exc:
                raise ConvertError(f"camera {cam}: message {i} on {conn.topic}: {exc}") from None
            for out_i in targets[i]:
                pending[cam][out_i] = img
            while next_out[cam] in pending[cam]:  # deliver in order even if stamps are not
                sink(cam, next_out[cam], pending[cam].pop(next_out[cam]))
                next_out[cam] += 1
    for cam, n in next_out.items():
        if n != len(times_abs):
            raise ConvertError(f"camera {cam}: only {n} of {len(times_abs)} frames could be read")
    return errors


def read_frames(contents: BagContents, times_abs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """cam -> (F,H,W,3) uint8 RGB of the image nearest each absolute time; largest gap per cam."""
    frames: dict[str, list] = {cam: [] for cam in contents.cameras}
    errors = stream_frames(contents, times_abs, lambda cam, i, img: frames[cam].append(img))
    result = {}
    for cam, imgs in frames.items():
        shapes = {img.shape for img in imgs}
        if len(shapes) > 1:
            raise ConvertError(f"camera {cam}: image size changes during the episode {sorted(shapes)}")
        result[cam] = np.stack(imgs)
    return result, errors


@dataclass
class ConvertedEpisode:
    name: str
    source: str
    robot: str
    task: str
    timestamps: np.ndarray
    state: np.ndarray | None       # None (with action): no joint data, see the module docstring
    action: np.ndarray | None
    frame_steps: np.ndarray
    frame_times: np.ndarray
    sync_error_s: dict[str, float]
    time_source: str
    time_source_reason: str = ""
    split: str = "train"
    episode_start_s: float | None = None   # reset the episode starts from (None: none in the bag)
    dropped: dict = field(default_factory=dict)  # messages left out, per reason and topic

    @property
    def has_actions(self) -> bool:
        """False for a label-free episode (frames only)."""
        return self.state is not None and self.action is not None


def convert_bag(path: Path, cfg: ConvertConfig, tiler: Callable | None = None,
                log: Callable[[str], None] | None = None) -> tuple[ConvertedEpisode, np.ndarray]:
    """One bag -> (episode arrays, tiled frames (F,H,W,3) uint8)."""
    contents = read_bag(path, cfg)
    warn_receive_times(path, contents, cfg, log or _log)
    if contents.state is None and cfg.actions:
        (log or _log)(f"note: {path}: no joint topics; converted as a label-free episode (frames only)")
    timeline = make_timeline(contents, cfg)
    labeled = contents.state is not None
    state = resample(contents.state, timeline.t0, timeline.steps) if labeled else None
    action = resample(contents.action, timeline.t0, timeline.steps) if labeled else None
    views, errors = read_frames(contents, timeline.t0 + timeline.frame_times)
    tiler = tiler or resolve_tiler()
    cams = list(layout.CAMERAS)
    frames = np.stack([tiler(*(views[c][i] for c in cams), height=cfg.tile_height,
                             width=cfg.tile_width) for i in range(len(timeline.frame_steps))])
    episode = ConvertedEpisode(
        name=Path(path).name, source=str(path), robot=contents.robot, task=contents.task,
        timestamps=timeline.steps, state=state, action=action, frame_steps=timeline.frame_steps,
        frame_times=timeline.frame_times, sync_error_s=errors,
        time_source=contents.time_source, time_source_reason=contents.time_source_reason,
        episode_start_s=contents.episode_start_s, dropped=contents.dropped)
    return episode, frames


def warn_receive_times(bag, contents: BagContents, cfg: ConvertConfig,
                       log: Callable[[str], None]) -> None:
    """Say so when auto mode had to fall back to receive times (states and images may be skewed
    by the recorder's delays)."""
    if cfg.time_source == "auto" and contents.time_source == "log":
        log(f"warning: {bag}: header stamps not usable ({contents.time_source_reason}); using "
            "receive times, which carry the recorder's delays")


def assign_splits(names: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Deterministic train/val split by episode name; at least one train episode."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: got {val_fraction}, expected 0 <= value < 1")
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(names) * val_fraction))
    n_val = min(n_val, max(0, len(names) - 1))
    return {name: ("val" if i < n_val else "train") for i, name in enumerate(shuffled)}


def compute_stats(episodes: list[ConvertedEpisode]) -> dict:
    """Per robot, per key (action, state): min/max/mean/std per dimension over train episodes
    with joint data (all of its episodes with joint data when none is in train); a robot with no
    such episode has no entry."""
    stats = {}
    labeled = [e for e in episodes if e.has_actions]
    for robot in sorted({e.robot for e in labeled}):
        mine = [e for e in labeled if e.robot == robot]
        used = [e for e in mine if e.split == "train"] or mine
        entry = {"episodes": len(used), "steps": int(sum(len(e.timestamps) for e in used)),
                 "names": list(layout.JOINT_NAMES)}
        for key in ("action", "state"):
            data = np.concatenate([getattr(e, key) for e in used]).astype(np.float64)
            entry[key] = {"min": data.min(0).tolist(), "max": data.max(0).tolist(),
                          "mean": data.mean(0).tolist(), "std": data.std(0).tolist()}
        stats[robot] = entry
    return stats


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def write_episode(root: Path, episode: ConvertedEpisode, frames: np.ndarray, compress: bool) -> Path:
    """Write episode folder atomically (temp folder + rename)."""
    final = root / "episodes" / episode.name
    tmp = root / "episodes" / f".{episode.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save = np.savez_compressed if compress else np.savez
    joints = {"state": episode.state, "action": episode.action} if episode.has_actions else {}
    save(tmp / "data.npz", timestamps=episode.timestamps, **joints,
         frame_times=episode.frame_times, frame_steps=episode.frame_steps, frames=frames)
    meta = {k: v for k, v in asdict(episode).items()
            if not isinstance(v, np.ndarray) and k not in ("state", "action")}
    if not episode.has_actions:
        meta["has_actions"] = False
    meta.update({"format_version": FORMAT_VERSION, "steps": int(len(episode.timestamps)),
                 "frames": int(len(episode.frame_steps)), "frame_shape": list(frames.shape[1:]),
                 "joint_names": list(layout.JOINT_NAMES)})
    ep.write_json_atomic(tmp / "episode.json", meta)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


@dataclass
class ConvertReport:
    episodes: list[ConvertedEpisode]
    failures: list[tuple[str, str]]  # (bag, problem)

    @property
    def ok(self) -> bool:
        return bool(self.episodes)


def _log(text: str) -> None:
    from tqdm import tqdm
    tqdm.write(text, file=sys.stderr)  # keeps the progress bar intact


def read_or_skip(bag, work: Callable[[], object], failures: list[tuple[str, str]],
                 log: Callable[[str], None]):
    """work() for one bag, or None after recording (bag, problem) in failures and logging it:
    a malformed bag is reported by name and skipped, it never stops the batch."""
    try:
        return work()
    except (ConvertError, BagError) as exc:
        failures.append((str(bag), str(exc)))
        log(f"skipped {bag}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a malformed bag must not stop the batch
        failures.append((str(bag), f"{type(exc).__name__}: {exc}"))
        log(f"skipped {bag}: unreadable bag ({type(exc).__name__}: {exc})")
    return None


def finalize_dataset(out: Path, episodes: list[ConvertedEpisode], cfg: ConvertConfig,
                     failures: list[tuple[str, str]], source: str) -> None:
    """Train/val split into each episode.json, per-robot statistics (stats.json, stats/<robot>.json)
    and dataset.json over episodes already written under out/episodes/."""
    # Split among the episodes with joint data and among those without, each keeping a train
    # episode; a dataset of one kind splits exactly as before label-free episodes existed.
    splits = {}
    for group in ([e for e in episodes if e.has_actions], [e for e in episodes if not e.has_actions]):
        splits.update(assign_splits([e.name for e in group], cfg.val_fraction, cfg.seed))
    for e in episodes:
        e.split = splits[e.name]
        meta_path = out / "episodes" / e.name / "episode.json"
        meta = json.loads(meta_path.read_text())
        meta["split"] = e.split
        ep.write_json_atomic(meta_path, meta)
    stats = compute_stats(episodes) if episodes else {}
    ep.write_json_atomic(out / "stats.json", stats)
    for robot, entry in stats.items():
        (out / "stats").mkdir(exist_ok=True)
        ep.write_json_atomic(out / "stats" / f"{robot}.json", {
            "action": entry["action"], "state": entry["state"], "names": entry["names"],
            "source": f"{source}: {entry['episodes']} episode(s), {entry['steps']} steps"})
    ep.write_json_atomic(out / "dataset.json", {
        "format": "motus_ros episodes", "format_version": FORMAT_VERSION,
        "control_rate_hz": cfg.control_rate_hz, "video_rate_hz": cfg.video_rate_hz,
        "joint_names": list(layout.JOINT_NAMES), "cameras": list(layout.CAMERAS),
        "tile": {"height": cfg.tile_height, "width": cfg.tile_width},
        "episodes": [{"name": e.name, "split": e.split, "robot": e.robot, "task": e.task,
                      "steps": int(len(e.timestamps)), "source": e.source,
                      **({} if e.has_actions else {"has_actions": False})} for e in episodes],
        "splits": {s: [e.name for e in episodes if e.split == s] for s in ("train", "val")},
        "failures": [{"bag": b, "problem": p} for b, p in failures],
    })


def convert(bags: list[Path], out: Path, cfg: ConvertConfig | None = None, progress: bool = True,
            log: Callable[[str], None] = _log) -> ConvertReport:
    """Convert every bag; a bad bag is reported (name + problem) and skipped, never fatal."""
    from tqdm import tqdm
    cfg = cfg or ConvertConfig()
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    tiler = resolve_tiler()
    episodes, failures, taken = [], [], set()
    for bag in tqdm(bags, desc="convert", unit="bag", disable=not progress, file=sys.stderr):
        result = read_or_skip(bag, lambda: convert_bag(bag, cfg, tiler, log), failures, log)
        if result is None:
            continue
        episode, frames = result
        episode.name = _unique_name(episode.name, taken)
        write_episode(out, episode, frames, cfg.compress)
        episodes.append(episode)
    finalize_dataset(out, episodes, cfg, failures, "motus-ros convert")
    return ConvertReport(episodes, failures)
