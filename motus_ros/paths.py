"""Where the package's data folders (config/, calibration/, models/, launch/) live.

From a source checkout they are the repository folders; after `colcon build` they are
share/motus_ros/<folder> of the install prefix (found through the ament index).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "motus_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_root() -> Path:
    """Folder holding config/, calibration/, models/ and launch/."""
    override = os.environ.get("MOTUS_ROS_SHARE")
    if override:
        return Path(override)
    if (SOURCE_ROOT / "config").is_dir() and (SOURCE_ROOT / "package.xml").is_file():
        return SOURCE_ROOT
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        candidate = Path(prefix) / "share" / PACKAGE
        if prefix and (candidate / "config").is_dir():
            return candidate
    return SOURCE_ROOT


def config_dir() -> Path:
    return share_root() / "config"


def calibration_dir() -> Path:
    return share_root() / "calibration"


def models_dir() -> Path:
    return share_root() / "models"


def launch_dir() -> Path:
    return share_root() / "launch"


def resolve(path: str | os.PathLike) -> Path:
    """Absolute paths stay; relative ones are taken relative to the share root."""
    p = Path(path)
    return p if p.is_absolute() else share_root() / p
