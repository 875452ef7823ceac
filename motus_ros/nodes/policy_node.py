"""Policy node: synchronised cameras + joint state -> Motus (VLA or Joint) -> ActionChunk.

Lifecycle-shaped: configure() loads the weights, activate() starts acting, deactivate() stops,
cleanup() releases the model; by default it configures and activates itself at start.
A timer (`tick_rate_hz`) assembles an observation matched by stamp within `sync_tolerance_s`,
refuses it when older than `max_observation_age_s` (node clock, so use_sim_time works) and hands
it to a worker thread; the chunk is published from there on /motus/action_chunk, stamped with the
observation time. In JOINT mode the predicted frames go out as PredictedFuture on
/motus/predicted_future and the last predicted frame as a plain Image on
/motus/predicted_future/image (for RViz). Mode: parameter `mode`, topic /motus/mode
(InferenceMode), service /motus/set_mode (SetMode); only VLA and JOINT are accepted here.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_msgs.srv import SetMode
from motus_ros import diagnostics as diag
from motus_ros.image_conversions import numpy_to_image
from motus_ros.motus.backends import BACKENDS
from motus_ros.layout import CONTROL_RATE_HZ, SERVICES, TOPICS, VIDEO_RATE_HZ
from motus_ros.nodes._observation import (INPUT_PARAMS, MODEL_PARAMS, PREDICTION_QOS,
                                          ObservationInput, action_chunk_msg, load_model,
                                          predicted_future_msg, seconds_to_stamp)
from motus_ros.nodes._run import run_node
from motus_ros.params import Param, declare_parameters
from motus_ros.policy.modes import CONTROL_MODES, check_mode, mode_name
from motus_ros.policy.worker import InferenceWorker

PREDICTED_IMAGE_TOPIC = TOPICS["predicted_future"] + "/image"
NODE = "policy node"
NO_INSTRUCTION = ("no instruction: set the 'instruction' parameter or publish std_msgs/String on "
                  + TOPICS["instruction"])
WHY = "WM, IDM and VGM never command the arm; run world_model_node for WM rollouts"

PARAMS = [
    *MODEL_PARAMS,
    *INPUT_PARAMS,
    Param("backend", "torch", "inference backend of the denoising network: torch (eager), torch_compile, "
          "onnxruntime (runs onnx_path), tensorrt (engine built from onnx_path, needs a CUDA GPU)",
          choices=BACKENDS),
    Param("onnx_path", "", "step.onnx or its folder from `motus-ros export onnx` for onnxruntime/tensorrt "
          "('' = export once into the cache folder ~/.cache/motus_ros/onnx)"),
    Param("steps", 0, "Euler denoising steps per chunk (0 = the preset's default, 10 in the paper)",
          min=0, max=1000),
    Param("mode", "vla", "inference mode at start", choices=("vla", "joint", "VLA", "JOINT")),
    Param("tick_rate_hz", 10.0, "rate at which a new inference may start (Hz)", min=0.1, max=1000.0),
    Param("max_observation_age_s", 0.5, "observations older than this are refused (s, node clock)",
          min=0.001, max=3600.0),
    Param("control_rate_hz", CONTROL_RATE_HZ, "rate of the action rows (Hz); sets control_period",
          min=1.0, max=1000.0),
    Param("video_rate_hz", VIDEO_RATE_HZ, "rate of the predicted frames (Hz)", min=0.1, max=1000.0),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", min=0.05, max=60.0),
    Param("inference_timeout_s", 10.0, "an inference running longer than this is reported as "
          "ERROR on /diagnostics (s, wall time)", min=0.1, max=3600.0),
    Param("autostart", True, "configure and activate at start"),
]
STEPS_PARAM = next(p for p in PARAMS if p.name == "steps")


class PolicyNode(Node):
    """Runs Motus as a policy; see the module docstring."""

    def __init__(self, policy_factory: Callable[..., object] | None = None, **kwargs):
        super().__init__("policy", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        self._policy_factory = policy_factory
        self.mode = mode_name(self.params["mode"])
        self.steps: int | None = self.params["steps"] or None
        self.instruction = self.params["instruction"]
        self.worker: InferenceWorker | None = None
        self.active = False
        self.chunk_id = 0
        self.last_latency: float | None = None
        self.last_reason = "not configured"
        self.last_error = ""
        self.refused = 0
        self._lock = threading.Lock()

        self.inputs = ObservationInput(self, self.params["cameras"],
                                       self.params["sync_tolerance_s"],
                                       self.params["max_observation_age_s"],
                                       image_reliability=self.params["image_reliability"])
        self.chunk_pub = self.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
        self.future_pub = self.create_publisher(PredictedFuture, TOPICS["predicted_future"],
                                                PREDICTION_QOS)
        self.image_pub = self.create_publisher(Image, PREDICTED_IMAGE_TOPIC, PREDICTION_QOS)
        self.create_subscription(InferenceMode, TOPICS["mode"], self._on_mode, 10)
        self.create_subscription(String, TOPICS["instruction"], self._on_instruction, 10)
        self.create_service(SetMode, SERVICES["set_mode"], self._on_set_mode)
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.create_timer(1.0 / self.params["tick_rate_hz"], self._tick)
        self.create_timer(self.params["diagnostics_period_s"], self.publish_diagnostics)
        if self.params["autostart"]:
            self.configure()
            self.activate()

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Load the model (weights, statistics) and start the worker thread."""
        if self.worker is not None:
            return
        p = self.params
        policy = load_model(p, self._policy_factory, "policy", self.mode, self.steps,
                            backend=p["backend"], onnx_path=p["onnx_path"] or None)
        self.worker = InferenceWorker(policy, self._on_result, self._on_error, "policy_inference")
        self.last_reason = "configured"
        self.get_logger().info(f"policy loaded: preset {p['preset']}, mode {self.mode.upper()}, "
                               f"device {p['device']}, backend {p['backend']}")
        tokenizer_status = getattr(policy, "tokenizer_status", None)   # test doubles may lack it
        if callable(tokenizer_status):
            self.get_logger().info(f"tokenizers: {tokenizer_status()}")

    def activate(self) -> None:
        if self.worker is None:
            raise RuntimeError("activate() before configure()")
        self.active = True
        self.last_reason = "waiting for observations"

    def deactivate(self) -> None:
        self.active = False
        self.last_reason = "inactive"

    def cleanup(self) -> None:
        self.deactivate()
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self.last_reason = "not configured"

    def close(self) -> None:
        self.cleanup()

    # -- inputs -------------------------------------------------------------------------------
    def request_mode(self, mode: int | str, steps: int | None = None) -> str:
        """Switch mode (VLA/JOINT) from the next chunk; ValueError with the reason otherwise."""
        name = check_mode(mode, CONTROL_MODES, NODE, WHY)
        with self._lock:
            self.mode = name
            if steps:
                self.steps = int(steps)
            if self.worker is not None:
                self.worker.set_mode(name, self.steps)
        return name

    def _on_set_mode(self, request, response):
        steps = int(request.denoising_steps) or None
        try:
            if steps is not None and steps > STEPS_PARAM.max:
                # The same bound as the 'steps' parameter: an unbounded request stalls the policy.
                raise ValueError(f"SetMode.denoising_steps: got {steps}, expected 0 (keep the current "
                                 f"value) or 1..{STEPS_PARAM.max:g}")
            name = self.request_mode(request.mode.mode, steps)
        except ValueError as exc:
            self.refused += 1
            response.success, response.message = False, str(exc)
            self.get_logger().warning(str(exc))
            return response
        response.success = True
        response.message = (f"mode {name.upper()} active from the next chunk"
                            + (f", {self.steps} denoising steps" if self.steps else ""))
        return response

    def _on_mode(self, msg: InferenceMode) -> None:
        try:
            self.request_mode(msg.mode)
        except ValueError as exc:
            self.refused += 1
            self.last_error = str(exc)
            self.get_logger().warning(str(exc))

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    # -- inference ----------------------------------------------------------------------------
    def _tick(self) -> None:
        if not self.active or self.worker is None or self.worker.busy:
            return
        if not self.instruction.strip():
            self.last_reason = NO_INSTRUCTION
            return
        result, observation = self.inputs.assemble()
        if observation is None:
            self.last_reason = result.reason
            if result.stale:
                self.get_logger().warning(result.reason, throttle_duration_sec=5.0)
            return
        with self._lock:
            mode = self.mode
        observation["instruction"] = self.instruction
        observation["mode"] = mode
        if self.worker.submit(observation, {"stamp": result.stamp, "mode": mode}):
            self.inputs.sync.mark_used(result.stamp)
            self.last_reason = ""

    def _on_result(self, meta: dict, result: dict, duration: float) -> None:
        stamp = meta["stamp"]
        mode = result.get("mode") or meta["mode"]
        latency = self.inputs.now() - stamp
        actions = result.get("actions")
        if actions is None:
            raise ValueError(f"policy returned no actions in mode {mode!r}")
        self.chunk_id += 1
        chunk = action_chunk_msg(actions, stamp, mode, self.chunk_id,
                                 1.0 / self.params["control_rate_hz"], latency)
        if not self.active:
            return  # deactivated while inferring: never publish after deactivate()
        self.chunk_pub.publish(chunk)
        self.last_latency = latency
        self.last_inference_s = duration
        frames = result.get("frames")
        if mode == "joint" and frames is not None:
            frames = np.asarray(frames)
            self.future_pub.publish(predicted_future_msg(
                frames, stamp, mode, self.chunk_id, 1.0 / self.params["video_rate_hz"]))
            self.image_pub.publish(numpy_to_image(
                np.ascontiguousarray(frames[-1]), "rgb8", stamp=seconds_to_stamp(stamp),
                frame_id="motus_prediction"))

    def _on_error(self, meta: dict, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"inference failed: {self.last_error}", throttle_duration_sec=5.0)

    # -- health -------------------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        now = self.inputs.now()
        values = {"mode": self.mode.upper(), "chunks": self.chunk_id, "refused_modes": self.refused,
                  "instruction": self.instruction}
        for source, age in self.inputs.sync.ages(now).items():
            values[f"age_{source}_s"] = "never" if age is None else float(age)
        if self.worker is not None:
            values.update(inferences=self.worker.completed, failures=self.worker.failed,
                          skipped_busy=self.worker.skipped)
            if self.worker.last_duration_s is not None:
                values["inference_s"] = float(self.worker.last_duration_s)
        if self.last_latency is not None:
            values["latency_s"] = float(self.last_latency)
        if self.last_error:
            values["last_error"] = self.last_error
        running_s = self.worker.busy_for() if self.worker is not None else 0.0
        if self.worker is None:
            level, message = diag.ERROR, "not configured (no model loaded)"
        elif running_s > self.params["inference_timeout_s"]:
            level, message = diag.ERROR, (
                f"inference running for {running_s:.1f} s (> inference_timeout_s "
                f"{self.params['inference_timeout_s']:g} s): no chunks")
        elif not self.active:
            level, message = diag.WARN, "inactive"
        elif self.last_reason:
            stale = any(k in self.last_reason
                        for k in ("stale", "no data", "out of sync", "no instruction"))
            level = diag.ERROR if stale else diag.OK
            message = f"not publishing: {self.last_reason}" if stale else self.last_reason
        else:
            level, message = diag.OK, f"publishing chunks ({self.mode.upper()})"
        self.diagnostics.publish(diag.status("policy_node", level, message, values))


def main(args=None):
    return run_node(lambda: PolicyNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
