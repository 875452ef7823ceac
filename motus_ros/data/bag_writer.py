"""rosbag2 (MCAP, version 9) writer for raw CDR messages, built on rosbags, with periodic flushes
and split files.

Layout, as rosbag2 writes it: `<bag>/metadata.yaml` and `<bag>/<bag>_0.mcap`, `<bag>_1.mcap`, ...
With `max_file_duration_s` > 0 a file is closed (MCAP summary and footer written, fsynced) as soon
as a message would make it span more than that much bag time (message timestamps, as rosbag2's
`--max-bag-duration`), and the next file opens. metadata.yaml is rewritten at every split: it
lists every closed file with its message counts and times, and the open file (0 messages so far),
and carries `custom_data: {motus.state: recording}` until the bag is closed.

Crash safety: rosbags keeps the MCAP chunk being filled in memory (up to 1 MiB). `flush()` closes
the pending chunk and pushes it to the file (and optionally fsyncs), so after a SIGKILL the open
file holds every message up to the last flush, and every closed file is a complete MCAP that any
reader opens; `motus_ros.data.bag_repair` terminates the open file and regenerates metadata.yaml.

Topics carry `offered_qos_profiles` (the publishers' QoS, rosbag2 version-9 format: a list of
{history, depth, reliability, durability, deadline, lifespan, liveliness,
liveliness_lease_duration, avoid_ros_namespace_conventions}) in metadata.yaml and in each MCAP
channel's metadata, so `ros2 bag play` offers what the recorded publishers offered.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapWriter

from motus_ros.data import types as bag_types

BAG_VERSION = 9  # rosbag2 metadata version written (Jazzy/Kilted read it)
STATE_KEY = "motus.state"  # custom_data key: "recording" while the recorder still writes the bag
STATE_RECORDING = "recording"
ROS_DISTRO = "rosbags"


def mcap_name(bag_dir: str | os.PathLike, index: int = 0) -> str:
    """rosbag2's name for split file `index` of a bag folder: <dir name>_<index>.mcap."""
    return f"{Path(bag_dir).name}_{int(index)}.mcap"


def mcap_path(bag_dir: str | os.PathLike, index: int = 0) -> Path:
    """Path of split file `index` (the first by default) inside a bag folder."""
    return Path(bag_dir) / mcap_name(bag_dir, index)


def split_index(bag_dir: str | os.PathLike, name: str) -> int | None:
    """The split index of a file named <dir name>_<n>.mcap, None for any other name."""
    match = re.fullmatch(re.escape(Path(bag_dir).name) + r"_(\d+)\.mcap", name)
    return int(match.group(1)) if match else None


# --- QoS -------------------------------------------------------------------------------------
def _enum(enum, name: str, unknown):
    return enum.__members__.get(str(name).upper(), unknown)


def _qos_time(duration) -> QosTime:
    """rclpy Duration (or ns int) -> rosbag2 {sec, nsec}; infinite is 9223372036 s 854775807 ns."""
    ns = int(getattr(duration, "nanoseconds", duration))
    return QosTime(ns // 10**9, ns % 10**9)


def qos_from_rclpy(profile) -> Qos:
    """An rclpy QoSProfile (e.g. TopicEndpointInfo.qos_profile) as a rosbags Qos."""
    return Qos(
        _enum(QosHistory, profile.history.name, QosHistory.UNKNOWN),
        int(profile.depth),
        _enum(QosReliability, profile.reliability.name, QosReliability.UNKNOWN),
        _enum(QosDurability, profile.durability.name, QosDurability.UNKNOWN),
        _qos_time(profile.deadline),
        _qos_time(profile.lifespan),
        _enum(QosLiveliness, profile.liveliness.name, QosLiveliness.UNKNOWN),
        _qos_time(profile.liveliness_lease_duration),
        bool(profile.avoid_ros_namespace_conventions),
    )


def dump_qos(profiles: Sequence[Qos]) -> list[dict]:
    """rosbag2 version-9 offered_qos_profiles: a list of dicts with lower-case policy names."""
    return dump_qos_v9(list(profiles))


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~50x faster than ruamel here


def _dump_yaml(data) -> str:
    """Block-style YAML in the given key order (rosbag2's order for metadata.yaml)."""
    return yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=256)
def _qos_text(profiles: tuple[Qos, ...]) -> str:
    """offered_qos_profiles as stored in an MCAP channel's metadata (a YAML string)."""
    return _dump_yaml(dump_qos(profiles)).strip()


def write_metadata_yaml(bag_dir: str | os.PathLike, metadata: dict, fsync: bool = False) -> None:
    """Write metadata.yaml atomically (temp file + rename), optionally synced to disk."""
    bag_dir = Path(bag_dir)
    tmp = bag_dir / "metadata.yaml.tmp"
    with tmp.open("w", encoding="utf8") as f:
        f.write(_dump_yaml(metadata))
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, bag_dir / "metadata.yaml")
    if fsync:
        _fsync_dir(bag_dir)


@dataclass
class FileStats:
    """What one MCAP file of a bag holds."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)  # topic -> messages
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def add(self, topic: str, timestamp_ns: int) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.start_ns = timestamp_ns if self.start_ns is None else min(self.start_ns, timestamp_ns)
        self.end_ns = timestamp_ns if self.end_ns is None else max(self.end_ns, timestamp_ns)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    type_description_hash: str
    offered_qos_profiles: tuple[Qos, ...] = ()
    serialization_format: str = "cdr"


def bag_metadata(files: Sequence[FileStats], topics: Iterable[TopicInfo], *,
                 custom_data: dict[str, str] | None = None,
                 counted_files: Sequence[FileStats] | None = None) -> dict:
    """rosbag2 metadata.yaml content (version 9) for the given files; counts, start and duration
    come from `counted_files` (default: all of them)."""
    counted = list(files if counted_files is None else counted_files)
    totals: dict[str, int] = {}
    for f in counted:
        for topic, n in f.counts.items():
            totals[topic] = totals.get(topic, 0) + n
    starts = [f.start_ns for f in counted if f.start_ns is not None]
    ends = [f.end_ns for f in counted if f.end_ns is not None]
    start = min(starts) if starts else 0
    duration = max(ends) - start if starts else 0

    def file_entry(f: FileStats) -> dict:
        f_start = f.start_ns or 0
        return {"path": f.name, "starting_time": {"nanoseconds_since_epoch": f_start},
                "duration": {"nanoseconds": (f.end_ns - f_start) if f.end_ns is not None else 0},
                "message_count": f.message_count}

    return {"rosbag2_bagfile_information": {
        "version": BAG_VERSION, "storage_identifier": "mcap",
        "relative_file_paths": [f.name for f in files],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(totals.values()),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.msgtype,
                                "serialization_format": t.serialization_format,
                                "offered_qos_profiles": dump_qos(t.offered_qos_profiles),
                                "type_description_hash": t.type_description_hash},
             "message_count": totals.get(t.name, 0)}
            for t in topics],
        "compression_format": "", "compression_mode": "",
        "files": [file_entry(f) for f in files],
        "custom_data": dict(custom_data or {}),
        "ros_distro": ROS_DISTRO,
    }}


# --- one MCAP file -----------------------------------------------------------------------------
class _FileTarget:
    """Stands in for the folder path rosbags' McapWriter expects: `folder / f'{folder.name}.mcap'`
    evaluates to the file we want, so the split files get rosbag2's names."""

    def __init__(self, file: Path):
        self.file = file
        self.name = file.stem

    def __truediv__(self, _name: str) -> Path:
        return self.file


class _McapFile(McapWriter):
    """rosbags' MCAP storage writer (chunks, message indexes, summary) on a file we name."""

    def __init__(self, file: Path):
        super().__init__(_FileTarget(file), CompressionMode.NONE)  # type: ignore[arg-type]
        # Private rosbags internals used by BagWriter.flush(); fail early and clearly if they change.
        for attr in ("close_chunk", "chunk", "bio"):
            if not hasattr(self, attr):
                self.bio.close()
                raise RuntimeError(f"rosbags McapWriter lacks '{attr}': the periodic-flush crash "
                                   "safety needs rosbags 0.11.x")
        if Path(self.path) != file:
            self.bio.close()
            raise RuntimeError(f"rosbags McapWriter wrote {self.path}, expected {file}: the split "
                               "file naming needs rosbags 0.11.x")


class BagWriter:
    """One rosbag2 MCAP bag, optionally split into files of bounded duration: topics are added
    once (with their publishers' QoS), raw CDR messages written with ns timestamps."""

    def __init__(self, bag_dir: str | os.PathLike, flush_period_s: float = 1.0, fsync: bool = True,
                 clock: Callable[[], float] = time.monotonic, max_file_duration_s: float = 0.0):
        self.path = Path(bag_dir)
        self.flush_period_s = float(flush_period_s)
        self.fsync = bool(fsync)
        self.max_file_duration_s = float(max_file_duration_s)
        if self.max_file_duration_s < 0:
            raise ValueError(f"max_file_duration_s: got {max_file_duration_s}, expected >= 0")
        self._max_ns = int(self.max_file_duration_s * 1e9)
        self._clock = clock
        self._storage: _McapFile | None = None
        self._connections: dict[str, Connection] = {}
        self._topics: dict[str, TopicInfo] = {}
        self.types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.files: list[FileStats] = []   # closed files, then the open one (the last)
        self.bytes_written = 0
        self.flushes = 0
        self.splits = 0
        self.split_seconds: list[float] = []  # wall time each split took (close + open + yaml)
        self._last_flush = clock()
        self._open = False

    # --- lifecycle ---
    def open(self) -> "BagWriter":
        try:
            self.path.mkdir(mode=0o755, parents=True)
        except FileExistsError:
            raise FileExistsError(f"{self.path} exists already, not overwriting") from None
        try:
            self._open_file(0)
            self._open = True
            self._write_metadata(recording=True)
        except BaseException:
            if self._storage is not None:
                self._storage.abort()
                self._storage = None
            self._open = False
            raise
        return self

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in self.files]

    @property
    def current_file(self) -> Path:
        return self.path / self.files[-1].name

    @property
    def topics(self) -> list[TopicInfo]:
        return list(self._topics.values())

    def _open_file(self, index: int) -> None:
        name = mcap_name(self.path, index)
        storage = _McapFile(self.path / name)
        try:
            added_types: set[str] = set()
            for topic, conn in self._connections.items():
                self._register(storage, conn, added_types)
        except BaseException:
            storage.abort()
            raise
        self._storage = storage
        self.files.append(FileStats(name))

    @staticmethod
    def _register(storage: _McapFile, conn: Connection, added_types: set[str]) -> None:
        if conn.msgtype not in added_types:
            storage.add_msgtype(conn)
            added_types.add(conn.msgtype)
        storage.add_connection(conn, _qos_text(tuple(conn.ext.offered_qos_profiles)))

    def _close_file(self) -> None:
        """Write the open file's summary and footer, close it (and fsync it)."""
        storage, self._storage = self._storage, None
        current = self.files[-1]
        text = _dump_yaml(bag_metadata([current], self.topics)["rosbag2_bagfile_information"])
        storage.close(BAG_VERSION, text.strip())  # the rosbag2 metadata record inside the MCAP
        if self.fsync:
            fd = os.open(self.path / current.name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_metadata(self, recording: bool, custom_data: dict[str, str] | None = None) -> None:
        custom = dict(custom_data or {})
        if recording:  # counts and times from the closed files only; the open one is listed
            custom[STATE_KEY] = STATE_RECORDING
            metadata = bag_metadata(self.files, self.topics, custom_data=custom,
                                    counted_files=self.files[:-1])
        else:
            metadata = bag_metadata(self.files, self.topics, custom_data=custom)
        write_metadata_yaml(self.path, metadata, fsync=self.fsync)

    # --- topics and messages ---
    def add_topic(self, topic: str, msgtype: str, offered_qos_profiles: Sequence[Qos] = ()) -> None:
        """Register a topic with its type (definition and RIHS01 hash from the typestore) and the
        QoS profiles its publishers offer (stored in metadata.yaml and the MCAP channel)."""
        msgtype = bag_types.normalize_type(msgtype)
        if topic in self._connections:
            if self.types[topic] != msgtype:
                raise ValueError(f"topic {topic}: already recorded as {self.types[topic]}, "
                                 f"got a second type {msgtype}")
            return
        if self._storage is None:
            raise RuntimeError(f"bag {self.path} is not open")
        msgdef, rihs01 = bag_types.msgdef_and_hash(msgtype)
        fmt = (MessageDefinitionFormat.IDL if msgdef.startswith("=" * 80 + "\nIDL: ")
               else MessageDefinitionFormat.MSG)
        qos = tuple(offered_qos_profiles)
        conn = Connection(id=len(self._connections) + 1, topic=topic, msgtype=msgtype,
                          msgdef=MessageDefinition(fmt, msgdef), digest=rihs01, msgcount=0,
                          ext=ConnectionExtRosbag2(serialization_format="cdr",
                                                   offered_qos_profiles=list(qos)),
                          owner=self)
        added = {s.name for s in self._storage.schemas}
        self._register(self._storage, conn, added)
        self._connections[topic] = conn
        self._topics[topic] = TopicInfo(topic, msgtype, rihs01, qos)
        self.types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Append one serialized message (stored as given, never re-serialized); opens the next
        split file first when this message would make the open one longer than the limit."""
        timestamp_ns = int(timestamp_ns)
        conn = self._connections[topic]
        current = self.files[-1]
        if (self._max_ns and current.start_ns is not None
                and timestamp_ns - current.start_ns > self._max_ns):
            self.split()
            current = self.files[-1]
        self._storage.write(conn, timestamp_ns, data)
        current.add(topic, timestamp_ns)
        self.counts[topic] += 1
        self.bytes_written += len(data)
        if self.flush_period_s > 0 and self._clock() - self._last_flush >= self.flush_period_s:
            self.flush()

    def split(self) -> Path:
        """Close the open file (summary, footer, fsync), open the next one and rewrite
        metadata.yaml; returns the new file."""
        if not self._open:
            raise RuntimeError(f"bag {self.path} is not open")
        t0 = time.perf_counter()
        self._close_file()
        self._open_file(len(self.files))
        self._write_metadata(recording=True)
        self.splits += 1
        self.split_seconds.append(time.perf_counter() - t0)
        self._last_flush = self._clock()
        return self.current_file

    def flush(self) -> None:
        """Close the pending MCAP chunk and push it to disk: data so far survives a crash."""
        storage = self._storage
        if storage is None:
            return
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        if self.fsync:
            os.fsync(storage.bio.fileno())
        self.flushes += 1
        self._last_flush = self._clock()

    def maybe_flush(self) -> bool:
        """Flush when data is pending and flush_period_s passed since the last flush."""
        storage = self._storage
        if (storage is None or self.flush_period_s <= 0 or not storage.chunk.bio.tell()
                or self._clock() - self._last_flush < self.flush_period_s):
            return False
        self.flush()
        return True

    def close(self, custom_data: dict[str, str] | None = None) -> Path:
        """Write the open file's summary and the final metadata.yaml; returns the bag folder."""
        if not self._open:
            return self.path
        try:
            self._close_file()
            self._write_metadata(recording=False,
                                 custom_data={str(k): str(v) for k, v in (custom_data or {}).items()})
        finally:
            self._open = False
        return self.path

    def abandon(self) -> None:
        """Close the file handle without summary (as a crash would leave it); metadata.yaml still
        says the bag is recording, so `bag_repair` knows it must be repaired."""
        if self._open:
            try:
                if self._storage is not None:
                    self._storage.abort()
            finally:
                self._storage = None
                self._open = False

    def discard(self) -> None:
        """Abandon the bag and delete its folder."""
        self.abandon()
        shutil.rmtree(self.path, ignore_errors=True)
