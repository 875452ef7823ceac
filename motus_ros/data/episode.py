"""Episode bookkeeping: ids, the episode.json sidecar, calibration hashes, free disk space."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

SIDECAR = "episode.json"
SCHEMA_VERSION = 1


def new_episode_id(output_dir: Path, robot: str, now: _dt.datetime | None = None) -> str:
    """'<UTC yyyymmdd-hhmmss>_<robot>_<n>', unique inside output_dir."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    robot = re.sub(r"[^A-Za-z0-9_-]+", "-", robot or "robot")
    stem = f"{now:%Y%m%d-%H%M%S}_{robot}"
    n = 0
    while (Path(output_dir) / f"{stem}_{n:03d}").exists():
        n += 1
    return f"{stem}_{n:03d}"


def utc_iso(t: float) -> str:
    """Seconds since the epoch -> ISO 8601 UTC text."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat()


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def calibration_entries(paths: Iterable[Path]) -> list[dict]:
    """[{path, sha256}] of the calibration files an episode used; folders are expanded."""
    entries = []
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                entries.append({"path": str(file), "sha256": None, "error": "missing"})
                continue
            entries.append({"path": str(file), "sha256": file_sha256(file)})
    return entries


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_sidecar(bag_dir: Path) -> dict:
    """episode.json of a bag folder ({} when absent)."""
    path = Path(bag_dir) / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else {}


def free_mb(path: Path) -> float:
    """Free space in MiB on the file system holding path (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 2**20
