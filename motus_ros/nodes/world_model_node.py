"""World-model node: Motus in WM mode imagines the frames an action chunk will produce.

For each ActionChunk on `action_topic` (default /motus/action_chunk: the policy's; point it at
another topic to try your own chunks) it takes the observation nearest the chunk's stamp (the
latest one when the stamp is zero), runs `chain` WM rollouts (chained: the last predicted frame and
last action seed the next one) in a worker thread and publishes PredictedFuture on
/motus/wm/predicted_future, the last predicted frame on /motus/wm/predicted_future/image and all
frames side by side on /motus/wm/predicted_future/strip. While a rollout runs only the newest
chunk waits; older ones are counted as skipped. It never publishes joint commands or chunks.

A managed node (ModelNode): configure loads the model, activate starts imagining, deactivate
stops, cleanup releases. Cameras are read raw or, with `image_transport: compressed`, as JPEG
CompressedImage on <image topic>/compressed (see _observation.py). Live parameters: instruction,
steps, chain, tick_rate_hz, sync_tolerance_s, max_observation_age_s, video_rate_hz,
diagnostics_period_s; the rest are read-only.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from sensor_msgs.msg import Image

from motus_msgs.msg import ActionChunk, PredictedFuture
from motus_ros.ros import diagnostics as diag
from motus_ros.ros.images import numpy_to_image
from motus_ros.layout import TOPICS, VIDEO_RATE_HZ
from motus_ros.nodes._model_node import INPUT_PARAMS, MODEL_PARAMS, RATE_PARAMS, ModelNode, load_model
from motus_ros.ros.run import run_node
from motus_ros.nodes.messages import PREDICTION_QOS, chunk_actions, predicted_future_msg
from motus_ros.params import Param
from motus_ros.policy.chain import ChainedRollout
from motus_ros.stamps import to_seconds, to_time_msg

WM_TOPIC = TOPICS["wm_future"]
WM_IMAGE_TOPIC = WM_TOPIC + "/image"
WM_STRIP_TOPIC = WM_TOPIC + "/strip"
STRIP_MAX_WIDTH = 1600   # pixels: the strip is downsampled by an integer factor to fit

PARAMS = [
    *MODEL_PARAMS,
    *INPUT_PARAMS,
    *RATE_PARAMS,
    Param("steps", 0, "Euler denoising steps per rollout (0 = preset default)", min=0, max=1000,
          live=True),
    Param("action_topic", TOPICS["action_chunk"], "ActionChunk topic to imagine (policy's or a user's)"),
    Param("chain", 1, "rollouts chained per chunk (each adds 8 frames = 1.6 s)", min=1, max=16,
          live=True),
    Param("max_observation_age_s", 5.0, "observations older than this are not imagined from (s)",
          min=0.001, max=3600.0, live=True),
    Param("video_rate_hz", VIDEO_RATE_HZ, "rate of the predicted frames (Hz)", min=0.1, max=1000.0,
          live=True),
]


def frame_strip(frames: np.ndarray, max_width: int = STRIP_MAX_WIDTH) -> np.ndarray:
    """(N, H, W, 3) frames side by side in one image, downsampled by an integer factor to fit
    max_width pixels."""
    n, h, w, _ = frames.shape
    step = max(1, int(np.ceil(n * w / max_width)))
    small = frames[:, ::step, ::step]
    return np.ascontiguousarray(np.concatenate(list(small), axis=1))


class WorldModelNode(ModelNode):
    """Imagines futures for action chunks; never commands the arm."""

    what = "world model"
    worker_name = "world_model_inference"

    def __init__(self, policy_factory: Callable[..., object] | None = None, **kwargs):
        super().__init__("world_model", PARAMS, policy_factory, **kwargs)
        self._pending: ActionChunk | None = None
        self._lock = threading.Lock()
        self.skipped_chunks = 0
        self.rollouts = 0
        self.future_pub = self.create_publisher(PredictedFuture, WM_TOPIC, PREDICTION_QOS)
        self.image_pub = self.create_publisher(Image, WM_IMAGE_TOPIC, PREDICTION_QOS)
        self.strip_pub = self.create_publisher(Image, WM_STRIP_TOPIC, PREDICTION_QOS)
        self.create_subscription(ActionChunk, self.params["action_topic"], self._on_chunk, 10)
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.finish_init()

    def make_runtime(self, policy_factory):
        policy = load_model(self.params, policy_factory, "world model", "wm", self.steps)
        return ChainedRollout(policy, self.params["chain"])

    def activate(self) -> None:
        super().activate()
        self.last_reason = "waiting for action chunks"

    def apply_steps(self) -> None:
        if self.worker is not None:
            self.worker.set_mode("wm", self.steps)

    def apply_params(self, changed: dict) -> None:
        if "chain" in changed and self.worker is not None:
            # Read by the worker at the start of each rollout: the next chunk uses the new length.
            self.worker.policy.chain = int(changed["chain"])

    def _on_chunk(self, msg: ActionChunk) -> None:
        with self._lock:
            if self._pending is not None:
                self.skipped_chunks += 1
            self._pending = msg

    def tick(self) -> None:
        with self._lock:
            chunk, self._pending = self._pending, None
        if chunk is None:
            return
        if not self.instruction.strip():
            self.last_reason = self.no_instruction()
            return
        try:
            actions = chunk_actions(chunk)
        except ValueError as exc:
            self.last_error = str(exc)
            self.get_logger().warning(f"chunk {chunk.chunk_id} ignored: {exc}")
            return
        stamp = to_seconds(chunk.header.stamp)
        result, observation = self.inputs.assemble(at=stamp if stamp > 0 else None,
                                                   require_new=False)
        if observation is None:
            self.last_reason = result.reason
            self.get_logger().warning(f"chunk {chunk.chunk_id} not imagined: {result.reason}",
                                      throttle_duration_sec=5.0)
            return
        observation.update(actions=actions, instruction=self.instruction, mode="wm")
        if self.worker.submit(observation, {"stamp": result.stamp, "chunk_id": chunk.chunk_id}):
            self.last_reason = ""

    def on_result(self, meta: dict, result: dict, duration: float) -> None:
        frames = np.asarray(result["frames"])
        stamp = meta["stamp"]
        if not self.active:
            return  # deactivated while imagining: never publish after deactivate()
        self.future_pub.publish(predicted_future_msg(frames, stamp, "wm", meta["chunk_id"],
                                                     1.0 / self.params["video_rate_hz"]))
        t = to_time_msg(stamp)
        self.image_pub.publish(numpy_to_image(np.ascontiguousarray(frames[-1]), stamp=t,
                                              frame_id="motus_prediction"))
        self.strip_pub.publish(numpy_to_image(frame_strip(frames), stamp=t,
                                              frame_id="motus_prediction"))
        self.rollouts += 1
        self.last_duration = duration

    def on_error(self, meta: dict, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"world-model rollout failed: {self.last_error}",
                                throttle_duration_sec=5.0)

    def publish_diagnostics(self) -> None:
        values = {"rollouts": self.rollouts, "skipped_chunks": self.skipped_chunks,
                  "chain": self.params["chain"], "lifecycle": self.lifecycle_state}
        worker = self.worker
        if worker is not None and worker.last_duration_s is not None:
            values["rollout_s"] = float(worker.last_duration_s)
        if self.last_error:
            values["last_error"] = self.last_error
        if worker is None:
            level, message = diag.ERROR, "not configured (no model loaded)"
        elif not self.active:
            level, message = diag.WARN, "inactive"
        elif self.last_reason and self.last_reason not in ("configured", "waiting for action chunks"):
            level, message = diag.WARN, f"not imagining: {self.last_reason}"
        else:
            level, message = diag.OK, self.last_reason or "imagining"
        self.diagnostics.publish(diag.status("world_model_node", level, message, values))


def main(args=None):
    return run_node(lambda: WorldModelNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
