"""Scripted experts for the gym-aloha transfer-cube and insertion tasks (they play the operator).

Method of ACT (Zhao et al. 2023, tonyzhaozh/act `scripted_policy.py` and `record_sim_episodes.py`):
gripper waypoints are laid out in end-effector space from the objects' initial poses, the
end-effector (mocap) scene shipped by gym-aloha follows them (each gripper link is welded to a
mocap body), and the arm joint positions it passes through, with the commanded gripper openings,
become the 14-dim joint targets replayed in the joint-controlled scene. The waypoint geometry
(heights, meeting point, wrist rotations, timing over 400 steps of 0.02 s) follows ACT's
scripted policies; this is an independent implementation.

Pure module (no ROS). Units: metres, unit quaternions [w, x, y, z], grippers normalized as in
motus_ros.sim.world (0 closed, 1 open), joint targets in radians.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from motus_ros.layout import DOF
from motus_ros.sim import world as simworld

EPISODE_STEPS = 400  # control steps of 0.02 s (8 s): ACT's episode_len for both scripted sim tasks
NULL_SPACE_STIFFNESS = 20.0  # N*m/rad on forearm_roll / wrist_rotate of the planning scene
NULL_SPACE_DAMPING = 5.0     # N*m*s/rad, same joints; see _ee_model
SPAWN_Z = 0.05       # objects spawn at z = 0.05 m (gym_aloha.utils samplers) and settle on the table

SIDES = ("left", "right")
LEVEL = np.array([1.0, 0.0, 0.0, 0.0])  # mocap orientation of a gripper pointing level to the centre


def quat_axis_angle(axis, degrees: float) -> np.ndarray:
    """Unit quaternion [w, x, y, z] of a rotation by `degrees` about `axis`."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    half = np.deg2rad(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * axis])


def quat_mul(a, b) -> np.ndarray:
    """Hamilton product a * b of quaternions [w, x, y, z]."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


@dataclass(frozen=True)
class Waypoint:
    """Gripper-link target at a control step: position (m), orientation, opening (0..1)."""

    step: int
    xyz: np.ndarray
    quat: np.ndarray
    gripper: float


def _wp(step, xyz, quat, gripper) -> Waypoint:
    return Waypoint(int(step), np.asarray(xyz, dtype=np.float64), np.asarray(quat, np.float64),
                    float(gripper))


def _object_xyz(object_poses: dict, name: str) -> np.ndarray:
    if name not in object_poses:
        raise ValueError(f"object_poses: missing {name!r}, got {sorted(object_poses)}")
    pose = np.asarray(object_poses[name], dtype=np.float64)
    if pose.shape[0] < 3 or not np.all(np.isfinite(pose[:3])):
        raise ValueError(f"object_poses[{name!r}]: got {pose!r}, expected finite [x, y, z, ...]")
    # Heights are laid out from the spawn height, so poses taken before or after the object
    # settled on the table give the same plan.
    return np.array([pose[0], pose[1], SPAWN_Z])


def transfer_cube_waypoints(object_poses: dict) -> dict[str, list[Waypoint]]:
    """Right gripper picks the cube and hands it to the left gripper above the table centre."""
    box = _object_xyz(object_poses, "box")
    start = ee_start()
    start_l, start_r = start["left"], start["right"]
    pick = quat_axis_angle([0, 1, 0], -60)  # tilt down toward the table
    meet_l = quat_axis_angle([1, 0, 0], 90)  # left fingers across the right ones at hand-over
    meet = np.array([0.0, 0.5, 0.25])
    right = [
        _wp(0, start_r[0], start_r[1], 0),
        _wp(90, box + [0, 0, 0.08], pick, 1),        # above the cube, open
        _wp(130, box + [0, 0, -0.015], pick, 1),     # down around it
        _wp(170, box + [0, 0, -0.015], pick, 0),     # close
        _wp(200, meet + [0.05, 0, 0], pick, 0),      # lift toward the meeting point
        _wp(220, meet, pick, 0),
        _wp(310, meet, pick, 1),                     # release once the left gripper holds it
        _wp(360, meet + [0.1, 0, 0], pick, 1),       # back off to the right
        _wp(EPISODE_STEPS, meet + [0.1, 0, 0], pick, 1),
    ]
    left = [
        _wp(0, start_l[0], start_l[1], 0),
        _wp(100, meet + [-0.1, 0, -0.02], meet_l, 1),  # approach the meeting point, open
        _wp(260, meet + [0.02, 0, -0.02], meet_l, 1),  # around the cube
        _wp(310, meet + [0.02, 0, -0.02], meet_l, 0),  # close
        _wp(360, meet + [-0.1, 0, -0.02], LEVEL, 0),  # pull it away
        _wp(EPISODE_STEPS, meet + [-0.1, 0, -0.02], LEVEL, 0),
    ]
    return {"left": left, "right": right}


def insertion_waypoints(object_poses: dict) -> dict[str, list[Waypoint]]:
    """Left gripper picks the socket, right gripper the peg; they meet and insert."""
    peg = _object_xyz(object_poses, "peg")
    socket = _object_xyz(object_poses, "socket")
    start = ee_start()
    start_l, start_r = start["left"], start["right"]
    pick_r = quat_axis_angle([0, 1, 0], -60)
    pick_l = quat_axis_angle([0, 1, 0], 60)
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = 0.00715  # the peg sits this much lower in the right gripper than the socket's hole
    left = [
        _wp(0, start_l[0], start_l[1], 0),
        _wp(120, socket + [0, 0, 0.08], pick_l, 1),
        _wp(170, socket + [0, 0, -0.03], pick_l, 1),
        _wp(220, socket + [0, 0, -0.03], pick_l, 0),
        _wp(285, meet + [-0.1, 0, 0], pick_l, 0),
        _wp(340, meet + [-0.05, 0, 0], pick_l, 0),
        _wp(EPISODE_STEPS, meet + [-0.05, 0, 0], pick_l, 0),
    ]
    right = [
        _wp(0, start_r[0], start_r[1], 0),
        _wp(120, peg + [0, 0, 0.08], pick_r, 1),
        _wp(170, peg + [0, 0, -0.03], pick_r, 1),
        _wp(220, peg + [0, 0, -0.03], pick_r, 0),
        _wp(285, meet + [0.1, 0, lift_right], pick_r, 0),
        _wp(340, meet + [0.05, 0, lift_right], pick_r, 0),
        _wp(EPISODE_STEPS, meet + [0.05, 0, lift_right], pick_r, 0),
    ]
    return {"left": left, "right": right}


WAYPOINTS = {"transfer_cube": transfer_cube_waypoints, "insertion": insertion_waypoints}


def interpolate(waypoints: list[Waypoint], step: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Gripper pose and opening at `step`: linear in position and opening, normalized-linear in
    orientation, held at the ends."""
    if step <= waypoints[0].step:
        w = waypoints[0]
        return w.xyz.copy(), w.quat.copy(), w.gripper
    for a, b in zip(waypoints, waypoints[1:]):
        if step <= b.step:
            f = (step - a.step) / (b.step - a.step)
            qb = b.quat if np.dot(a.quat, b.quat) >= 0 else -b.quat  # shortest way round
            quat = (1 - f) * a.quat + f * qb
            return (1 - f) * a.xyz + f * b.xyz, quat / np.linalg.norm(quat), \
                (1 - f) * a.gripper + f * b.gripper
    w = waypoints[-1]
    return w.xyz.copy(), w.quat.copy(), w.gripper


@functools.lru_cache(maxsize=4)
def _ee_model(task: str):
    import mujoco
    model = mujoco.MjModel.from_xml_path(simworld.task_spec(task).ee_xml_path)
    # This scene only plans joint paths, so make it follow the mocaps closely: with the shipped
    # soft welds (solimp 0.25) and the arms' joint friction (frictionloss up to 60) the gripper
    # lagged 4-10 cm behind the mocap on MuJoCo 3 and missed the objects.
    weld = model.eq_type == mujoco.mjtEq.mjEQ_WELD
    model.eq_solimp[weld, :3] = [0.95, 0.99, 0.001]
    model.eq_solref[weld] = [0.01, 1.0]
    arm_dofs = [model.jnt_dofadr[model.joint(f"vx300s_{side}/{j}").id] for side in SIDES
                for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")]
    model.dof_frictionloss[arm_dofs] = 0.0
    # With the wrist straight, forearm_roll and wrist_rotate share one axis and only their sum is
    # fixed by the gripper pose; a spring toward 0 and some damping keep them from spinning
    # through +-pi there (seen at 36 rad/s without: no follower tracks that). Measured on seeds
    # 0-9: peak roll/rotate speed 1.6 rad/s, transfer-cube success unchanged (10/10).
    for side in SIDES:
        for j in ("forearm_roll", "wrist_rotate"):
            jid = model.joint(f"vx300s_{side}/{j}").id
            model.jnt_stiffness[jid] = NULL_SPACE_STIFFNESS
            model.qpos_spring[model.jnt_qposadr[jid]] = 0.0
            model.dof_damping[model.jnt_dofadr[jid]] = NULL_SPACE_DAMPING
    return model


@functools.lru_cache(maxsize=1)
def ee_start() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mocap pose of each side that holds the arm still at START_ARM_POSE.

    The MJCF welds give no relpose, so MuJoCo keeps the mocap-to-gripper-link pose of qpos0: the
    mocap point sits 0.1347 m ahead of the gripper link, between the finger pads (which reach
    0.154 m); the waypoints place that point. gym-aloha's initialize_robots puts the mocaps on
    the gripper links instead (values from an older MuJoCo), which would yank the arms at t=0.
    """
    import mujoco

    model = _ee_model("transfer_cube")
    data = mujoco.MjData(model)
    data.qpos[:16] = simworld.START_ARM_POSE
    mujoco.mj_forward(model, data)
    out = {}
    for i, side in enumerate(SIDES):
        link = data.body(f"vx300s_{side}/gripper_link")
        relpos, relquat = model.eq_data[i, 3:6], model.eq_data[i, 6:10]
        # weld: p_link = p_mocap + R_mocap relpos, q_link = q_mocap * relquat
        quat = quat_mul(link.xquat, relquat * np.array([1.0, -1.0, -1.0, -1.0]))
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, quat)
        out[side] = (link.xpos - rot.reshape(3, 3) @ relpos, quat / np.linalg.norm(quat))
    return out


def joint_trajectory(task: str, object_poses: dict,
                     steps: int = EPISODE_STEPS) -> np.ndarray:
    """(steps, 14) joint targets: the end-effector scene follows the waypoints and its arm joints
    are recorded after each control step, with the commanded gripper openings."""
    import mujoco

    spec = simworld.task_spec(task)
    plan = WAYPOINTS[task](object_poses)
    model = _ee_model(task)
    data = mujoco.MjData(model)
    substeps = int(round(simworld.CONTROL_DT / model.opt.timestep))
    data.qpos[:16] = simworld.START_ARM_POSE
    for name, joint in zip(spec.objects, spec.object_joints):
        adr = int(model.jnt_qposadr[model.joint(joint).id])
        pose = np.asarray(object_poses[name], dtype=np.float64)
        data.qpos[adr: adr + 7] = pose[:7] if pose.shape[0] >= 7 else [*pose[:3], 1, 0, 0, 0]
    for i, side in enumerate(SIDES):
        data.mocap_pos[i], data.mocap_quat[i] = ee_start()[side]
    mujoco.mj_forward(model, data)
    out = np.empty((steps, DOF))
    for k in range(steps):
        grips = []
        for i, side in enumerate(SIDES):
            xyz, quat, grip = interpolate(plan[side], k)
            data.mocap_pos[i], data.mocap_quat[i] = xyz, quat
            finger = simworld.unnormalize_gripper(grip)
            data.ctrl[2 * i], data.ctrl[2 * i + 1] = finger, -finger
            grips.append(grip)
        mujoco.mj_step(model, data, nstep=substeps)
        q = simworld.qpos16_to_layout(data.qpos[:16])
        q[6], q[13] = grips  # command the opening, not the finger position reached
        out[k] = q
    return continuous_wrist(out)


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def continuous_wrist(targets: np.ndarray) -> np.ndarray:
    """Pick, step by step, the wrist solution closest to the previous one.

    forearm_roll (x), wrist_angle (y) and wrist_rotate (x) meet in one point, and
    Rx(r + pi) Ry(-a) Rx(w + pi) == Rx(r) Ry(a) Rx(w): both triples give the same gripper pose.
    Passing the straight-wrist singularity, the planning scene may jump from one to the other
    (roll and rotate flipping by pi within a few steps); replaying the twin keeps it smooth.
    """
    out = np.array(targets, dtype=np.float64, copy=True)
    for roll in (3, 10):  # forearm_roll of each side; wrist_angle, wrist_rotate follow it
        idx = [roll, roll + 1, roll + 2]
        for k in range(1, len(out)):
            q = out[k, idx]
            twin = np.array([_wrap(q[0] + np.pi), -q[1], _wrap(q[2] + np.pi)])
            prev = out[k - 1, idx]
            if np.abs(twin - prev).sum() < np.abs(q - prev).sum():
                out[k, idx] = twin
    return out


class ScriptedExpert:
    """The joint targets of one scripted episode, planned from the objects' poses at reset."""

    def __init__(self, task: str, object_poses: dict, steps: int = EPISODE_STEPS):
        simworld.task_spec(task)
        self.task = task
        self.object_poses = {k: np.asarray(v, dtype=np.float64).copy()
                             for k, v in object_poses.items()}
        self.targets = joint_trajectory(task, self.object_poses, steps)  # (steps, 14)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def duration_s(self) -> float:
        """Length of the episode in simulated time (s)."""
        return len(self.targets) * simworld.CONTROL_DT

    def action(self, step: int) -> np.ndarray:
        """(14,) targets for control step `step` (held at the last one after the end)."""
        return self.targets[int(np.clip(step, 0, len(self.targets) - 1))].copy()

    def action_at(self, t: float) -> np.ndarray:
        """(14,) targets at time t (s since the episode started), linear between control steps,
        so a node publishing at another rate (e.g. 30 Hz) replays the same motion."""
        x = t / simworld.CONTROL_DT
        k = int(np.floor(np.clip(x, 0, len(self.targets) - 1)))
        f = float(np.clip(x - k, 0.0, 1.0))
        nxt = min(k + 1, len(self.targets) - 1)
        return (1 - f) * self.targets[k] + f * self.targets[nxt]

    def done(self, t: float) -> bool:
        return t >= self.duration_s


def run_episode(world: "simworld.SimWorld", seed: int | None = None,
                steps: int = EPISODE_STEPS) -> dict:
    """Reset the world, replay the expert in it, return {seed, success, max_reward}."""
    poses = world.reset(seed)
    expert = ScriptedExpert(world.task, poses, steps)
    for k in range(len(expert)):
        world.step(expert.action(k))
    return {"seed": world.seed, "success": world.success, "max_reward": world.max_reward}
