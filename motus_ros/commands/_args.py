"""argparse value types the sub-commands share; a bad value is an argparse error that names the value
seen and the form expected.

Not a sub-command (the leading underscore keeps cli.py from listing it).
"""
from __future__ import annotations

import argparse


def size(text: str) -> tuple[int, int]:
    """'HxW' -> (height, width) in pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected HEIGHTxWIDTH in pixels, e.g. 96x80") from None
    return h, w


def ints(text: str) -> tuple[int, ...]:
    """'16,32,64' -> (16, 32, 64)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated integers, e.g. 16,32,64") from None
