"""Policy node: synchronised cameras + joint state -> Motus (VLA or Joint) -> ActionChunk.

A managed node (ModelNode, `ros2 lifecycle` drives it; with `autostart` it configures and activates
itself): configure loads the weights, activate starts acting, deactivate stops, cleanup releases
the model. A timer (`tick_rate_hz`) assembles an observation matched by stamp within
`sync_tolerance_s`, refuses it when older than `max_observation_age_s` (node clock, so use_sim_time
works) and hands it to a worker thread; the chunk is published from there on /motus/action_chunk,
stamped with the observation time. In JOINT mode the predicted frames go out as PredictedFuture on
/motus/predicted_future and the last predicted frame as a plain Image on
/motus/predicted_future/image (for RViz).

Mode: the service /motus/set_mode (SetMode) is the one way to change it at run time (the `mode`
parameter is the start value); the node reports the mode in force on /motus/mode (InferenceMode,
latched), so recorders and late subscribers see it. Only VLA and JOINT are accepted here.
Cameras are read raw (sensor_msgs/Image) or, with `image_transport: compressed`, as JPEG
sensor_msgs/CompressedImage on <image topic>/compressed (decoded once per inference; a frame that
does not decode skips that tick with a warning naming the camera).
Live parameters: instruction, steps, tick_rate_hz, sync_tolerance_s, max_observation_age_s,
control_rate_hz, video_rate_hz, diagnostics_period_s, inference_timeout_s; the rest are read-only.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from sensor_msgs.msg import Image

from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_msgs.srv import SetMode
from motus_ros.ros import diagnostics as diag
from motus_ros.ros.images import numpy_to_image
from motus_ros.layout import CONTROL_RATE_HZ, SERVICES, TOPICS, VIDEO_RATE_HZ
from motus_ros.motus.backends import BACKENDS
from motus_ros.motus.modes import CONTROL_MODES, check_mode, mode_id
from motus_ros.nodes._model_node import INPUT_PARAMS, MODEL_PARAMS, RATE_PARAMS, ModelNode, load_model
from motus_ros.ros.run import run_node
from motus_ros.nodes.messages import PREDICTION_QOS, action_chunk_msg, predicted_future_msg
from motus_ros.params import Param
from motus_ros.ros.qos import LATCHED
from motus_ros.stamps import to_time_msg

PREDICTED_IMAGE_TOPIC = TOPICS["predicted_future"] + "/image"
NODE = "policy node"
WHY = "WM, IDM and VGM never command the arm; run world_model_node for WM rollouts"

PARAMS = [
    *MODEL_PARAMS,
    *INPUT_PARAMS,
    *RATE_PARAMS,
    Param("backend", "torch", "inference backend of the denoising network: torch (eager), torch_compile, "
          "onnxruntime (runs onnx_path), tensorrt (engine built from onnx_path, needs a CUDA GPU)",
          choices=BACKENDS),
    Param("onnx_path", "", "step.onnx or its folder from `motus-ros export onnx` for onnxruntime/tensorrt "
          "('' = export once into the cache folder ~/.cache/motus_ros/onnx)"),
    Param("steps", 0, "Euler denoising steps per chunk (0 = the preset's default, 10 in the paper)",
          min=0, max=1000, live=True),
    Param("mode", "vla", "inference mode at start (change it at run time with /motus/set_mode)",
          choices=("vla", "joint", "VLA", "JOINT")),
    Param("max_observation_age_s", 0.5, "observations older than this are refused (s, node clock)",
          min=0.001, max=3600.0, live=True),
    Param("control_rate_hz", CONTROL_RATE_HZ, "rate of the action rows (Hz); sets control_period",
          min=1.0, max=1000.0, live=True),
    Param("video_rate_hz", VIDEO_RATE_HZ, "rate of the predicted frames (Hz)", min=0.1, max=1000.0,
          live=True),
    Param("inference_timeout_s", 10.0, "an inference running longer than this is reported as "
          "ERROR on /diagnostics (s, wall time)", min=0.1, max=3600.0, live=True),
]
STEPS_PARAM = next(p for p in PARAMS if p.name == "steps")


class PolicyNode(ModelNode):
    """Runs Motus as a policy; see the module docstring."""

    what = "policy"
    worker_name = "policy_inference"

    def __init__(self, policy_factory: Callable[..., object] | None = None, **kwargs):
        super().__init__("policy", PARAMS, policy_factory, **kwargs)
        self.mode = check_mode(self.params["mode"])
        self.chunk_id = 0
        self.last_latency: float | None = None
        self.refused = 0
        self._lock = threading.Lock()
        self.chunk_pub = self.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
        self.future_pub = self.create_publisher(PredictedFuture, TOPICS["predicted_future"],
                                                PREDICTION_QOS)
        self.image_pub = self.create_publisher(Image, PREDICTED_IMAGE_TOPIC, PREDICTION_QOS)
        self.mode_pub = self.create_publisher(InferenceMode, TOPICS["mode"], LATCHED)
        self.create_service(SetMode, SERVICES["set_mode"], self._on_set_mode)
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self._publish_mode()
        self.finish_init()

    # -- lifecycle ----------------------------------------------------------------------------
    def make_runtime(self, policy_factory):
        p = self.params
        policy = load_model(p, policy_factory, "policy", self.mode, self.steps,
                            backend=p["backend"], onnx_path=p["onnx_path"] or None)
        self.get_logger().info(f"policy loaded: preset {p['preset']}, mode {self.mode.upper()}, "
                               f"device {p['device']}, backend {p['backend']}")
        tokenizer_status = getattr(policy, "tokenizer_status", None)   # test doubles may lack it
        if callable(tokenizer_status):
            self.get_logger().info(f"tokenizers: {tokenizer_status()}")
        return policy

    def activate(self) -> None:
        super().activate()
        self.last_reason = "waiting for observations"

    # -- mode: SetMode changes it, /motus/mode reports it ------------------------------------
    def request_mode(self, mode: int | str, steps: int | None = None) -> str:
        """Switch mode (VLA/JOINT) from the next chunk; ValueError with the reason otherwise."""
        name = check_mode(mode, CONTROL_MODES, NODE, WHY)
        with self._lock:
            self.mode = name
            if steps:
                self.steps = int(steps)
            self.apply_steps()
        self._publish_mode()
        return name

    def apply_steps(self) -> None:
        if self.worker is not None:
            self.worker.set_mode(self.mode, self.steps)

    def _publish_mode(self) -> None:
        self.mode_pub.publish(InferenceMode(mode=mode_id(self.mode)))

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
            self.last_error = str(exc)
            response.success, response.message = False, str(exc)
            self.get_logger().warning(str(exc))
            return response
        response.success = True
        response.message = (f"mode {name.upper()} active from the next chunk"
                            + (f", {self.steps} denoising steps" if self.steps else ""))
        return response

    # -- inference ----------------------------------------------------------------------------
    def tick(self) -> None:
        if not self.instruction.strip():
            self.last_reason = self.no_instruction()
            return
        result, observation = self.inputs.assemble()
        if observation is None:
            self.last_reason = result.reason    # an undecodable frame is logged by self.inputs
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

    def on_result(self, meta: dict, result: dict, duration: float) -> None:
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
                np.ascontiguousarray(frames[-1]), "rgb8", stamp=to_time_msg(stamp),
                frame_id="motus_prediction"))

    def on_error(self, meta: dict, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"inference failed: {self.last_error}", throttle_duration_sec=5.0)

    # -- health -------------------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        now = self.inputs.now()
        values = {"mode": self.mode.upper(), "chunks": self.chunk_id, "refused_modes": self.refused,
                  "instruction": self.instruction, "lifecycle": self.lifecycle_state}
        for source, age in self.inputs.sync.ages(now).items():
            values[f"age_{source}_s"] = "never" if age is None else float(age)
        worker = self.worker
        if worker is not None:
            values.update(inferences=worker.completed, failures=worker.failed,
                          skipped_busy=worker.skipped)
            if worker.last_duration_s is not None:
                values["inference_s"] = float(worker.last_duration_s)
        if self.last_latency is not None:
            values["latency_s"] = float(self.last_latency)
        if self.last_error:
            values["last_error"] = self.last_error
        running_s = worker.busy_for() if worker is not None else 0.0
        if worker is None:
            level, message = diag.ERROR, "not configured (no model loaded)"
        elif running_s > self.params["inference_timeout_s"]:
            level, message = diag.ERROR, (
                f"inference running for {running_s:.1f} s (> inference_timeout_s "
                f"{self.params['inference_timeout_s']:g} s): no chunks")
        elif not self.active:
            level, message = diag.WARN, "inactive"
        elif self.last_reason:
            stale = any(k in self.last_reason
                        for k in ("stale", "no data", "out of sync", "no instruction",
                                  "undecodable"))
            level = diag.ERROR if stale else diag.OK
            message = f"not publishing: {self.last_reason}" if stale else self.last_reason
        else:
            level, message = diag.OK, f"publishing chunks ({self.mode.upper()})"
        self.diagnostics.publish(diag.status("policy_node", level, message, values))


def main(args=None):
    return run_node(lambda: PolicyNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
