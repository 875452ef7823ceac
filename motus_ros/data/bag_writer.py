"""rosbag2 (MCAP, version 9) writer for raw CDR messages, built on rosbags, with periodic flushes.

Crash safety: rosbags keeps the MCAP chunk being filled in memory (up to 1 MiB) and writes the
summary and metadata.yaml only on close. `flush()` closes the pending chunk and pushes it to the
file (and optionally fsyncs), so after a SIGKILL the file holds every message up to the last
flush; `motus_ros.data.bag_repair` then terminates the MCAP and regenerates metadata.yaml.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from rosbags.rosbag2 import StoragePlugin, Writer

from motus_ros.data import types as bag_types

BAG_VERSION = 9  # rosbag2 metadata version written (Jazzy/Kilted read it)


def mcap_path(bag_dir: Path) -> Path:
    """The single MCAP file rosbags writes inside a bag folder: <dir>/<dir name>.mcap."""
    return Path(bag_dir) / f"{Path(bag_dir).name}.mcap"


class BagWriter:
    """One rosbag2 MCAP bag: topics are added once, raw CDR messages written with ns timestamps."""

    def __init__(self, bag_dir: str | os.PathLike, flush_period_s: float = 1.0, fsync: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(bag_dir)
        self.flush_period_s = float(flush_period_s)
        self.fsync = bool(fsync)
        self._clock = clock
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._connections: dict[str, object] = {}
        self.types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.bytes_written = 0
        self.flushes = 0
        self._last_flush = clock()
        self._open = False

    def open(self) -> "BagWriter":
        self._writer.open()
        storage = self._writer.storage
        # Private rosbags internals used by flush(); fail early and clearly if they change.
        for attr in ("close_chunk", "chunk", "bio"):
            if not hasattr(storage, attr):
                self._writer.abort()
                raise RuntimeError(f"rosbags {type(storage).__name__} lacks '{attr}': the "
                                   "periodic-flush crash safety needs rosbags 0.11.x")
        self._open = True
        return self

    @property
    def is_open(self) -> bool:
        return self._open

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Register a topic with its type (definition and RIHS01 hash from the typestore)."""
        msgtype = bag_types.normalize_type(msgtype)
        if topic in self._connections:
            if self.types[topic] != msgtype:
                raise ValueError(f"topic {topic}: already recorded as {self.types[topic]}, "
                                 f"got a second type {msgtype}")
            return
        msgdef, rihs01 = bag_types.msgdef_and_hash(msgtype)
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef, rihs01=rihs01)
        self.types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Append one serialized message (stored as given, never re-serialized)."""
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1
        self.bytes_written += len(data)
        if self.flush_period_s > 0 and self._clock() - self._last_flush >= self.flush_period_s:
            self.flush()

    def flush(self) -> None:
        """Close the pending MCAP chunk and push it to disk: data so far survives a crash."""
        storage = self._writer.storage
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
        storage = self._writer.storage
        if (storage is None or self.flush_period_s <= 0 or not storage.chunk.bio.tell()
                or self._clock() - self._last_flush < self.flush_period_s):
            return False
        self.flush()
        return True

    def close(self, custom_data: dict[str, str] | None = None) -> Path:
        """Write the MCAP summary and metadata.yaml; returns the bag folder."""
        if not self._open:
            return self.path
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(str(key), str(value))
        self._writer.close()
        self._open = False
        return self.path

    def abandon(self) -> None:
        """Close the file handle without summary or metadata.yaml (as a crash would leave it)."""
        if self._open:
            try:
                self._writer.abort()
            finally:
                self._open = False

    def discard(self) -> None:
        """Abandon the bag and delete its folder."""
        if self._open:
            try:
                self._writer.abort()
            finally:
                self._open = False
        shutil.rmtree(self.path, ignore_errors=True)
