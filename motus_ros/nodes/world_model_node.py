"""World-model node: Motus in WM mode imagines the frames an action chunk will produce.

For each ActionChunk on `action_topic` (default /motus/action_chunk: the policy's; point it at
another topic to try your own chunks) it takes the observation nearest the chunk's stamp (the
latest one when the stamp is zero), runs `chain` WM rollouts (chained: the last predicted frame and
last action seed the next one) in a worker thread and publishes PredictedFuture on
/motus/wm/predicted_future, the last predicted frame on /motus/wm/predicted_future/image and all
frames side by side on /motus/wm/predicted_future/strip. While a rollout runs only the newest
chunk waits; older ones are counted as skipped. It never publishes joint commands or chunks.

Predicted vs what happened (motus_ros/viz/prediction_check.py): each prediction is kept until the
camera frames for its times (stamp + k / video_rate_hz, k = 1..N; nearest frame per camera within
sync_tolerance_s, tiled like the model's input) have arrived, then the real frames in a row above
the predicted ones go out on /motus/wm/predicted_future/comparison (stamped with the prediction's
observation time), and /diagnostics gets the PSNR (dB): the last comparison, the running mean over
the last `comparison_window` and per horizon frame, each beside the copy baseline (the condition
frame repeated: "nothing moves"), with the counts of compared predictions and of those dropped
because their real frames had not all arrived `comparison_max_wait_s` after the last frame time.
At most `comparison_max_pending` predictions wait at once; newer ones go unchecked (counted).

A managed node (ModelNode): configure loads the model, activate starts imagining, deactivate
stops, cleanup releases. Cameras are read raw or, with `image_transport: compressed`, as JPEG
CompressedImage on <image topic>/compressed (see _observation.py). Live parameters: instruction,
steps, chain, tick_rate_hz, sync_tolerance_s, max_observation_age_s, video_rate_hz,
diagnostics_period_s, comparison_max_wait_s, comparison_window, comparison_max_pending; the rest
are read-only.
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
from motus_ros.viz.prediction_check import PredictionCheck, comparison_image, model_frame, psnr_summary

WM_TOPIC = TOPICS["wm_future"]
WM_IMAGE_TOPIC = WM_TOPIC + "/image"
WM_STRIP_TOPIC = WM_TOPIC + "/strip"
WM_COMPARISON_TOPIC = TOPICS["wm_comparison"]
STRIP_MAX_WIDTH = 1600   # pixels: the strip is downsampled by an integer factor to fit
# The camera buffers hold ~0.5 s (15 frames at 30 Hz): look for real frames well within that.
COMPARISON_PERIOD_S = 0.1

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
    Param("comparison_max_wait_s", 2.0, "a prediction whose real camera frames have not all arrived "
          "this long after its last frame time is dropped and counted (s)", min=0.0, max=600.0,
          live=True),
    Param("comparison_window", 20, "predicted-vs-real comparisons in the running PSNR means",
          min=1, max=10000, live=True),
    Param("comparison_max_pending", 8, "predictions waiting for their real frames at once; newer "
          "ones are not checked while full (bounds memory on long horizons)", min=1, max=256,
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
        self.comparison_pub = self.create_publisher(Image, WM_COMPARISON_TOPIC, PREDICTION_QOS)
        # Filled from the worker thread (on_result), matched and read on the executor: one lock.
        self._check_lock = threading.Lock()
        self.check = PredictionCheck(self.params["comparison_max_wait_s"],
                                     self.params["comparison_window"],
                                     self.params["comparison_max_pending"])
        self._check_timer = self.create_timer(COMPARISON_PERIOD_S, self._check_predictions)
        self.create_subscription(ActionChunk, self.params["action_topic"], self._on_chunk, 10)
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.finish_init()

    def make_runtime(self, policy_factory):
        policy = load_model(self.params, policy_factory, "world model", "wm", self.steps)
        return ChainedRollout(policy, self.params["chain"])

    def activate(self) -> None:
        super().activate()
        self.last_reason = "waiting for action chunks"

    def deactivate(self) -> None:
        super().deactivate()
        with self._check_lock:
            self.check.clear()   # nothing is published while inactive, so nothing to wait for

    def apply_steps(self) -> None:
        if self.worker is not None:
            self.worker.set_mode("wm", self.steps)

    def apply_params(self, changed: dict) -> None:
        if "chain" in changed and self.worker is not None:
            # Read by the worker at the start of each rollout: the next chunk uses the new length.
            self.worker.policy.chain = int(changed["chain"])
        limits = {"max_wait_s": changed.get("comparison_max_wait_s"),
                  "window": changed.get("comparison_window"),
                  "max_pending": changed.get("comparison_max_pending")}
        with self._check_lock:
            self.check.set_limits(**limits)

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
        meta = {"stamp": result.stamp, "chunk_id": chunk.chunk_id, "images": observation["images"]}
        if self.worker.submit(observation, meta):
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
        _, h, w, _ = frames.shape
        condition = model_frame(meta["images"], h, w)     # the copy baseline: nothing moves
        with self._check_lock:
            self.check.add(stamp, frames, 1.0 / self.params["video_rate_hz"], condition,
                           meta["chunk_id"])

    def _check_predictions(self) -> None:
        """Match waiting predictions with the camera frames at their times; publish the
        comparison image of each completed one."""
        if not self.active:
            return

        def real_frame(t: float, height: int, width: int):
            _, images = self.inputs.images_at(t)
            return None if images is None else model_frame(images, height, width)
        with self._check_lock:
            done = self.check.update(self.inputs.now(), real_frame)
        for comparison in done:
            image = comparison_image(comparison.real, comparison.predicted)
            self.comparison_pub.publish(numpy_to_image(image, stamp=to_time_msg(comparison.stamp),
                                                       frame_id="motus_prediction"))

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
        with self._check_lock:
            values.update(self.check.stats())
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
            if (summary := psnr_summary(values)):
                message += f"; {summary}"
        self.diagnostics.publish(diag.status("world_model_node", level, message, values))


def main(args=None):
    return run_node(lambda: WorldModelNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
