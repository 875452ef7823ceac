"""Check and repair rosbag2 MCAP bags left behind by a crash.

The recorder splits a bag into `<bag>_0.mcap`, `<bag>_1.mcap`, ... (see `bag_writer`): every
closed file is a complete MCAP (summary and footer) and metadata.yaml lists them, marked
`custom_data: {motus.state: recording}` until the bag is closed. A recorder killed mid-episode
leaves the open (last) file with its header, every chunk flushed so far and possibly one
half-written record at the end. `repair_bag` scans the files without footer from the start,
truncates each after its last complete record, terminates it with a DataEnd record and a Footer
without summary (allowed by the MCAP spec; readers then scan the file), and regenerates
metadata.yaml from the closed files' summaries and the scans. Message bytes are never touched.
Older single-file bags (`<bag>/<bag>.mcap`, no metadata.yaml after a crash) repair the same way.

MCAP record layout (mcap.dev/spec): opcode u8, length u64 little endian, payload.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from rosbags.rosbag2.metadata import parse_qos
from ruamel.yaml import YAML

from motus_ros.data import types as bag_types
from motus_ros.data.bag_writer import (
    STATE_KEY,
    STATE_RECORDING,
    FileStats,
    TopicInfo,
    bag_metadata,
    split_index,
    write_metadata_yaml,
)

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F)
FOOTER_SIZE = 1 + 8 + 20 + len(MAGIC)  # opcode, length, summary_start, summary_offset_start, crc


class BagError(Exception):
    """A bag that cannot be read or repaired; the message names the file and the problem."""


@dataclass
class McapScan:
    """What an MCAP file holds (from a sequential scan, or from its summary)."""

    path: Path
    file_size: int
    complete: bool                      # ends with a valid footer
    valid_end: int                      # offset just after the last complete data record
    truncated_bytes: int = 0            # bytes after valid_end (a half-written record)
    schemas: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id -> name, enc, text
    # channel id -> topic, schema id, message encoding, channel metadata (offered_qos_profiles)
    channels: dict[int, tuple[str, int, str, dict[str, str]]] = field(default_factory=dict)
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


def _string_map(buf: memoryview) -> dict[str, str]:
    result, pos = {}, 0
    while pos < len(buf):
        key, pos = _string(buf, pos)
        value, pos = _string(buf, pos)
        result[key] = value
    return result


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
            scan.channels[cid] = (topic, sid, encoding,
                                  _string_map(payload[pos + 4:pos + 4 + meta_len]))
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


def _write_empty_header(f) -> None:
    """Magic and a Header record (profile ros2): the start of an MCAP file."""
    library = b"motus_ros bag repair"
    payload = struct.pack("<I", 4) + b"ros2" + struct.pack("<I", len(library)) + library
    f.write(MAGIC + bytes([OP_HEADER]) + struct.pack("<Q", len(payload)) + payload)


def _terminate_mcap(path: Path, valid_end: int) -> None:
    """Cut after the last complete record and append DataEnd + a Footer without summary (a file
    cut inside its header gets a fresh header: it held no data)."""
    with path.open("r+b") as f:
        if valid_end <= len(MAGIC):
            f.truncate(0)
            f.seek(0)
            _write_empty_header(f)
        else:
            f.truncate(valid_end)
            f.seek(valid_end)
        f.write(bytes([OP_DATA_END]) + struct.pack("<QI", 4, 0))
        f.write(bytes([OP_FOOTER]) + struct.pack("<QQQI", 20, 0, 0, 0) + MAGIC)
        f.flush()
        os.fsync(f.fileno())


def _qos_profiles(meta: dict[str, str]) -> list:
    """The offered_qos_profiles stored in a rosbag2 channel's metadata (a list, may be empty)."""
    value = meta.get("offered_qos_profiles", "")
    if not value:
        return []
    try:
        loaded = YAML(typ="safe").load(value)
    except Exception:  # noqa: BLE001 - ruamel raises several YAML errors; no QoS then
        return []
    return loaded if isinstance(loaded, list) else []


def summary_scan(path: str | os.PathLike) -> McapScan | None:
    """What a complete MCAP file holds, from its summary (no full read); None without one."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    path = Path(path)
    try:
        with path.open("rb") as f:
            summary = make_reader(f).get_summary()
    except (McapError, OSError, ValueError, struct.error, EOFError):
        return None
    if summary is None or summary.statistics is None:
        return None
    stats = summary.statistics
    scan = McapScan(path=path, file_size=path.stat().st_size, complete=True,
                    valid_end=path.stat().st_size)
    for sid, schema in summary.schemas.items():
        scan.schemas[sid] = (schema.name, schema.encoding, schema.data.decode(errors="replace"))
    for cid, channel in summary.channels.items():
        scan.channels[cid] = (channel.topic, channel.schema_id, channel.message_encoding,
                              dict(channel.metadata))
        scan.counts[cid] = int(stats.channel_message_counts.get(cid, 0))
    if stats.message_count:
        scan.start_ns, scan.end_ns = stats.message_start_time, stats.message_end_time
    return scan


def scan_file(path: str | os.PathLike) -> McapScan:
    """A complete file from its summary when it has one, else (or when that fails) a full scan."""
    path = Path(path)
    if has_footer(path):
        scan = summary_scan(path)
        if scan is not None:
            return scan
    return scan_mcap(path)


def has_footer(path: str | os.PathLike) -> bool:
    """True when an MCAP file ends with a Footer record and the magic (it was closed)."""
    path = Path(path)
    size = path.stat().st_size
    if size < len(MAGIC) + FOOTER_SIZE:
        return False
    with path.open("rb") as f:
        f.seek(size - FOOTER_SIZE)
        tail = f.read(FOOTER_SIZE)
    return tail[0] == OP_FOOTER and tail.endswith(MAGIC)


# --- bag folders -------------------------------------------------------------------------------
def read_metadata(bag_dir: str | os.PathLike) -> dict | None:
    """rosbag2_bagfile_information of metadata.yaml; None when missing or unreadable."""
    path = Path(bag_dir) / "metadata.yaml"
    if not path.is_file():
        return None
    try:
        data = YAML(typ="safe").load(path.read_text("utf8"))
    except Exception:  # noqa: BLE001 - any YAML or decoding error: unreadable
        return None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else None


def _listed_files(info: dict | None) -> list[str]:
    paths = (info or {}).get("relative_file_paths") or []
    return [PurePath(str(p)).name for p in paths] if isinstance(paths, list) else []


def bag_files(bag_dir: str | os.PathLike) -> list[Path]:
    """The MCAP files of a bag folder in recording order: those metadata.yaml lists (that
    exist), then any other .mcap there by split index (<bag>_<n>.mcap); a file gives itself."""
    bag_dir = Path(bag_dir)
    if bag_dir.is_file():
        return [bag_dir]
    if not bag_dir.is_dir():
        raise BagError(f"{bag_dir}: no such bag folder")
    found = {p.name: p for p in bag_dir.glob("*.mcap") if p.is_file()}
    if not found:
        raise BagError(f"{bag_dir}: no .mcap file")
    listed = [name for name in _listed_files(read_metadata(bag_dir)) if name in found]

    def order(name: str) -> tuple[int, str]:
        index = split_index(bag_dir, name)
        return (-1 if index is None else index, name)

    rest = sorted((n for n in found if n not in listed), key=order)
    return [found[n] for n in listed + rest]


def find_mcap(bag_dir: str | os.PathLike) -> Path:
    """The MCAP file of a single-file bag folder (or the file itself when given one)."""
    files = bag_files(bag_dir)
    if len(files) != 1:
        raise BagError(f"{bag_dir}: expected one .mcap file, found {len(files)} "
                       f"({', '.join(f.name for f in files)})")
    return files[0]


def unfinished_files(bag_dir: str | os.PathLike) -> list[Path]:
    """The MCAP files of a bag that lack a footer (normally at most the last, the open one)."""
    return [f for f in bag_files(bag_dir) if not has_footer(f)]


def needs_repair(bag_dir: str | os.PathLike) -> bool:
    """True when the bag was not closed by its writer: metadata.yaml missing, unreadable, still
    marked as recording or not listing every .mcap file, or an MCAP file without footer."""
    bag_dir = Path(bag_dir)
    if bag_dir.is_file():
        return not has_footer(bag_dir)
    files = bag_files(bag_dir)
    info = read_metadata(bag_dir)
    if info is None:
        return True
    custom = info.get("custom_data") or {}
    if isinstance(custom, dict) and custom.get(STATE_KEY) == STATE_RECORDING:
        return True
    if sorted(_listed_files(info)) != sorted(f.name for f in files):
        return True
    return any(not has_footer(f) for f in files)


def metadata_from_scans(scans: list[McapScan], custom_data: dict[str, str] | None = None) -> dict:
    """rosbag2 metadata.yaml content (version 9) rebuilt from the scans of a bag's files."""
    topics: dict[str, TopicInfo] = {}
    files = []
    for scan in scans:
        stats = FileStats(scan.path.name, start_ns=scan.start_ns, end_ns=scan.end_ns)
        for cid, (topic, sid, encoding, meta) in sorted(scan.channels.items()):
            stats.counts[topic] = stats.counts.get(topic, 0) + scan.counts.get(cid, 0)
            if topic in topics:
                continue
            msgtype = scan.schemas.get(sid, ("", "", ""))[0]
            try:
                rihs01 = bag_types.msgdef_and_hash(msgtype)[1]
            except (KeyError, ValueError):
                rihs01 = ""
            qos = tuple(parse_qos(_qos_profiles(meta)))
            topics[topic] = TopicInfo(topic, msgtype, rihs01, qos, encoding or "cdr")
        files.append(stats)
    return bag_metadata(files, topics.values(), custom_data=custom_data)


def metadata_from_scan(scan: McapScan, relative_path: str | None = None) -> dict:
    """metadata.yaml content for a single-file bag (kept for callers of the one-file API)."""
    if relative_path is not None and relative_path != scan.path.name:
        scan = McapScan(**{**scan.__dict__, "path": scan.path.with_name(relative_path)})
    return metadata_from_scans([scan], {"repaired": "true"})


def write_metadata(bag_dir: Path, metadata: dict) -> None:
    """Write metadata.yaml atomically (temp file + rename), synced to disk."""
    write_metadata_yaml(bag_dir, metadata, fsync=True)


@dataclass
class RepairReport:
    path: Path
    repaired: bool          # False: the bag was already complete
    messages: int
    truncated_bytes: int
    counts: dict[str, int]
    files: list[str] = field(default_factory=list)            # every MCAP file, in order
    repaired_files: list[str] = field(default_factory=list)   # those that had no footer


def _is_empty_start(path: Path) -> bool:
    """A file cut before or inside its magic/header: it holds no records at all."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(len(MAGIC))
    return size < len(MAGIC) and MAGIC.startswith(head)


def repair_bag(bag_dir: str | os.PathLike) -> RepairReport:
    """Make an unclosed bag readable by rosbags, ros2 bag and the mcap readers; idempotent.
    Only files without footer are touched (normally the last one, open when the recorder died);
    closed files are read from their summaries; metadata.yaml is regenerated."""
    bag_dir = Path(bag_dir)
    if bag_dir.is_file():
        bag_dir = bag_dir.parent
    files = bag_files(bag_dir)
    repair = needs_repair(bag_dir)
    scans, repaired, truncated = [], [], 0
    for path in files:
        if repair and not has_footer(path) and _is_empty_start(path):
            _terminate_mcap(path, 0)  # died between creating the file and writing its header
        scan = scan_file(path)
        if repair and not scan.complete:
            _terminate_mcap(path, scan.valid_end)
            repaired.append(path.name)
            truncated += scan.truncated_bytes
        scans.append(scan)
    counts: dict[str, int] = {}
    for scan in scans:
        for cid, n in scan.counts.items():
            if cid in scan.channels:
                topic = scan.channels[cid][0]
                counts[topic] = counts.get(topic, 0) + n
    total = sum(counts.values())
    names = [f.name for f in files]
    if not repair:
        return RepairReport(bag_dir, False, total, 0, counts, names, [])
    write_metadata(bag_dir, metadata_from_scans(scans, {"repaired": "true"}))
    return RepairReport(bag_dir, True, total, truncated, counts, names, repaired)


def recover_episode(bag_dir: str | os.PathLike) -> RepairReport:
    """repair_bag plus the episode.json sidecar: status 'recovered', the counts and files found."""
    from motus_ros.data import episode as ep
    report = repair_bag(bag_dir)
    sidecar = ep.read_sidecar(report.path)
    if report.repaired and sidecar:
        bag = dict(sidecar.get("bag") or {})
        bag["files"] = report.files
        sidecar.update({"status": "recovered", "stop_reason": sidecar.get("stop_reason") or "crash",
                        "message_counts": report.counts, "bag": bag,
                        "recovered_truncated_bytes": report.truncated_bytes})
        ep.write_json_atomic(report.path / ep.SIDECAR, sidecar)
    return report
