"""ROS glue shared by the policy and world-model nodes: camera/joint-state inputs and messages.

Subscriptions only store messages (decoding happens once per inference, in assemble()), so the
callbacks stay cheap at 3 x 30 Hz.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_ros.image_conversions import image_to_numpy, numpy_to_image
from motus_ros.layout import CAMERAS, JOINT_NAMES, TOPICS, VIDEO_RATE_HZ, camera_image_topic
from motus_ros.motus.backends import BackendUnavailable
from motus_ros.params import Param, ParameterError
from motus_ros.policy.modes import mode_id
from motus_ros.policy.sync import STATE, ObservationSync, SyncResult, state_vector
from motus_ros.qos import IMAGE_RELIABILITY, LATCHED, image_qos

# Parameters shared by the nodes that run Motus (policy, world model): the model ...
MODEL_PARAMS = [
    Param("preset", "tiny", "model preset name (motus_ros/motus/config.py)"),
    Param("checkpoint", "", "weights folder or file ('' = the preset's randomly initialised weights)"),
    Param("stats", "", "normalisation statistics file ('' = the robot's default in models/stats/)"),
    Param("robot", "sim", "robot profile (normalisation statistics, gripper units)"),
    Param("device", "cpu", "torch device (cpu, cuda, cuda:0, ...)"),
    Param("seed", 0, "random seed of the sampler", min=0, max=2**31 - 1),
]
# ... and the observation it reads.
INPUT_PARAMS = [
    Param("instruction", "", "task instruction text (also settable on /motus/instruction)"),
    Param("cameras", list(CAMERAS), "camera names, in the model's order (high, left, right wrist)"),
    Param("sync_tolerance_s", 0.05, "largest stamp spread between matched cameras and joint state (s)",
          min=0.0, max=10.0),
    Param("image_reliability", "reliable", "camera subscription QoS: reliable, or best_effort "
          "for a camera driver that publishes best effort (see motus_ros/qos.py)",
          choices=IMAGE_RELIABILITY),
]

# Predicted futures are published rarely (one per chunk or rollout) and are worth seeing late: keep
# the latest one for subscribers that join afterwards (RViz, `motus-ros snapshot`).
PREDICTION_QOS = LATCHED


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class ObservationInput:
    """Subscribes the cameras and the joint state of a node and feeds an ObservationSync."""

    def __init__(self, node, cameras, tolerance_s: float, max_age_s: float,
                 joint_states_topic: str = TOPICS["joint_states"],
                 image_reliability: str = "reliable"):
        self.node = node
        self.sync = ObservationSync(cameras, tolerance_s, max_age_s)
        self.bad_state = ""
        self._subs = [
            node.create_subscription(Image, camera_image_topic(cam),
                                     lambda msg, cam=cam: self._on_image(cam, msg),
                                     image_qos(image_reliability))
            for cam in cameras]
        # Best effort matches any publisher; only the newest states matter to the sync.
        self._subs.append(node.create_subscription(JointState, joint_states_topic,
                                                   self._on_state, qos_profile_sensor_data))

    def _on_image(self, camera: str, msg: Image) -> None:
        self.sync.add(camera, stamp_seconds(msg.header.stamp), msg)

    def _on_state(self, msg: JointState) -> None:
        try:
            positions = state_vector(msg.name, msg.position)
        except ValueError as exc:
            self.bad_state = str(exc)
            return
        self.bad_state = ""
        self.sync.add(STATE, stamp_seconds(msg.header.stamp), positions)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def assemble(self, at: float | None = None, require_new: bool = True):
        """(SyncResult, observation dict or None) with images decoded to RGB uint8."""
        result: SyncResult = self.sync.assemble(self.now(), at=at, require_new=require_new)
        if not result.ok:
            if self.bad_state and "joint state" in result.reason:
                result.reason += f" (joint states rejected: {self.bad_state})"
            return result, None
        images = {cam: image_to_numpy(result.samples[cam], "rgb8") for cam in self.sync.cameras}
        return result, {"images": images, "state": result.samples[STATE].copy()}


def action_chunk_msg(actions: np.ndarray, stamp: float, mode: str, chunk_id: int,
                     control_period: float, latency: float) -> ActionChunk:
    """(horizon, 14) absolute positions -> ActionChunk stamped with the observation time."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != len(JOINT_NAMES):
        raise ValueError(f"policy actions: got shape {actions.shape}, expected (horizon, "
                         f"{len(JOINT_NAMES)})")
    if not np.all(np.isfinite(actions)):
        raise ValueError("policy actions: contain NaN or inf; chunk not published")
    msg = ActionChunk()
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.joint_names = list(JOINT_NAMES)
    msg.control_period = float(control_period)
    msg.horizon = int(actions.shape[0])
    msg.positions = actions.reshape(-1).tolist()  # row-major: row = time step
    msg.mode = InferenceMode(mode=mode_id(mode))
    msg.chunk_id = int(chunk_id)
    msg.inference_latency = float(latency)
    return msg


def chunk_actions(msg: ActionChunk) -> np.ndarray:
    """ActionChunk -> (horizon, 14) in JOINT_NAMES order; ValueError on a malformed message."""
    dof = len(msg.joint_names)
    if dof == 0 or len(msg.positions) != msg.horizon * dof:
        raise ValueError(f"ActionChunk.positions: got {len(msg.positions)} values, expected "
                         f"horizon {msg.horizon} x {dof} joint_names")
    rows = np.asarray(msg.positions, dtype=np.float64).reshape(msg.horizon, dof)
    if list(msg.joint_names) == list(JOINT_NAMES):
        return rows
    index = {n: i for i, n in enumerate(msg.joint_names)}
    missing = [n for n in JOINT_NAMES if n not in index]
    if missing:
        raise ValueError(f"ActionChunk.joint_names: missing {missing}")
    return rows[:, [index[n] for n in JOINT_NAMES]]


def predicted_future_msg(frames: np.ndarray, stamp: float, mode: str, chunk_id: int,
                         frame_period: float = 1.0 / VIDEO_RATE_HZ,
                         frame_id: str = "motus_prediction") -> PredictedFuture:
    """(N, H, W, 3) uint8 RGB -> PredictedFuture stamped with the observation time."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"predicted frames: got shape {frames.shape} dtype {frames.dtype}, "
                         "expected (N, H, W, 3) uint8")
    msg = PredictedFuture()
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.frames = [numpy_to_image(f, "rgb8", stamp=seconds_to_stamp(stamp + (i + 1) * frame_period),
                                 frame_id=frame_id) for i, f in enumerate(frames)]
    msg.frame_period = float(frame_period)
    msg.chunk_id = int(chunk_id)
    msg.mode = InferenceMode(mode=mode_id(mode))
    return msg


def frame_strip(frames: np.ndarray, max_width: int = 1600) -> np.ndarray:
    """Frames side by side in one image (downsampled by an integer factor to fit max_width)."""
    n, h, w, _ = frames.shape
    step = max(1, int(np.ceil(n * w / max_width)))
    small = frames[:, ::step, ::step]
    return np.ascontiguousarray(np.concatenate(list(small), axis=1))


def load_model(params: dict, factory, what: str, mode: str, steps: int | None, **options):
    """The Motus runtime from a node's model parameters (preset, checkpoint, stats, device, seed,
    robot); load errors become a ParameterError naming the parameters. factory: load_policy or a
    test double."""
    if factory is None:
        from motus_ros.policy.runtime import load_policy  # noqa: PLC0415 - torch import is slow
        factory = load_policy
    p = params
    try:
        return factory(preset=p["preset"], checkpoint=p["checkpoint"] or None,
                       stats=p["stats"] or None, mode=mode, steps=steps, device=p["device"],
                       seed=p["seed"], robot=p["robot"], **options)
    except (FileNotFoundError, ValueError, KeyError, BackendUnavailable) as exc:
        chosen = ", ".join(f"{k} {v!r}" for k, v in options.items() if v is not None)
        raise ParameterError(f"cannot load the {what} (preset {p['preset']!r}, checkpoint "
                             f"{p['checkpoint']!r}, stats {p['stats']!r}, robot {p['robot']!r}"
                             f"{', ' + chosen if chosen else ''}): {exc}") from exc
