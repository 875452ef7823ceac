"""The bimanual 14-DoF layout shared by Agilex-Aloha-2, AC-One, the simulation and the model.

Order (Motus / ACT convention): [left 6 joints, left gripper, right 6 joints, right gripper].
"""
from __future__ import annotations

ARM_JOINTS = 6
DOF = 2 * (ARM_JOINTS + 1)  # 14
SIDES = ("left", "right")
JOINT_NAMES: tuple[str, ...] = tuple(
    f"{side}_{name}" for side in SIDES
    for name in [*(f"joint{i}" for i in range(1, ARM_JOINTS + 1)), "gripper"]
)
GRIPPER_INDICES = (ARM_JOINTS, 2 * ARM_JOINTS + 1)  # 6, 13
LEFT_SLICE = slice(0, ARM_JOINTS + 1)
RIGHT_SLICE = slice(ARM_JOINTS + 1, DOF)

# Timing of the paper's action-dense, video-sparse layout (arXiv 2512.13030).
CONTROL_RATE_HZ = 30.0       # action rate
CHUNK_SIZE = 48              # actions per chunk: 1.6 s at 30 Hz
VIDEO_RATE_HZ = 5.0          # predicted-frame rate
VIDEO_FRAMES = 8             # predicted frames per chunk (plus one condition frame)

# Camera names and default topics (Agilex Cobot Magic convention: camera_f/l/r renamed).
CAMERAS = ("high", "left_wrist", "right_wrist")


def camera_image_topic(camera: str) -> str:
    """Default image topic of a camera: /camera_<name>/color/image_raw."""
    return f"/camera_{camera}/color/image_raw"


def camera_info_topic(camera: str) -> str:
    return f"/camera_{camera}/color/camera_info"


# How a node reads a camera: sensor_msgs/Image on the image topic, or sensor_msgs/CompressedImage
# (JPEG) on image_transport's compressed topic beside it.
IMAGE_TRANSPORTS = ("raw", "compressed")


def compressed_topic(topic: str) -> str:
    """image_transport naming: /camera/image_raw -> /camera/image_raw/compressed."""
    return topic.rstrip("/") + "/compressed"


def camera_transport_topic(camera: str, transport: str = "raw") -> str:
    """A camera's image topic for `transport` (IMAGE_TRANSPORTS): raw = camera_image_topic,
    compressed = its image_transport compressed topic."""
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"image_transport: got {transport!r}, expected one of {list(IMAGE_TRANSPORTS)}")
    topic = camera_image_topic(camera)
    return compressed_topic(topic) if transport == "compressed" else topic


# Default topic and service names of the graph (all remappable).
TOPICS = {
    "joint_states": "/puppet/joint_states",
    "leader_joint_states": "/master/joint_states",
    "joint_command": "/motus/joint_command",
    "action_chunk": "/motus/action_chunk",
    "predicted_future": "/motus/predicted_future",
    "mode": "/motus/mode",
    "instruction": "/motus/instruction",
    "execution_stats": "/motus/execution_stats",
    "wm_future": "/motus/wm/predicted_future",
    "wm_comparison": "/motus/wm/predicted_future/comparison",   # sensor_msgs/Image: real above predicted
    "markers": "/motus/markers",
    "task_success": "/sim/task_success",
    "sim_episode": "/sim/episode",            # std_msgs/UInt32, latched: sent at every reset
    "episode_start": "/sim/episode_start",    # std_msgs/Header, latched: the episode's first state
    "arm_enabled": "/arm/enabled",
    "sim_reward": "/sim/reward",
    "object_poses": "/sim/object_poses",
}
SERVICES = {
    "set_mode": "/motus/set_mode",
    "enable": "/arm/enable",
    "disable": "/arm/disable",
    "emergency_stop": "/arm/emergency_stop",
    "soft_stop": "/arm/soft_stop",
    "release_emergency_stop": "/arm/release_emergency_stop",
    "executor_reset": "/chunk_executor/reset",
    "sim_reset": "/sim/reset",
    "start_episode": "/recorder/start_episode",
    "stop_episode": "/recorder/stop_episode",
}


class LayoutError(ValueError):
    """Names that cannot be put in layout order; `reason` is a short counter key for diagnostics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def reorder(names, values, layout=JOINT_NAMES, field: str = "joint_names",
            allow_extra: bool = False):
    """Columns of `values` (..., len(names)) in `layout` order: (..., len(layout)) float64.

    The one place where named joints become the layout's order (commands, chunks, joint states).
    Empty `names` means the values are already in layout order (their size is checked). Every
    layout name must appear exactly once; with allow_extra (joint states of a robot that also
    reports other joints) further names are ignored, otherwise they are an error. Raises
    LayoutError naming `field`, what was unknown or missing, and the expected names.
    """
    import numpy as np  # noqa: PLC0415 - layout is imported by light modules; numpy only on use

    values = np.asarray(values, dtype=np.float64)
    names = list(names)
    width = values.shape[-1] if values.ndim else 0
    if not names:
        if width != len(layout):
            raise LayoutError("wrong_size", f"{field}: empty, so {len(layout)} values in layout order "
                                            f"were expected, got {width}")
        return values.copy()
    if len(names) != width:
        raise LayoutError("wrong_size", f"{field}: {len(names)} names but {width} values")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in layout if n not in index]
    unknown = [] if allow_extra else [n for n in names if n not in layout]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or duplicated:
        raise LayoutError("wrong_names", f"{field}: unknown {unknown}, missing {missing}, repeated "
                                         f"{duplicated} (expected each of {list(layout)} once)")
    return values[..., [index[n] for n in layout]]


# The simulated transfer-cube task: the instruction the shipped sim checkpoint was trained with
# (models/sim_transfer_cube/README.md; config/sim/policy.yaml and world_model.yaml repeat it,
# YAML cannot import it), and the sim cameras' default image size.
SIM_INSTRUCTION = "pick up the cube with the right arm and hand it to the left arm"
SIM_IMAGE_SIZE = (240, 320)   # (height, width) pixels: the sim node's image_height / image_width defaults
