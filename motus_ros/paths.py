"""Where the package's data folders (config/, calibration/, models/, launch/) live.

From a source checkout they are the repository folders; after `colcon build` they are
share/motus_ros/<folder> of the install prefix (found through the ament index).

Two kinds of relative path: those written in the shipped files resolve against that folder
(`resolve`), those typed on the command line against the current directory (`from_cli`).
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
    """A path written in a shipped file (config/*.yaml, a graph): absolute paths stay; relative
    ones are taken relative to the share root, so they work from any current directory."""
    p = Path(path)
    return p if p.is_absolute() else share_root() / p


def from_cli(path: str | os.PathLike) -> Path:
    """A path the user typed on the command line: `~` expanded, relative ones taken relative to the
    current directory (as every shell tool does), made absolute so nodes started elsewhere agree."""
    return Path(path).expanduser().absolute()
