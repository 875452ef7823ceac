"""Arm backends by name: the driver's `backend` parameter picks one ("mock", "piper", "arx", "sim").

Backends are imported only when chosen, so a graph without hardware never imports an SDK.
"""
from __future__ import annotations

from typing import Any

from motus_ros.hardware.interface import ArmBackend
from motus_ros.plugins import load_registered

# name -> "module:Class"
BACKENDS = {
    "mock": "motus_ros.hardware.mock:MockArmBackend",
    "piper": "motus_ros.hardware.piper:PiperArmBackend",
    "arx": "motus_ros.hardware.arx:ArxArmBackend",
    "sim": "motus_ros.hardware.sim_backend:SimArmBackend",
}


def backend_class(name: str) -> type[ArmBackend]:
    """The class registered under `name`; errors name the choices or the missing module."""
    return load_registered(BACKENDS, name, "backend")


def create_backend(name: str, **options: Any) -> ArmBackend:
    """Instantiate backend `name` with keyword options (e.g. calibration=..., channels=...)."""
    return backend_class(name)(**options)
