"""World-model node: Motus in WM mode imagines the frames an action chunk will produce.

For each ActionChunk on `action_topic` (default /motus/action_chunk: the policy's; point it at
another topic to try your own chunks) it takes the observation nearest the chunk's stamp (the
latest one when the stamp is zero), runs `chain` WM rollouts (chained: the last predicted frame and
last action seed the next one) in a worker thread and publishes PredictedFuture on
/motus/wm/predicted_future, the last predicted frame on /motus/wm/predicted_future/image and all
frames side by side on /motus/wm/predicted_future/strip. While a rollout runs only the newest
chunk waits; older ones are counted as skipped. It never publishes joint commands or chunks.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from motus_msgs.msg import ActionChunk, PredictedFuture
from motus_ros import diagnostics as diag
from motus_ros.image_conversions import numpy_to_image
from motus_ros.layout import TOPICS, VIDEO_RATE_HZ
from motus_ros.nodes._observation import (INPUT_PARAMS, MODEL_PARAMS, PREDICTION_QOS,
                                          ObservationInput, chunk_actions, frame_strip, load_model,
                                          predicted_future_msg, seconds_to_stamp, stamp_seconds)
from motus_ros.nodes._run import run_node
from motus_ros.params import Param, declare_parameters
from motus_ros.policy.chain import ChainedRollout
from motus_ros.policy.worker import InferenceWorker

WM_TOPIC = TOPICS["wm_future"]
WM_IMAGE_TOPIC = WM_TOPIC + "/image"
WM_STRIP_TOPIC = WM_TOPIC + "/strip"

PARAMS = [
    *MODEL_PARAMS,
    *INPUT_PARAMS,
    Param("steps", 0, "Euler denoising steps per rollout (0 = preset default)", min=0, max=1000),
    Param("action_topic", TOPICS["action_chunk"], "ActionChunk topic to imagine (policy's or a user's)"),
    Param("chain", 1, "rollouts chained per chunk (each adds 8 frames = 1.6 s)", min=1, max=16),
    Param("tick_rate_hz", 10.0, "rate at which a waiting chunk may start a rollout (Hz)",
          min=0.1, max=1000.0),
    Param("max_observation_age_s", 5.0, "observations older than this are not imagined from (s)",
          min=0.001, max=3600.0),
    Param("video_rate_hz", VIDEO_RATE_HZ, "rate of the predicted frames (Hz)", min=0.1, max=1000.0),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", min=0.05, max=60.0),
    Param("autostart", True, "configure and activate at start"),
]


class WorldModelNode(Node):
    """Imagines futures for action chunks; never commands the arm."""

    def __init__(self, policy_factory: Callable[..., object] | None = None, **kwargs):
        super().__init__("world_model", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        self._policy_factory = policy_factory
        self.instruction = self.params["instruction"]
        self.worker: InferenceWorker | None = None
        self.active = False
        self._pending: ActionChunk | None = None
        self._lock = threading.Lock()
        self.skipped_chunks = 0
        self.rollouts = 0
        self.last_reason = "not configured"
        self.last_error = ""
        self.inputs = ObservationInput(self, self.params["cameras"], self.params["sync_tolerance_s"],
                                       self.params["max_observation_age_s"],
                                       image_reliability=self.params["image_reliability"])
        self.future_pub = self.create_publisher(PredictedFuture, WM_TOPIC, PREDICTION_QOS)
        self.image_pub = self.create_publisher(Image, WM_IMAGE_TOPIC, PREDICTION_QOS)
        self.strip_pub = self.create_publisher(Image, WM_STRIP_TOPIC, PREDICTION_QOS)
        self.create_subscription(ActionChunk, self.params["action_topic"], self._on_chunk, 10)
        self.create_subscription(String, TOPICS["instruction"], self._on_instruction, 10)
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.create_timer(1.0 / self.params["tick_rate_hz"], self._tick)
        self.create_timer(self.params["diagnostics_period_s"], self.publish_diagnostics)
        if self.params["autostart"]:
            self.configure()
            self.activate()

    def configure(self) -> None:
        if self.worker is not None:
            return
        p = self.params
        policy = load_model(p, self._policy_factory, "world model", "wm", p["steps"] or None)
        self.worker = InferenceWorker(ChainedRollout(policy, p["chain"]), self._on_result,
                                      self._on_error, "world_model_inference")
        self.last_reason = "configured"

    def activate(self) -> None:
        if self.worker is None:
            raise RuntimeError("activate() before configure()")
        self.active = True
        self.last_reason = "waiting for action chunks"

    def deactivate(self) -> None:
        self.active = False

    def cleanup(self) -> None:
        self.deactivate()
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        self.cleanup()

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_chunk(self, msg: ActionChunk) -> None:
        with self._lock:
            if self._pending is not None:
                self.skipped_chunks += 1
            self._pending = msg

    def _tick(self) -> None:
        if not self.active or self.worker is None or self.worker.busy:
            return
        with self._lock:
            chunk, self._pending = self._pending, None
        if chunk is None:
            return
        if not self.instruction.strip():
            self.last_reason = ("no instruction: set the 'instruction' parameter or publish "
                                f"std_msgs/String on {TOPICS['instruction']}")
            return
        try:
            actions = chunk_actions(chunk)
        except ValueError as exc:
            self.last_error = str(exc)
            self.get_logger().warning(f"chunk {chunk.chunk_id} ignored: {exc}")
            return
        stamp = stamp_seconds(chunk.header.stamp)
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

    def _on_result(self, meta: dict, result: dict, duration: float) -> None:
        frames = np.asarray(result["frames"])
        stamp = meta["stamp"]
        if not self.active:
            return
        self.future_pub.publish(predicted_future_msg(frames, stamp, "wm", meta["chunk_id"],
                                                     1.0 / self.params["video_rate_hz"]))
        t = seconds_to_stamp(stamp)
        self.image_pub.publish(numpy_to_image(np.ascontiguousarray(frames[-1]), stamp=t,
                                              frame_id="motus_prediction"))
        self.strip_pub.publish(numpy_to_image(frame_strip(frames), stamp=t,
                                              frame_id="motus_prediction"))
        self.rollouts += 1
        self.last_duration = duration

    def _on_error(self, meta: dict, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"world-model rollout failed: {self.last_error}",
                                throttle_duration_sec=5.0)

    def publish_diagnostics(self) -> None:
        values = {"rollouts": self.rollouts, "skipped_chunks": self.skipped_chunks,
                  "chain": self.params["chain"]}
        if self.worker is not None and self.worker.last_duration_s is not None:
            values["rollout_s"] = float(self.worker.last_duration_s)
        if self.last_error:
            values["last_error"] = self.last_error
        if self.worker is None:
            level, message = diag.ERROR, "not configured (no model loaded)"
        elif self.last_reason and self.last_reason not in ("configured", "waiting for action chunks"):
            level, message = diag.WARN, f"not imagining: {self.last_reason}"
        else:
            level, message = diag.OK, self.last_reason or "imagining"
        self.diagnostics.publish(diag.status("world_model_node", level, message, values))


def main(args=None):
    return run_node(lambda: WorldModelNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
