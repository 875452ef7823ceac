"""Gripper positions from the 14-DoF joint layout: forward kinematics of each robot's arms.

All return (N, 2, 3) positions in metres, [left, right], in the frame `world` of the robot:
- sim: the gym-aloha MuJoCo scene itself (bimanual_viperx_transfer_cube.xml from the gym_aloha
  package), arm qpos set by joint name, mujoco.mj_kinematics, position of the calibration site
  0.15 m ahead of gripper_link (`cali_<side>_site1`, between the fingertips). Exact for the sim.
- agilex_aloha2: piper_sdk's `C_PiperForwardKinematics` (piper_sdk/kinematics/piper_fk.py,
  Denavit-Hartenberg parameters of the Piper, "dh_is_offset=1" variant for firmware that applies
  the 2 degree J2/J3 offset), link-6 flange position in mm -> m, in each arm's base frame,
  then shifted by the arm's mounting position (see ARM_BASES; an assumption, set per robot).
- ac_one: ARX X5 joint origins of the ARX URDF (ARXroboticsX/ARX_Model X5, as republished in
  wei-hsuan-cheng/robot_descriptions arx5_description/urdf/arx5.urdf): a serial chain of
  fixed transforms and revolute joints (axes z, y, y, y, z, x) to the `gripper_center` point
  0.145 m ahead of link6. Assumes the SDK's joint angles have the URDF's signs and zeros.
"""
from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod

import numpy as np

from motus_ros.layout import ARM_JOINTS, LEFT_SLICE, RIGHT_SLICE

# Mounting of the two arm bases in `world` (metres). Assumption for the real robots: arms 0.6 m
# apart along y, left at +y, both facing +x; override with the visualizer's parameters.
ARM_BASES = {"left": (0.0, 0.3, 0.0), "right": (0.0, -0.3, 0.0)}


class GripperKinematics(ABC):
    frame_id = "world"

    @abstractmethod
    def arm_point(self, side: str, q: np.ndarray) -> np.ndarray:
        """(6,) joint angles (radians) of one arm -> (3,) gripper position (m) in `world`."""

    def gripper_positions(self, q: np.ndarray) -> np.ndarray:
        """(N, 14) or (14,) joint positions -> (N, 2, 3) gripper positions in metres."""
        q = np.atleast_2d(np.asarray(q, dtype=np.float64))
        if q.shape[1] != 2 * (ARM_JOINTS + 1):
            raise ValueError(f"joint positions: got shape {q.shape}, expected (N, 14)")
        out = np.empty((q.shape[0], 2, 3))
        for i, row in enumerate(q):
            out[i, 0] = self.arm_point("left", row[LEFT_SLICE][:ARM_JOINTS])
            out[i, 1] = self.arm_point("right", row[RIGHT_SLICE][:ARM_JOINTS])
        return out


class MujocoAlohaKinematics(GripperKinematics):
    """The gym-aloha scene's own kinematics (vx300s arms)."""

    ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")

    def __init__(self, xml: str | None = None):
        import mujoco  # noqa: PLC0415

        if xml is None:
            import gym_aloha  # noqa: PLC0415
            xml = os.path.join(os.path.dirname(gym_aloha.__file__), "assets",
                               "bimanual_viperx_transfer_cube.xml")
        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(xml)
        self.data = mujoco.MjData(self.model)
        self._qadr = {side: [int(self.model.joint(f"vx300s_{side}/{j}").qposadr[0]) for j in self.ARM]
                      for side in ("left", "right")}
        self._site = {side: self.model.site(f"cali_{side}_site1").id for side in ("left", "right")}

    def arm_point(self, side, q):
        self.data.qpos[self._qadr[side]] = q
        self._mj.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site[side]].copy()

    def gripper_positions(self, q):
        q = np.atleast_2d(np.asarray(q, dtype=np.float64))
        if q.shape[1] != 2 * (ARM_JOINTS + 1):
            raise ValueError(f"joint positions: got shape {q.shape}, expected (N, 14)")
        out = np.empty((q.shape[0], 2, 3))
        for i, row in enumerate(q):  # one mj_kinematics for both arms
            self.data.qpos[self._qadr["left"]] = row[LEFT_SLICE][:ARM_JOINTS]
            self.data.qpos[self._qadr["right"]] = row[RIGHT_SLICE][:ARM_JOINTS]
            self._mj.mj_kinematics(self.model, self.data)
            out[i, 0] = self.data.site_xpos[self._site["left"]]
            out[i, 1] = self.data.site_xpos[self._site["right"]]
        return out


class PiperKinematics(GripperKinematics):
    """piper_sdk's C_PiperForwardKinematics per arm, shifted to each arm's base."""

    def __init__(self, bases: dict | None = None, dh_is_offset: int = 0x01):
        from piper_sdk.kinematics.piper_fk import C_PiperForwardKinematics  # noqa: PLC0415

        self._fk = C_PiperForwardKinematics(dh_is_offset=dh_is_offset)
        self.bases = {k: np.asarray(v, float) for k, v in (bases or ARM_BASES).items()}

    def arm_point(self, side, q):
        flange = self._fk.CalFK([float(v) for v in q])[-1]  # link 6: [x, y, z (mm), r, p, y (deg)]
        return self.bases[side] + np.asarray(flange[:3]) / 1000.0


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class ArxX5Kinematics(GripperKinematics):
    """ARX X5 from its URDF joint origins (xyz in m, roll about x in rad, joint axis)."""

    # joint: origin xyz, origin roll (the URDF's rpy has only roll terms), rotation axis
    CHAIN = (
        ((0.0, 0.0, 0.0605), 0.0, "z"),         # joint1 base_link -> link1
        ((0.02, 0.0, 0.04), 0.0, "y"),          # joint2
        ((-0.264, 0.0, 0.0), 3.1416, "y"),      # joint3 (link3 flipped about x)
        ((0.245, 0.0, -0.056), 0.0, "y"),       # joint4
        ((0.06775, 0.0005, -0.0865), 0.0, "z"), # joint5
        ((0.02895, 0.0, 0.0865), -3.1416, "x"), # joint6
    )
    TOOL = (0.145, 0.0, 0.0)  # gripper_center in link6

    def __init__(self, bases: dict | None = None):
        self.bases = {k: np.asarray(v, float) for k, v in (bases or ARM_BASES).items()}

    def arm_point(self, side, q):
        rot, pos = np.eye(3), np.zeros(3)
        for (xyz, roll, axis), angle in zip(self.CHAIN, q):
            pos = pos + rot @ np.asarray(xyz)
            rot = rot @ _rot("x", roll) @ _rot(axis, float(angle))
        return self.bases[side] + pos + rot @ np.asarray(self.TOOL)


def make_kinematics(robot: str, bases: dict | None = None) -> GripperKinematics:
    """Kinematics of a robot profile: sim, agilex_aloha2 or ac_one."""
    if robot == "sim":
        return MujocoAlohaKinematics()
    if robot == "agilex_aloha2":
        return PiperKinematics(bases)
    if robot == "ac_one":
        return ArxX5Kinematics(bases)
    raise ValueError(f"robot: got {robot!r}, expected one of ['sim', 'agilex_aloha2', 'ac_one']")
