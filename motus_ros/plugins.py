"""Classes registered by name ("module:Class"), imported only when chosen.

The arm and camera registries use it: a machine without one vendor's SDK can still run the
others, and a base module never imports its implementations (no import cycles). Pure Python.
"""
from __future__ import annotations

import importlib


def load_registered(table: dict[str, str], name: str, field: str,
                    unknown: type[Exception] = ValueError, broken: type[Exception] = RuntimeError) -> type:
    """The class `table[name]` names, imported now.

    Raises `unknown` naming `field`, the value and the choices for a name not in the table, and
    `broken` naming the module when it cannot be imported (a missing SDK, usually).
    """
    if name not in table:
        raise unknown(f"{field}: got {name!r}, expected one of {list(table)}")
    module_name, class_name = table[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise broken(f"{field} '{name}': cannot import {module_name}: {exc}") from exc
    return getattr(module, class_name)
