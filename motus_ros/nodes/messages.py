"""Motus messages <-> numpy: ActionChunk and PredictedFuture, in the layout's joint order.

Pure conversions (no node, no subscriptions) used by the nodes, `motus-ros snapshot` and the
benches. Stamps go through motus_ros.stamps, joint order through layout.reorder (JointState:
policy.sync.state_vector).
"""
from __future__ import annotations

import numpy as np

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_ros.ros.images import numpy_to_image
from motus_ros.layout import JOINT_NAMES, VIDEO_RATE_HZ, reorder
from motus_ros.motus.modes import mode_id
from motus_ros.ros.qos import LATCHED
from motus_ros.stamps import to_time_msg

# Predicted futures are published rarely (one per chunk or rollout) and are worth seeing late: keep
# the latest one for subscribers that join afterwards (RViz, `motus-ros snapshot`).
PREDICTION_QOS = LATCHED


def action_chunk_msg(actions: np.ndarray, stamp: float, mode: str, chunk_id: int,
                     control_period: float, latency: float) -> ActionChunk:
    """(horizon, 14) absolute positions -> ActionChunk stamped with the observation time (s)."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != len(JOINT_NAMES):
        raise ValueError(f"policy actions: got shape {actions.shape}, expected (horizon, "
                         f"{len(JOINT_NAMES)})")
    if not np.all(np.isfinite(actions)):
        raise ValueError("policy actions: contain NaN or inf; chunk not published")
    msg = ActionChunk()
    msg.header.stamp = to_time_msg(stamp)
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
    dof = len(msg.joint_names) or len(JOINT_NAMES)   # no names: already in layout order
    if len(msg.positions) != msg.horizon * dof:
        raise ValueError(f"ActionChunk.positions: got {len(msg.positions)} values, expected "
                         f"horizon {msg.horizon} x {dof} joints")
    rows = np.asarray(msg.positions, dtype=np.float64).reshape(msg.horizon, dof)
    return reorder(msg.joint_names, rows, field="ActionChunk.joint_names")


def predicted_future_msg(frames: np.ndarray, stamp: float, mode: str, chunk_id: int,
                         frame_period: float = 1.0 / VIDEO_RATE_HZ,
                         frame_id: str = "motus_prediction") -> PredictedFuture:
    """(N, H, W, 3) uint8 RGB -> PredictedFuture stamped with the observation time (s); frame i
    is stamped (i + 1) * frame_period later."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"predicted frames: got shape {frames.shape} dtype {frames.dtype}, "
                         "expected (N, H, W, 3) uint8")
    msg = PredictedFuture()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = frame_id
    msg.frames = [numpy_to_image(f, "rgb8", stamp=to_time_msg(stamp + (i + 1) * frame_period),
                                 frame_id=frame_id) for i, f in enumerate(frames)]
    msg.frame_period = float(frame_period)
    msg.chunk_id = int(chunk_id)
    msg.mode = InferenceMode(mode=mode_id(mode))
    return msg
