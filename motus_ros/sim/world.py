"""The MuJoCo ALOHA bimanual world (gym-aloha scenes), without ROS.

Scenes, joint layout, gripper normalization, object randomization and task rewards are those of
the `gym-aloha` package (0.1.5), which ported them from ACT (Zhao et al. 2023, "Learning
Fine-Grained Bimanual Manipulation with Low-Cost Hardware"):

- control period 0.02 s (50 Hz): `gym_aloha.constants.DT`; the MJCF timestep is MuJoCo's default
  0.002 s, so one control step is 10 physics steps (dm_control's `n_sub_steps`).
- joints, our 14-DoF layout [left 6, left gripper, right 6, right gripper]: arm joints in radians
  (ViperX 300 s waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate); grippers as
  gym-aloha's *normalized puppet gripper position*, 0 = fingers closed (left finger slide at
  0.01844 m), 1 = open (0.05800 m) (`gym_aloha.constants.PUPPET_GRIPPER_POSITION_{CLOSE,OPEN}`).
  The finger actuators reach 0.021..0.057 m, i.e. 0.065..0.975 normalized; MuJoCo clamps beyond.
- object placement: `gym_aloha.utils.sample_box_pose(seed)` / `sample_insertion_pose(seed)`.
- reward: `gym_aloha.tasks.sim.{TransferCubeTask,InsertionTask}.get_reward` (contacts), maximum 4
  for both tasks; an episode succeeds once the reward reached 4 (gym-aloha terminates on it, ACT
  counts max reward == 4 as success).

Rendering is off-screen OpenGL; on a machine without a GPU use Debian's `libosmesa6` and
MUJOCO_GL=osmesa (the default this module sets before MuJoCo is imported).
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # must precede `import mujoco`
if os.environ["MUJOCO_GL"].lower() == "osmesa":
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from dm_control import mujoco as dm_mujoco  # noqa: E402
from gym_aloha import constants as aloha  # noqa: E402
from gym_aloha.tasks.sim import InsertionTask, TransferCubeTask  # noqa: E402
from gym_aloha.utils import sample_box_pose, sample_insertion_pose  # noqa: E402

from motus_ros.layout import ARM_JOINTS, DOF, GRIPPER_INDICES  # noqa: E402

CONTROL_DT = float(aloha.DT)          # s per control step (gym_aloha.constants.DT, 50 Hz)
MAX_REWARD = 4                        # TransferCubeTask.max_reward == InsertionTask.max_reward
START_ARM_POSE = np.asarray(aloha.START_ARM_POSE, dtype=np.float64)  # (16,) MuJoCo arm qpos

# Arm joint limits (rad), identical for both arms: the position actuators' ctrlrange (= joint
# range) in gym_aloha/assets/bimanual_viperx_*.xml, order waist, shoulder, elbow, forearm_roll,
# wrist_angle, wrist_rotate. Grippers are normalized: 0..1.
ARM_LOWER = np.array([-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158])
ARM_UPPER = np.array([3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158])
ARM_JOINT_NAMES = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
LOWER = np.concatenate([ARM_LOWER, [0.0], ARM_LOWER, [0.0]])  # (14,) motus layout
UPPER = np.concatenate([ARM_UPPER, [1.0], ARM_UPPER, [1.0]])

# Rendering presets: "full" keeps the scene's own settings (4096 px shadow map, 4x multisample,
# as gym-aloha renders); "fast" drops shadows and multisampling (about 6x cheaper on OSMesa).
RENDER_QUALITIES = ("full", "fast")

# Our camera names (motus_ros.layout.CAMERAS) -> MJCF camera names of the gym-aloha scenes.
CAMERA_MAP = {"high": "top", "left_wrist": "left_wrist", "right_wrist": "right_wrist"}


@dataclass(frozen=True)
class TaskSpec:
    """One gym-aloha task: joint-control scene, mocap scene, objects and their sampler."""

    name: str
    xml: str                      # joint-position-control scene
    ee_xml: str                   # end-effector (mocap) scene, used by the scripted expert
    objects: tuple[str, ...]      # free bodies, in the order of their free joints
    object_joints: tuple[str, ...]
    reward_task: type             # gym-aloha task class providing get_reward(physics)
    sampler: Callable[[int | None], np.ndarray]  # seed -> (7 * n_objects,) poses

    @property
    def xml_path(self) -> str:
        return str(aloha.ASSETS_DIR / self.xml)

    @property
    def ee_xml_path(self) -> str:
        return str(aloha.ASSETS_DIR / self.ee_xml)


TASKS = {
    "transfer_cube": TaskSpec(
        "transfer_cube", "bimanual_viperx_transfer_cube.xml",
        "bimanual_viperx_end_effector_transfer_cube.xml", ("box",), ("red_box_joint",),
        TransferCubeTask, lambda seed: np.asarray(sample_box_pose(seed), dtype=np.float64)),
    "insertion": TaskSpec(
        "insertion", "bimanual_viperx_insertion.xml",
        "bimanual_viperx_end_effector_insertion.xml", ("peg", "socket"),
        ("red_peg_joint", "blue_socket_joint"),
        InsertionTask, lambda seed: np.concatenate(sample_insertion_pose(seed)).astype(np.float64)),
}


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise ValueError(f"task: got {task!r}, expected one of {sorted(TASKS)}")
    return TASKS[task]


def normalize_gripper(finger_position_m: float | np.ndarray):
    """Left-finger slide position (m) -> gym-aloha normalized gripper (0 closed, 1 open)."""
    return aloha.normalize_puppet_gripper_position(finger_position_m)


def unnormalize_gripper(normalized):
    """Normalized gripper (0 closed, 1 open) -> left-finger slide position (m)."""
    return aloha.unnormalize_puppet_gripper_position(normalized)


def targets_to_ctrl(targets: np.ndarray) -> np.ndarray:
    """(14,) motus-layout targets -> (16,) MuJoCo position-actuator controls (rad, m)."""
    t = np.asarray(targets, dtype=np.float64)
    ctrl = np.empty(16)
    for side, base in ((0, 0), (1, 8)):
        arm = t[side * (ARM_JOINTS + 1): side * (ARM_JOINTS + 1) + ARM_JOINTS]
        finger = unnormalize_gripper(t[GRIPPER_INDICES[side]])
        ctrl[base: base + ARM_JOINTS] = arm
        ctrl[base + 6], ctrl[base + 7] = finger, -finger  # the two fingers mirror each other
    return ctrl


def qpos16_to_layout(qpos16: np.ndarray) -> np.ndarray:
    """(16,) MuJoCo arm qpos (2 x [6 joints, left finger, right finger]) -> (14,) motus layout."""
    q = np.asarray(qpos16, dtype=np.float64)
    return np.concatenate([q[0:6], [normalize_gripper(q[6])], q[8:14], [normalize_gripper(q[14])]])


def validate_targets(targets, field: str = "targets") -> np.ndarray:
    """(14,) finite float array, or ValueError naming the field."""
    arr = np.asarray(targets, dtype=np.float64)
    if arr.shape != (DOF,):
        raise ValueError(f"{field}: got shape {arr.shape}, expected ({DOF},) "
                         "[left 6 joints, left gripper, right 6 joints, right gripper]")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        raise ValueError(f"{field}: non-finite values at indices {bad}, expected finite numbers")
    return arr


class SimWorld:
    """One gym-aloha bimanual scene: reset, 50 Hz control steps, state, reward, camera images.

    Not thread-safe: callers that step and render from different threads hold their own lock
    around step()/update_scenes() (rendering the captured scenes needs no lock).
    """

    def __init__(self, task: str = "transfer_cube", image_size: tuple[int, int] = (480, 640),
                 seed: int | None = None, render_quality: str = "full"):
        self.spec = task_spec(task)
        self.task = task
        height, width = (int(v) for v in image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size: got {image_size!r}, expected (height > 0, width > 0)")
        self.image_size = (height, width)
        self._physics = dm_mujoco.Physics.from_xml_path(self.spec.xml_path)
        self.model: mujoco.MjModel = self._physics.model.ptr
        self.data: mujoco.MjData = self._physics.data.ptr
        # The off-screen framebuffer must hold the requested image (gym-aloha sets 640x480).
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, width)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, height)
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality: got {render_quality!r}, expected one of "
                             f"{list(RENDER_QUALITIES)}")
        self.render_quality = render_quality
        if render_quality == "fast":
            self.model.vis.quality.offsamples = 0
        self.substeps = int(round(CONTROL_DT / self.model.opt.timestep))  # 10
        self._reward_task = self.spec.reward_task()
        self._qadr = [int(self.model.jnt_qposadr[self.model.joint(j).id])
                      for j in self.spec.object_joints]
        self._rng = np.random.default_rng(seed)
        self._renderers: dict[str, mujoco.Renderer] = {}
        self.seed: int | None = None
        self.steps = 0
        self.reward = 0
        self.max_reward = 0
        self.reset(seed)

    # ---- episode -------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start an episode: arms at gym-aloha's START_ARM_POSE, objects placed from `seed`.

        Without a seed one is drawn from the world's generator (seeded at construction), so a
        sequence of resets is reproducible. Returns the object poses.
        """
        if seed is None:
            seed = int(self._rng.integers(0, 2**31 - 1))
        self.seed = int(seed)
        poses = self.spec.sampler(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:16] = START_ARM_POSE
        self.data.ctrl[:] = START_ARM_POSE  # as gym-aloha's initialize_episode
        for i, adr in enumerate(self._qadr):
            self.data.qpos[adr: adr + 7] = poses[7 * i: 7 * i + 7]
        mujoco.mj_forward(self.model, self.data)
        self.steps = 0
        self.reward = 0
        self.max_reward = 0
        return self.object_poses()

    def step(self, targets) -> int:
        """Apply (14,) joint targets and advance one control step (0.02 s); returns the reward.

        As dm_control's Physics.step (which gym-aloha uses): the state's position and velocity
        dependent fields (body poses, contacts) are brought up to date with the new qpos, so a
        camera captured now and the reward show the state at `time`, not one substep before
        (a bare mj_step leaves them 2 ms behind). The trajectory is that of mj_step.
        """
        self.data.ctrl[:] = targets_to_ctrl(validate_targets(targets))
        if self.model.opt.integrator != mujoco.mjtIntegrator.mjINT_RK4:
            mujoco.mj_step2(self.model, self.data)   # mj_step1 ran for this state (reset/last step)
            if self.substeps > 1:
                mujoco.mj_step(self.model, self.data, nstep=self.substeps - 1)
        else:
            mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        mujoco.mj_step1(self.model, self.data)
        self.steps += 1
        self.reward = int(self._reward_task.get_reward(self._physics))
        self.max_reward = max(self.max_reward, self.reward)
        return self.reward

    # ---- state ---------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated time since reset (s)."""
        return float(self.data.time)

    @property
    def success(self) -> bool:
        """True once the task reward reached its maximum (4) during this episode."""
        return self.max_reward >= MAX_REWARD

    def qpos(self) -> np.ndarray:
        """(14,) joint positions: radians, grippers normalized (0 closed, 1 open).

        The gripper is measured on one finger, whose slide joint has soft limits: a squeezed cube
        pushes the reading past 0 or 1 (seen: -0.42 and 1.70 in a 10-minute soak). It is not
        clipped: the shipped weights were trained on these readings, and clipping them cost 2 of
        30 closed-loop episodes (23/30 twice against 25/30).
        """
        return qpos16_to_layout(self.data.qpos[:16])

    def qvel(self) -> np.ndarray:
        """(14,) joint velocities: rad/s, grippers in normalized units per second."""
        v = self.data.qvel[:16]
        scale = aloha.PUPPET_GRIPPER_POSITION_OPEN - aloha.PUPPET_GRIPPER_POSITION_CLOSE
        return np.concatenate([v[0:6], [v[6] / scale], v[8:14], [v[14] / scale]])

    def ctrl_targets(self) -> np.ndarray:
        """(14,) targets currently applied to the actuators (motus layout)."""
        return qpos16_to_layout(self.data.ctrl[:16])

    def object_poses(self) -> dict[str, np.ndarray]:
        """Object name -> (7,) pose [x, y, z (m, world frame), qw, qx, qy, qz]."""
        return {name: self.data.qpos[adr: adr + 7].copy()
                for name, adr in zip(self.spec.objects, self._qadr)}

    def joint_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(14,) lower and upper position limits read from the MJCF (rad; grippers 0..1)."""
        lower, upper = np.zeros(DOF), np.ones(DOF)
        for side, prefix in enumerate(("vx300s_left", "vx300s_right")):
            for j, joint in enumerate(ARM_JOINT_NAMES):
                lo, hi = self.model.joint(f"{prefix}/{joint}").range
                lower[side * 7 + j], upper[side * 7 + j] = lo, hi
        return lower, upper

    # ---- cameras -------------------------------------------------------------------------
    @staticmethod
    def mjcf_camera(camera: str) -> str:
        """Our camera name (high, left_wrist, right_wrist) or an MJCF name -> MJCF name."""
        if camera in CAMERA_MAP:
            return CAMERA_MAP[camera]
        if camera in CAMERA_MAP.values():
            return camera
        raise ValueError(f"camera: got {camera!r}, expected one of {sorted(CAMERA_MAP)}")

    def camera_fovy(self, camera: str) -> float:
        """Vertical field of view of a camera (degrees, from the MJCF)."""
        return float(self.model.camera(self.mjcf_camera(camera)).fovy[0])

    def _renderer(self, camera: str) -> mujoco.Renderer:
        name = self.mjcf_camera(camera)
        if name not in self._renderers:
            height, width = self.image_size
            renderer = mujoco.Renderer(self.model, height, width)
            if self.render_quality == "fast":
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderers[name] = renderer
        return self._renderers[name]

    def prepare_renderers(self, cameras) -> None:
        """Create the cameras' GL contexts in the calling thread (the thread that will render)."""
        for camera in cameras:
            self._renderer(camera)

    def update_scenes(self, cameras) -> None:
        """Capture the current state into each camera's scene (cheap; needs the state lock)."""
        for camera in cameras:
            self._renderer(camera).update_scene(self.data, self.mjcf_camera(camera))

    def render_scenes(self, cameras) -> dict[str, np.ndarray]:
        """Rasterize the scenes captured by update_scenes (slow; reads no simulation state)."""
        return {camera: self._renderer(camera).render() for camera in cameras}

    def render(self, camera: str = "high") -> np.ndarray:
        """(H, W, 3) uint8 RGB image of a camera at the current state."""
        self.update_scenes([camera])
        return self.render_scenes([camera])[camera]

    def close(self) -> None:
        """Free the GL contexts; safe to call twice."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
