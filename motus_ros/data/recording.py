"""One episode being recorded: a bounded queue filled by subscription callbacks and a writer
thread that (optionally) compresses images and appends to the bag.

Nothing is dropped silently: when the queue is full the message is refused, counted per topic,
and `on_drop` is called so the node can shout about it (log + /diagnostics ERROR).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rosbags.interfaces import Qos

from motus_ros.data import image_codec
from motus_ros.data import types as bag_types
from motus_ros.data.bag_writer import BagWriter


@dataclass(frozen=True)
class _AddTopic:
    topic: str
    msgtype: str
    offered_qos_profiles: tuple = ()


class RecordingSession:
    """Queue + writer thread + BagWriter for one episode."""

    def __init__(self, bag_dir: Path, *, compression: str = "none", jpeg_quality: int = 90,
                 png_level: int = 3, flush_period_s: float = 1.0, fsync: bool = True,
                 max_queue: int = 2000, max_queue_mb: float = 1024.0,
                 on_drop: Callable[[str, int], None] | None = None,
                 max_file_duration_s: float = 0.0):
        if compression not in image_codec.COMPRESSIONS:
            raise ValueError(f"compression: got {compression!r}, expected one of "
                             f"{list(image_codec.COMPRESSIONS)}")
        self.compression = compression
        self.jpeg_quality = jpeg_quality
        self.png_level = png_level
        self.max_queue = int(max_queue)
        self.max_queue_bytes = int(max_queue_mb * 2**20)
        self.on_drop = on_drop
        self.writer = BagWriter(bag_dir, flush_period_s=flush_period_s, fsync=fsync,
                                max_file_duration_s=max_file_duration_s).open()
        self.path = Path(bag_dir)
        self.outputs: dict[str, tuple[str, bool]] = {}  # input topic -> (bag topic, compress?)
        self.received: collections.Counter = collections.Counter()
        self.written: collections.Counter = collections.Counter()
        self.dropped: collections.Counter = collections.Counter()
        self.error: str | None = None
        self.max_depth = 0
        self._queue: collections.deque = collections.deque()
        self._queue_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"bag-writer-{self.path.name}",
                                        daemon=True)
        self._thread.start()

    # --- producer side (subscription callbacks) ---
    def add_topic(self, topic: str, msgtype: str, offered_qos_profiles: Sequence[Qos] = ()) -> str:
        """Record topic from now on, stored with the QoS profiles its publishers offer (rosbags
        Qos); returns the topic name used in the bag."""
        msgtype = bag_types.normalize_type(msgtype)
        # Only raw Images are re-encoded; a CompressedImage (a camera's image_transport compressed
        # topic) is stored under its own name and type, byte for byte as received.
        compress = self.compression != "none" and msgtype == bag_types.IMAGE_TYPE
        out_topic = image_codec.compressed_topic(topic) if compress else topic
        out_type = bag_types.COMPRESSED_IMAGE_TYPE if compress else msgtype
        with self._cond:
            if topic in self.outputs:
                return self.outputs[topic][0]
            self.outputs[topic] = (out_topic, compress)
            # control items are never dropped
            self._queue.append(_AddTopic(out_topic, out_type, tuple(offered_qos_profiles)))
            self._cond.notify()
        return out_topic

    def submit(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Queue one serialized message; False (and counted as dropped) when the queue is full."""
        size = len(data)
        with self._cond:
            if self._stopping or self.error is not None:
                return False
            if topic not in self.outputs:
                raise KeyError(f"topic {topic} was not added to the recording")
            if len(self._queue) >= self.max_queue or self._queue_bytes + size > self.max_queue_bytes:
                self.dropped[topic] += 1
                dropped = self.dropped[topic]
            else:
                self._queue.append((topic, int(timestamp_ns), data))
                self._queue_bytes += size
                self.received[topic] += 1
                self.max_depth = max(self.max_depth, len(self._queue))
                self._cond.notify()
                return True
        if self.on_drop is not None:
            self.on_drop(topic, dropped)
        return False

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    # --- writer thread ---
    def _run(self) -> None:
        wait = max(0.05, min(0.5, self.writer.flush_period_s or 0.5))
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(wait):
                        break
                if not self._queue:
                    if self._stopping:
                        return
                    item = None
                else:
                    item = self._queue.popleft()
                    if isinstance(item, tuple):
                        self._queue_bytes -= len(item[2])
            try:
                if item is None:
                    self.writer.maybe_flush()
                elif isinstance(item, _AddTopic):
                    self.writer.add_topic(item.topic, item.msgtype, item.offered_qos_profiles)
                else:
                    self._write(*item)
            except Exception as exc:  # noqa: BLE001 - reported to the node, which stops the episode
                with self._cond:
                    self.error = f"{type(exc).__name__}: {exc}"
                    self._queue.clear()
                    self._queue_bytes = 0
                return

    def _write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        out_topic, compress = self.outputs[topic]
        if compress:
            data = image_codec.compress_image_cdr(data, self.compression, self.jpeg_quality,
                                                  self.png_level)
        self.writer.write(out_topic, timestamp_ns, data)
        self.written[topic] += 1

    # --- end of episode ---
    def stop(self, keep: bool, custom_data: dict[str, str] | None = None,
             timeout: float | None = None) -> Path | None:
        """Drain the queue, then close (keep) or delete (discard) the bag; returns its folder."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"bag writer for {self.path} still draining {self.depth} messages "
                               f"after {timeout} s")
        if not keep:
            self.writer.discard()
            return None
        if self.error is None:
            self.writer.close(custom_data)
        else:  # keep what reached the file; the MCAP is terminated by the repair path
            from motus_ros.data.bag_repair import repair_bag
            try:
                self.writer.flush()
            except Exception:  # noqa: BLE001 - the disk may be full; repair works on what is there
                pass
            self.writer.abandon()
            repair_bag(self.path)
        return self.path

    def stats(self) -> dict:
        return {"received": dict(self.received), "written": dict(self.written),
                "dropped": dict(self.dropped), "queue_depth": self.depth,
                "max_queue_depth": self.max_depth, "bytes_written": self.writer.bytes_written,
                "error": self.error, "files": self.writer.file_names, "splits": self.writer.splits,
                "max_split_s": max(self.writer.split_seconds, default=0.0)}
