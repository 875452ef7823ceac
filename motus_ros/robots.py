"""The robot registry: the one place where each robot profile is described.

A `RobotProfile` says which arm backend drives the robot and with which options, which calibration
and normalisation statistics it uses, which kinematics the visualizer draws, the gripper's unit and
the cameras it carries. A graph names its robot once (`robot: agilex_aloha2` in
config/graphs/<profile>.yaml); graph.py then gives every node the parameters the robot implies
(`RobotProfile.node_parameters`) before the node's own parameter files, so the YAML files hold only
what differs from these defaults.

Adding a robot: a calibration/<name>/ folder (joints.yaml, camera intrinsics), models/stats/<name>.json,
an entry in PROFILES, and config/graphs/<name>.yaml with `robot: <name>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from motus_ros import paths

GRIPPER_UNITS = ("normalized", "m")   # 0 (closed) .. 1 (open) | metres of opening


@dataclass(frozen=True)
class RobotProfile:
    """Everything that describes one robot; see the module docstring."""

    name: str
    description: str
    graph: str                                  # config/graphs/<graph>.yaml runs this robot
    arm_backend: str                            # motus_ros/hardware/registry.py name
    # Vendor options of the backend, keyed by the arm driver's parameter names (CAN channels, ...).
    arm_options: Mapping[str, Any] = field(default_factory=dict)
    calibration: str = ""                       # calibration/<calibration>/joints.yaml ('' = name)
    has_stats: bool = True                      # models/stats/<name>.json exists
    kinematics: str | None = None               # motus_ros/viz/kinematics.py name; None: not drawn
    gripper_unit: str = "normalized"
    camera_backend: str | None = None           # camera_node backend; None: no camera node
    cameras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.gripper_unit not in GRIPPER_UNITS:
            raise ValueError(f"robot '{self.name}': gripper_unit={self.gripper_unit!r}, "
                             f"expected one of {list(GRIPPER_UNITS)}")
        # Frozen means frozen: nobody edits a profile's options through a shared dict.
        object.__setattr__(self, "arm_options", MappingProxyType(dict(self.arm_options)))
        object.__setattr__(self, "calibration", self.calibration or self.name)

    @property
    def stats(self) -> Path | None:
        """models/stats/<name>.json, the statistics the policy normalises with; None if it has none."""
        return paths.models_dir() / "stats" / f"{self.name}.json" if self.has_stats else None

    def node_parameters(self, node: str) -> dict[str, Any]:
        """The parameters this robot implies for the ROS node named `node` (the project's node
        names, as in the parameter files); graph.py gives them before the node's parameter files,
        so a file may still override them."""
        by_node: dict[str, dict[str, Any]] = {
            "arm_driver": {"backend": self.arm_backend, "calibration": self.calibration, **self.arm_options},
            "policy": {"robot": self.name},
            "world_model": {"robot": self.name},
            "recorder": {"robot_profile": self.name},
        }
        if self.camera_backend is not None:
            by_node["camera"] = {"robot": self.name, "backend": self.camera_backend, "cameras": list(self.cameras)}
        if self.kinematics is not None:
            by_node["visualizer"] = {"robot": self.kinematics}
        return dict(by_node.get(node, {}))


# Three cameras on every robot: the tiled layout the model was trained on (layout.CAMERAS).
_CAMERAS = ("high", "left_wrist", "right_wrist")

PROFILES: Mapping[str, RobotProfile] = MappingProxyType({p.name: p for p in (
    RobotProfile(
        name="sim", description="MuJoCo ALOHA (gym-aloha transfer cube / insertion)", graph="sim",
        arm_backend="sim", kinematics="sim", gripper_unit="normalized",
        camera_backend="sim", cameras=_CAMERAS),
    RobotProfile(
        name="agilex_aloha2", description="Agilex-Aloha-2 (Cobot Magic): two Piper followers and two Piper "
                                          "leaders on CAN, RealSense D435 (high) and D405 (wrists)",
        graph="agilex_aloha2", arm_backend="piper",
        arm_options={
            # can_left / can_right: Agilex piper_ros names (start_two_piper.launch.py) after renaming
            # the USB-CAN adapters. Leader and follower of one side share a bus.
            "can_channels": ["can_left", "can_right"],
            "leader_can_channels": ["can_left", "can_right"],
            "can_bustype": "socketcan",
            "read_leaders": True,
            "publish_agilex_topics": True,        # /puppet|master/joint_left|right (cobot_magic names)
            "piper_speed_percent": 100,
            "gripper_effort": 1.0,                # N*m
            "enable_timeout": 5.0,                # s
        },
        kinematics="agilex_aloha2", gripper_unit="m", camera_backend="realsense", cameras=_CAMERAS),
    RobotProfile(
        name="ac_one", description="AC-One: two ARX X5 arms on CAN (arx5-interface), three RealSense D405",
        graph="ac_one", arm_backend="arx", arm_options={"arx_interfaces": ["can0", "can1"], "arx_model": "X5"},
        kinematics="ac_one", gripper_unit="m", camera_backend="realsense", cameras=_CAMERAS),
    RobotProfile(
        name="mock", description="Mock arms for graph tests: commands become state through a short lag",
        graph="mock", arm_backend="mock", arm_options={"mock_time_constant": 0.05}, has_stats=False,
        gripper_unit="normalized"),
)})


def get(name: str) -> RobotProfile:
    """The profile called `name`; a ValueError names the known robots otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"robot: got {name!r}, expected one of {sorted(PROFILES)}") from None


def with_stats() -> tuple[str, ...]:
    """Robots with normalisation statistics in models/stats/ (what the policy can run on by name)."""
    return tuple(name for name, p in PROFILES.items() if p.has_stats)


def with_kinematics() -> tuple[str, ...]:
    """Kinematics names the visualizer can draw."""
    return tuple(p.kinematics for p in PROFILES.values() if p.kinematics is not None)
