"""Which weights a command runs: the checkpoint's own preset, and agreement with `--preset`.

Not a sub-command (the leading underscore keeps cli.py from listing it).
"""
from __future__ import annotations

from pathlib import Path


def checkpoint_preset(path: str | Path) -> str | None:
    """The preset a motus_ros checkpoint was made from (its config name, e.g. 'small-custom' ->
    'small'); None for an official checkpoint (its encoder sizes come from the preset the user
    gives) and for a config named after no preset (nothing to disagree with)."""
    from motus_ros.motus.checkpoint import detect_format, read_own_config
    from motus_ros.motus.config import PRESETS

    if detect_format(path) != "motus_ros":
        return None
    name = read_own_config(path).name
    base = name.split("-", 1)[0]
    return base if base in PRESETS else None


def agreed_preset(given: str | None, checkpoint: str | Path | None, option: str = "--preset") -> str | None:
    """The preset to run: the checkpoint's own when `given` is None; `given` when it agrees or the
    checkpoint carries none. A disagreeing `given` raises ValueError naming both, instead of being
    ignored as the checkpoint's config.json would silently win."""
    own = checkpoint_preset(checkpoint) if checkpoint else None
    if given is not None and own is not None and given != own:
        raise ValueError(f"{option} {given}: the checkpoint {checkpoint} was made from preset '{own}' "
                         f"(its config.json); drop {option} or give {option} {own}")
    return given if given is not None else own
