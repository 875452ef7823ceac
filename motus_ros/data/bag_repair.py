"""Check and repair rosbag2 MCAP bags left behind by a crash (no summary, no metadata.yaml).

A recorder killed mid-episode leaves `<bag>/<bag>.mcap` with the header, every chunk flushed so
far and possibly one half-written record at the end, and no metadata.yaml. `repair_bag` scans
the records from the start, truncates the file after the last complete one, terminates it with
a DataEnd record and a Footer without summary (allowed by the MCAP spec; readers then scan the
file), and regenerates metadata.yaml from what the scan found. Message bytes are never touched.

MCAP record layout (mcap.dev/spec): opcode u8, length u64 little endian, payload.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML

from motus_ros.data import types as bag_types
from motus_ros.data.bag_writer import BAG_VERSION

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F)
FOOTER_SIZE = 1 + 8 + 20 + len(MAGIC)  # opcode, length, summary_start, summary_offset_start, crc


class BagError(Exception):
    """A bag that cannot be read or repaired; the message names the file and the problem."""


@dataclass
class McapScan:
    """What a sequential scan of an MCAP file found."""

    path: Path
    file_size: int
    complete: bool                      # ends with a valid footer
    valid_end: int                      # offset just after the last complete data record
    truncated_bytes: int = 0            # bytes after valid_end (a half-written record)
    schemas: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id -> name, enc, text
    channels: dict[int, tuple[str, int, str, bytes]] = field(default_factory=dict)  # topic, schema, enc, meta
    counts: dict[int, int] = field(default_factory=dict)  # channel id -> messages
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def _bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]), pos + 4 + n


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        return zstd.decompress(data)
    if compression == "lz4":
        from lz4.frame import decompress
        return decompress(data)
    raise BagError(f"unsupported MCAP chunk compression {compression!r}")


class _Scanner:
    def __init__(self, scan: McapScan):
        self.scan = scan

    def record(self, op: int, payload: memoryview) -> None:
        scan = self.scan
        if op == OP_SCHEMA:
            (sid,) = struct.unpack_from("<H", payload, 0)
            name, pos = _string(payload, 2)
            encoding, pos = _string(payload, pos)
            data, _ = _bytes(payload, pos)
            scan.schemas[sid] = (name, encoding, data.decode(errors="replace"))
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", payload, 0)
            topic, pos = _string(payload, 4)
            encoding, pos = _string(payload, pos)
            (meta_len,) = struct.unpack_from("<I", payload, pos)
            scan.channels[cid] = (topic, sid, encoding, bytes(payload[pos + 4:pos + 4 + meta_len]))
            scan.counts.setdefault(cid, 0)
        elif op == OP_MESSAGE:
            cid, _seq, log_time = struct.unpack_from("<HIQ", payload, 0)
            scan.counts[cid] = scan.counts.get(cid, 0) + 1
            scan.start_ns = log_time if scan.start_ns is None else min(scan.start_ns, log_time)
            scan.end_ns = log_time if scan.end_ns is None else max(scan.end_ns, log_time)
        elif op == OP_CHUNK:
            _start, _end, size, _crc = struct.unpack_from("<QQQI", payload, 0)
            compression, pos = _string(payload, 28)
            (records_len,) = struct.unpack_from("<Q", payload, pos)
            records = _decompress(bytes(payload[pos + 8:pos + 8 + records_len]), compression, size)
            view = memoryview(records)
            pos = 0
            while pos + 9 <= len(view):
                inner_op = view[pos]
                (length,) = struct.unpack_from("<Q", view, pos + 1)
                if pos + 9 + length > len(view):
                    raise BagError(f"{scan.path}: chunk record overruns its chunk")
                self.record(inner_op, view[pos + 9:pos + 9 + length])
                pos += 9 + length


def scan_mcap(path: str | os.PathLike) -> McapScan:
    """Scan an MCAP file from the start; stops at the footer, DataEnd or a truncated record."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise BagError(f"{path}: empty file (0 bytes)")
    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise BagError(f"{path}: not an MCAP file (bad magic)")
        complete = False
        if size >= len(MAGIC) + FOOTER_SIZE:
            f.seek(size - FOOTER_SIZE)
            tail = f.read(FOOTER_SIZE)
            complete = tail[0] == OP_FOOTER and tail[-len(MAGIC):] == MAGIC
        scan = McapScan(path=path, file_size=size, complete=complete, valid_end=len(MAGIC))
        scanner = _Scanner(scan)
        f.seek(len(MAGIC))
        pos = len(MAGIC)
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            op = head[0]
            (length,) = struct.unpack_from("<Q", head, 1)
            if op in (OP_DATA_END, OP_FOOTER):
                break
            if pos + 9 + length > size:
                break  # half-written record: everything before it is kept
            payload = f.read(length)
            try:
                scanner.record(op, memoryview(payload))
            except (struct.error, UnicodeDecodeError, BagError):
                break  # a torn record: keep what came before
            if op == OP_HEADER:
                (profile_len,) = struct.unpack_from("<I", payload, 0)
                if payload[4:4 + profile_len] != b"ros2":
                    raise BagError(f"{path}: MCAP profile is not ros2")
            pos += 9 + length
            scan.valid_end = pos
        scan.truncated_bytes = 0 if complete else size - scan.valid_end
    return scan


def _terminate_mcap(path: Path, valid_end: int) -> None:
    """Cut after the last complete record and append DataEnd + a Footer without summary."""
    with path.open("r+b") as f:
        f.truncate(valid_end)
        f.seek(valid_end)
        f.write(bytes([OP_DATA_END]) + struct.pack("<QI", 4, 0))
        f.write(bytes([OP_FOOTER]) + struct.pack("<QQQI", 20, 0, 0, 0) + MAGIC)
        f.flush()
        os.fsync(f.fileno())


def _qos_from_channel(meta: bytes) -> object:
    """The offered_qos_profiles stored in a rosbag2 channel's metadata map (list, may be empty)."""
    view = memoryview(meta)
    pos = 0
    try:
        while pos < len(view):
            key, pos = _string(view, pos)
            value, pos = _string(view, pos)
            if key == "offered_qos_profiles":
                return YAML(typ="safe").load(value) or []
    except (struct.error, UnicodeDecodeError):
        pass
    return []


def metadata_from_scan(scan: McapScan, relative_path: str) -> dict:
    """rosbag2 metadata.yaml content (version 9) rebuilt from a scan."""
    topics = []
    for cid, (topic, sid, encoding, meta) in sorted(scan.channels.items()):
        msgtype = scan.schemas.get(sid, ("", "", ""))[0]
        try:
            rihs01 = bag_types.msgdef_and_hash(msgtype)[1]
        except (KeyError, ValueError):
            rihs01 = ""
        topics.append({
            "topic_metadata": {
                "name": topic, "type": msgtype, "serialization_format": encoding,
                "offered_qos_profiles": _qos_from_channel(meta), "type_description_hash": rihs01,
            },
            "message_count": scan.counts.get(cid, 0),
        })
    start = scan.start_ns if scan.start_ns is not None else 0
    duration = (scan.end_ns - scan.start_ns) if scan.start_ns is not None else 0
    count = scan.message_count
    return {"rosbag2_bagfile_information": {
        "version": BAG_VERSION, "storage_identifier": "mcap",
        "relative_file_paths": [relative_path],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count, "topics_with_message_count": topics,
        "compression_format": "", "compression_mode": "",
        "files": [{"path": relative_path, "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": count}],
        "custom_data": {"repaired": "true"}, "ros_distro": "rosbags",
    }}


def write_metadata(bag_dir: Path, metadata: dict) -> None:
    """Write metadata.yaml atomically (temp file + rename)."""
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    text = StringIO()
    yaml.dump(metadata, text)
    tmp = bag_dir / "metadata.yaml.tmp"
    tmp.write_text(text.getvalue(), "utf8")
    os.replace(tmp, bag_dir / "metadata.yaml")


def find_mcap(bag_dir: str | os.PathLike) -> Path:
    """The MCAP file of a bag folder (or the file itself when given one)."""
    bag_dir = Path(bag_dir)
    if bag_dir.is_file():
        return bag_dir
    if not bag_dir.is_dir():
        raise BagError(f"{bag_dir}: no such bag folder")
    files = sorted(bag_dir.glob("*.mcap"))
    if len(files) != 1:
        raise BagError(f"{bag_dir}: expected one .mcap file, found {len(files)}")
    return files[0]


def needs_repair(bag_dir: str | os.PathLike) -> bool:
    """True when the bag lacks metadata.yaml or its MCAP lacks a footer (an unclosed recording)."""
    bag_dir = Path(bag_dir)
    if not (bag_dir / "metadata.yaml").is_file():
        return True
    path = find_mcap(bag_dir)
    size = path.stat().st_size
    if size < len(MAGIC) + FOOTER_SIZE:
        return True
    with path.open("rb") as f:
        f.seek(size - FOOTER_SIZE)
        tail = f.read(FOOTER_SIZE)
    return not (tail[0] == OP_FOOTER and tail.endswith(MAGIC))


@dataclass
class RepairReport:
    path: Path
    repaired: bool          # False: the bag was already complete
    messages: int
    truncated_bytes: int
    counts: dict[str, int]


def repair_bag(bag_dir: str | os.PathLike) -> RepairReport:
    """Make an unclosed bag readable by rosbags, ros2 bag and the mcap readers; idempotent."""
    bag_dir = Path(bag_dir)
    mcap = find_mcap(bag_dir)
    if mcap.parent != bag_dir and bag_dir.is_file():
        bag_dir = mcap.parent
    scan = scan_mcap(mcap)
    counts = {scan.channels[c][0]: n for c, n in scan.counts.items() if c in scan.channels}
    if scan.complete and (bag_dir / "metadata.yaml").is_file():
        return RepairReport(bag_dir, False, scan.message_count, 0, counts)
    if not scan.complete:
        _terminate_mcap(mcap, scan.valid_end)
    write_metadata(bag_dir, metadata_from_scan(scan, mcap.name))
    return RepairReport(bag_dir, True, scan.message_count, scan.truncated_bytes, counts)


def recover_episode(bag_dir: str | os.PathLike) -> RepairReport:
    """repair_bag plus the episode.json sidecar: status 'recovered' and the counts found."""
    from motus_ros.data import episode as ep
    report = repair_bag(bag_dir)
    sidecar = ep.read_sidecar(report.path)
    if report.repaired and sidecar:
        sidecar.update({"status": "recovered", "stop_reason": sidecar.get("stop_reason") or "crash",
                        "message_counts": report.counts,
                        "recovered_truncated_bytes": report.truncated_bytes})
        ep.write_json_atomic(report.path / ep.SIDECAR, sidecar)
    return report
