"""Arm backends by name: the driver's `backend` parameter picks one ("mock", "piper", "arx", "sim").

Backends are imported only when chosen, so a graph without hardware never imports an SDK.
"""
from __future__ import annotations

import importlib
from typing import Any

from motus_ros.hardware.interface import ArmBackend

# name -> "module:Class"
BACKENDS = {
    "mock": "motus_ros.hardware.mock:MockArmBackend",
    "piper": "motus_ros.hardware.piper:PiperArmBackend",
    "arx": "motus_ros.hardware.arx:ArxArmBackend",
    "sim": "motus_ros.hardware.sim_backend:SimArmBackend",
}


def backend_class(name: str) -> type[ArmBackend]:
    """The class registered under `name`; errors name the choices or the missing module."""
    if name not in BACKENDS:
        raise ValueError(f"backend: got {name!r}, expected one of {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"backend '{name}': cannot import {module_name}: {exc}") from exc
    return getattr(module, class_name)


def create_backend(name: str, **options: Any) -> ArmBackend:
    """Instantiate backend `name` with keyword options (e.g. calibration=..., channels=...)."""
    return backend_class(name)(**options)
