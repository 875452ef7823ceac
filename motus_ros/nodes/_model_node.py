"""What the policy and world-model nodes share: their parameters, model loading, and a managed-node
base class that owns the model, the observation input and the inference worker.

Lifecycle (ManagedNode): configure loads the model and starts the worker thread, activate lets the
tick timer submit observations, deactivate stops submitting (and publishing: a result that lands
after deactivate is dropped), cleanup stops the worker and releases the model.
"""
from __future__ import annotations

from typing import Any, Callable

from std_msgs.msg import String

from motus_ros.layout import CAMERAS, IMAGE_TRANSPORTS, TOPICS
from motus_ros.motus.backends import BackendUnavailable
from motus_ros.ros.managed import AUTOSTART, ManagedNode
from motus_ros.nodes._observation import ObservationInput
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.policy.worker import InferenceWorker
from motus_ros.ros.qos import IMAGE_RELIABILITY

# Parameters shared by the nodes that run Motus: the model (read at configure, so read-only) ...
MODEL_PARAMS = [
    Param("preset", "tiny", "model preset name (motus_ros/motus/config.py)"),
    Param("checkpoint", "", "weights folder or file ('' = the preset's randomly initialised weights)"),
    Param("stats", "", "normalisation statistics file ('' = the robot's default in models/stats/)"),
    Param("robot", "sim", "robot profile (normalisation statistics, gripper units)"),
    Param("device", "cpu", "torch device (cpu, cuda, cuda:0, ...)"),
    Param("seed", 0, "random seed of the sampler", min=0, max=2**31 - 1),
]
# ... the observation it reads (the subscriptions are fixed, the limits live) ...
INPUT_PARAMS = [
    Param("instruction", "", "task instruction text (also settable on /motus/instruction)", live=True),
    Param("cameras", list(CAMERAS), "camera names, in the model's order (high, left, right wrist)"),
    Param("sync_tolerance_s", 0.05, "largest stamp spread between matched cameras and joint state (s)",
          min=0.0, max=10.0, live=True),
    Param("image_reliability", "reliable", "camera subscription QoS: reliable, or best_effort "
          "for a camera driver that publishes best effort (see motus_ros/ros/qos.py)",
          choices=IMAGE_RELIABILITY),
    Param("image_transport", "raw", "camera input: raw (sensor_msgs/Image on the image topics) or "
          "compressed (sensor_msgs/CompressedImage, JPEG, on <image topic>/compressed; decoded once "
          "per inference)", choices=IMAGE_TRANSPORTS),
]
# ... and how often it runs and reports.
RATE_PARAMS = [
    Param("tick_rate_hz", 10.0, "rate at which a new inference may start (Hz)", min=0.1, max=1000.0,
          live=True),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", min=0.05, max=60.0,
          live=True),
    AUTOSTART,
]


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


class ModelNode(ManagedNode):
    """Base of the policy and world-model nodes (see the module docstring).

    Subclasses set `what` and `worker_name`, implement make_runtime() (load and wrap the model),
    tick() (submit work while active), on_result/on_error and publish_diagnostics(), and apply
    their own live parameters in apply_params(); they call finish_init() at the end of __init__.
    """

    what = "model"
    worker_name = "inference"

    def __init__(self, name: str, specs: list[Param], policy_factory: Callable[..., Any] | None,
                 **kwargs):
        super().__init__(name, **kwargs)
        self.params = declare_parameters(self, specs, on_change=self._on_params)
        self._policy_factory = policy_factory
        self.instruction = self.params["instruction"]
        self.steps: int | None = self.params["steps"] or None
        self.worker: InferenceWorker | None = None
        self.active = False
        self.last_reason = "not configured"
        self.last_error = ""
        self.inputs = ObservationInput(self, self.params["cameras"], self.params["sync_tolerance_s"],
                                       self.params["max_observation_age_s"],
                                       image_reliability=self.params["image_reliability"],
                                       image_transport=self.params["image_transport"])
        self.create_subscription(String, TOPICS["instruction"], self._on_instruction, 10)

    def finish_init(self) -> None:
        """Start the timers and, with autostart, configure and activate (a load error is raised,
        so a node started with a bad checkpoint exits with the reason, as before lifecycles)."""
        self._tick_timer = self.create_timer(1.0 / self.params["tick_rate_hz"], self._tick)
        self._diag_timer = self.create_timer(self.params["diagnostics_period_s"],
                                             self.publish_diagnostics)
        self.start(self.params["autostart"])

    # -- lifecycle ------------------------------------------------------------------------------
    def make_runtime(self, policy_factory) -> Any:
        """The object the worker runs (infer/set_mode/reset); override."""
        raise NotImplementedError

    def configure(self) -> None:
        """Load the model (weights, statistics) and start the worker thread."""
        runtime = self.make_runtime(self._policy_factory)
        self.worker = InferenceWorker(runtime, self.on_result, self.on_error, self.worker_name)
        self.last_reason = "configured"

    def activate(self) -> None:
        self.active = True
        self.last_reason = "waiting for input"

    def deactivate(self) -> None:
        self.active = False
        self.last_reason = "inactive"

    def cleanup(self) -> None:
        self.active = False
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self.last_reason = "not configured"

    # -- inputs ---------------------------------------------------------------------------------
    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def no_instruction(self) -> str:
        return ("no instruction: set the 'instruction' parameter or publish std_msgs/String on "
                + TOPICS["instruction"])

    def _tick(self) -> None:
        if self.active and self.worker is not None and not self.worker.busy:
            self.tick()

    def tick(self) -> None:
        """Submit work to the idle worker (active only); override."""

    # -- live parameters ------------------------------------------------------------------------
    def _on_params(self, changed: dict[str, Any]) -> None:
        if "instruction" in changed:
            self.instruction = changed["instruction"]
        self.inputs.set_limits(changed.get("sync_tolerance_s"), changed.get("max_observation_age_s"))
        if "tick_rate_hz" in changed:
            self._tick_timer.timer_period_ns = int(1e9 / changed["tick_rate_hz"])
        if "diagnostics_period_s" in changed:
            self._diag_timer.timer_period_ns = int(changed["diagnostics_period_s"] * 1e9)
        if "steps" in changed:
            self.steps = changed["steps"] or self.default_steps()
            self.apply_steps()
        self.apply_params(changed)

    def default_steps(self) -> int | None:
        """The loaded model's default denoising steps (None: unknown, the runtime keeps its own)."""
        runtime = getattr(self.worker, "policy", None)
        model = getattr(runtime, "policy", runtime)           # a ChainedRollout wraps the policy
        return getattr(getattr(model, "config", None), "num_inference_steps", None)

    def apply_steps(self) -> None:
        """Hand self.steps to the runtime before its next inference; override."""

    def apply_params(self, changed: dict[str, Any]) -> None:
        """Apply the subclass's own live parameters; override."""
