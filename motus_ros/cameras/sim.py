"""Simulated cameras.

In the running graph the MuJoCo cameras are published by the simulation's ROS side
(motus_ros/nodes/sim_node.py, in the sim process), because rendering needs the physics state that
lives in that process: do not start camera_node for the sim profile. camera_node with
backend=sim therefore fails with a message pointing there.

For in-process use (tests, notebooks, a node that owns a simulation) this backend takes frames
from any object with `render(camera: str) -> HxWx3 uint8 RGB`, e.g. the sim world object.
"""
from __future__ import annotations

from motus_ros.cameras.base import CameraBackend, CameraError, CameraFrame, check_rgb

SIM_NODE_HINT = ("the simulated cameras are published by the sim node from inside the simulation "
                 "process (motus_ros/nodes/sim_node.py), which owns the physics state; do "
                 "not start camera_node for the sim profile")


class SimBackend(CameraBackend):
    """Frames rendered by an in-process object with render(camera)."""

    def __init__(self, renderer=None, camera: str = "top", **_ignored):
        if renderer is None or not callable(getattr(renderer, "render", None)):
            raise CameraError(f"camera backend 'sim' needs an in-process renderer object: {SIM_NODE_HINT}")
        self.renderer = renderer
        self.camera = camera
        self.description = f"sim:{camera}"
        self._open = False

    def open(self) -> None:
        self._open = True

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        if not self._open:
            raise CameraError(f"{self.description}: read() before open()")
        return CameraFrame(image=check_rgb(self.renderer.render(self.camera), self.description))

    def close(self) -> None:
        self._open = False
