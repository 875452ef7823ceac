"""`sim` arm backend: the MuJoCo ALOHA world (motus_ros.sim.world) behind the arm interface.

The simulation owns time. A physics thread advances the world one control step (0.02 s, gym-aloha's
50 Hz) at a time, paced against the wall clock so that simulated time runs at most
`real_time_factor` times as fast as real time, and publishes the simulated time on /clock; every
other node runs with use_sim_time. Cameras are rendered at `camera_rate_hz` of *simulated* time in
a second thread: the physics thread captures the scene at the frame's instant (cheap, under the
state lock) and the render thread rasterizes it (slow, no lock), so rendering never blocks a
read() or write() of the driver. If rendering cannot keep up, the physics thread waits for the
previous frame before capturing the next one: simulated time slows down, the camera rate in
simulated time holds.

Time stamps are the simulated time of the physics state they describe, kept in integer
nanoseconds (no drift, /clock and stamps compare exactly):
  - read() returns the state of the last control step with stamp = the simulated time of that
    state (the driver stamps /puppet/joint_states with it); /clock is published under the state
    lock, so a node never holds a state newer than the clock it has been sent;
  - camera images carry the simulated time of the state they show (the instant the scene was
    captured), not the later instant the rasterization finished;
  - a reset takes one control period of simulated time: the new episode's first state is stamped
    one step after the old episode's last one, so stamps never repeat or go back, and
    /sim/episode_start says exactly when the new episode began.

attach(node) adds to the driver node (all names absolute):
  /clock                                   rosgraph_msgs/Clock, every control step
  /camera_{high,left_wrist,right_wrist}/color/image_raw, .../camera_info
                                           sensor_msgs/Image rgb8 + CameraInfo (sensor-data QoS),
                                           stamped with simulated time; intrinsics from
                                           calibration/sim/<camera>.yaml, scaled to the image size
  /sim/task_success                        std_msgs/Bool: the episode reached the task's max reward
  /sim/reward                              std_msgs/Float64: current gym-aloha reward (0..4)
  /sim/object_poses                        geometry_msgs/PoseArray, frame "world", objects in the
                                           task's order (transfer_cube: [box]; insertion: [peg, socket])
  /sim/episode                             std_msgs/UInt32, transient local: episode number, sent at
                                           every reset (before that episode's first object poses)
  /sim/episode_start                       std_msgs/Header, transient local: stamp = simulated time
                                           of the episode's first state (sent with /sim/episode);
                                           recorded, it lets the converter drop what a bag holds
                                           from before the reset
  /sim/reset                               std_srvs/Trigger: new episode (next seed of the sequence)
Status topics go out at the camera rate (10 Hz of simulated time if cameras are off).

Constructor keyword arguments (driver parameters `sim_<name>`, see SIM_PARAMS):
  task              "transfer_cube" | "insertion"
  image_height      camera image height (pixels)
  image_width       camera image width (pixels)
  camera_rate_hz    camera frames per simulated second; 0 turns the cameras off
  real_time_factor  cap on simulated seconds per wall-clock second
  seed              seed of the sequence of episodes (object placements), reproducible
  render_quality    "fast" (no shadows, no multisampling) | "full" (the scene's own settings)
  calibration       optional JointCalibration (the driver's); its limits replace the defaults
"""
from __future__ import annotations

import threading
import time

import numpy as np

from motus_ros.hardware.interface import ArmBackend, ArmState, BackendDiagnostic, JointLimits
from motus_ros.layout import CAMERAS, DOF, TOPICS
from motus_ros.params import Param, declare_parameters
from motus_ros.sim import world as simworld

# Default speed limits: ViperX 300 s Dynamixel joints (XM540/XM430) run about 3-4 rad/s without
# load; the gripper moves its full normalized range in about 0.25 s.
DEFAULT_MAX_VELOCITY = np.concatenate([[3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]] * 2)

SIM_PARAMS = [
    Param("sim_task", "transfer_cube", "sim: gym-aloha task", choices=tuple(simworld.TASKS)),
    Param("sim_image_height", 240, "sim: camera image height (pixels)", min=16, max=2048),
    Param("sim_image_width", 320, "sim: camera image width (pixels)", min=16, max=2048),
    Param("sim_camera_rate_hz", 10.0, "sim: camera frames per simulated second (Hz); 0 = no cameras",
          min=0.0, max=50.0),
    Param("sim_real_time_factor", 1.0, "sim: cap on simulated seconds per wall-clock second",
          min=0.01, max=100.0),
    Param("sim_seed", 0, "sim: seed of the episode sequence (object placements)",
          min=0, max=2**31 - 1),
    Param("sim_render_quality", "fast", "sim: 'fast' (no shadows) or 'full' (gym-aloha's look)",
          choices=simworld.RENDER_QUALITIES),
]

SIM_TOPICS = {
    "clock": "/clock",
    "task_success": TOPICS.get("task_success", "/sim/task_success"),
    "reward": "/sim/reward",
    "object_poses": "/sim/object_poses",
    "episode": TOPICS["sim_episode"],
    "episode_start": TOPICS["episode_start"],
    "reset": "/sim/reset",
}


CONTROL_DT_NS = round(simworld.CONTROL_DT * 1e9)   # one control step of simulated time (ns)


def _stamp_seconds(ns: int) -> float:
    """ns -> float seconds that convert back to exactly ns whether the reader truncates
    (rclpy.time.Time(seconds=...)) or rounds: a quarter nanosecond in, so float error (under
    0.02 ns for the first 10^5 s) cannot fall below ns or reach ns + 0.5. Header stamps then
    equal the /clock values exactly."""
    return (ns + 0.25) * 1e-9


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


class SimArmBackend(ArmBackend):
    """Both ViperX arms of the gym-aloha scene; physics and rendering in their own threads."""

    def __init__(self, task: str = "transfer_cube", image_height: int = 240,
                 image_width: int = 320, camera_rate_hz: float = 10.0,
                 real_time_factor: float = 1.0, seed: int = 0, render_quality: str = "fast",
                 calibration=None, cameras=CAMERAS):
        simworld.task_spec(task)
        if render_quality not in simworld.RENDER_QUALITIES:
            raise ValueError(f"render_quality: got {render_quality!r}, expected one of "
                             f"{list(simworld.RENDER_QUALITIES)}")
        if image_height <= 0 or image_width <= 0:
            raise ValueError(f"image size: got {image_height}x{image_width}, expected > 0")
        if not 0 <= camera_rate_hz <= 1.0 / simworld.CONTROL_DT:
            raise ValueError(f"camera_rate_hz: got {camera_rate_hz}, expected 0..{1 / simworld.CONTROL_DT:g}"
                             " (at most one frame per control step)")
        if real_time_factor <= 0:
            raise ValueError(f"real_time_factor: got {real_time_factor}, expected > 0")
        self.task = task
        self.image_size = (int(image_height), int(image_width))
        self.camera_rate_hz = float(camera_rate_hz)
        self.real_time_factor = float(real_time_factor)
        self.seed = int(seed)
        self.render_quality = render_quality
        self.cameras = tuple(cameras)
        for camera in self.cameras:
            simworld.SimWorld.mjcf_camera(camera)
        if calibration is not None:
            self._limits = calibration.limits
        else:
            self._limits = JointLimits(simworld.LOWER, simworld.UPPER, DEFAULT_MAX_VELOCITY)

        self.world: simworld.SimWorld | None = None
        self._lock = threading.Lock()          # world state, target, flags
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._target = np.zeros(DOF)
        self._state: ArmState | None = None
        self._enabled = True
        self._estopped = False
        self.ignored_writes = 0
        self.episode = 0
        self._clock_offset_ns = 0              # simulated time at the current episode's start (ns)
        self._sim_time_ns = 0                  # simulated time of self._state (ns), on /clock
        self._clock_published_ns = -1          # last time sent on /clock (ns)
        # camera pipeline
        self._frame_period_steps = (int(round(1.0 / (self.camera_rate_hz * simworld.CONTROL_DT)))
                                    if self.camera_rate_hz > 0 else 0)
        self._render_idle = threading.Event()
        self._render_request = threading.Event()
        self._render_stamp_ns = 0              # simulated time of the captured scene (ns)
        self.frames = 0
        self.render_ms = 0.0
        self.achieved_rtf = 0.0
        self._status_period_steps = self._frame_period_steps or int(round(0.1 / simworld.CONTROL_DT))
        self._step_count = 0
        self._node = None
        self._pubs: dict = {}
        self._camera_pubs: dict = {}
        self.errors: list[str] = []

    # ---- construction from the driver's parameters --------------------------------------------
    @classmethod
    def from_node(cls, node, calibration=None) -> "SimArmBackend":
        """Declare the sim_* parameters on the driver node and build the backend from them."""
        p = declare_parameters(node, SIM_PARAMS)
        return cls(task=p["sim_task"], image_height=p["sim_image_height"],
                   image_width=p["sim_image_width"], camera_rate_hz=p["sim_camera_rate_hz"],
                   real_time_factor=p["sim_real_time_factor"], seed=p["sim_seed"],
                   render_quality=p["sim_render_quality"], calibration=calibration)

    # ---- ArmBackend -------------------------------------------------------------------------
    @property
    def limits(self) -> JointLimits:
        return self._limits

    def connect(self) -> None:
        if self.world is not None:
            return
        try:
            self.world = simworld.SimWorld(self.task, self.image_size, seed=self.seed,
                                           render_quality=self.render_quality)
        except Exception as exc:  # noqa: BLE001 - report any load failure the same way
            raise RuntimeError(f"sim backend: cannot load the gym-aloha '{self.task}' scene: {exc}") from exc
        with self._lock:
            self.world.reset()
            self._target = self.world.ctrl_targets()
            self._snapshot_state()
        self._stop.clear()
        if self._frame_period_steps:
            self._start_thread(self._render_loop, "sim_render")
        else:
            self._render_idle.set()
        self._start_thread(self._physics_loop, "sim_physics")

    def read(self) -> ArmState:
        """The state of the last control step, stamped with its simulated time (s)."""
        if self.world is None:
            raise RuntimeError("sim backend: read() before connect()")
        with self._lock:
            s = self._state
            return ArmState(positions=s.positions.copy(), velocities=s.velocities.copy(),
                            enabled=self._enabled and not self._estopped, faults=list(s.faults),
                            stamp=s.stamp)

    def write(self, positions: np.ndarray) -> None:
        targets = simworld.validate_targets(positions, "positions")
        with self._lock:
            if self._estopped or not self._enabled:
                self.ignored_writes += 1
                return
            # The driver filtered already; clipping again keeps the sim inside its limits even
            # when used without the driver.
            self._target = self._limits.clip(targets)

    def enable(self) -> None:
        with self._lock:
            self._enabled = True
            self._estopped = False

    def disable(self) -> None:
        with self._lock:
            self._enabled = False
            if self.world is not None:
                self._target = self.world.qpos()  # simulated motors hold where they are

    def emergency_stop(self) -> None:
        with self._lock:
            self._estopped = True
            if self.world is not None:
                self._target = self.world.qpos()

    def close(self) -> None:
        self._stop.set()
        self._render_request.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads.clear()
        if self.world is not None:
            self.world.close()
            self.world = None

    def diagnostics(self) -> list[BackendDiagnostic]:
        if self.world is None:
            return [BackendDiagnostic(2, "sim", "not connected")]
        with self._lock:
            values = {"task": self.task, "episode": self.episode, "seed": self.world.seed,
                      "sim_time_s": round(self.sim_time, 3),
                      "episode_time_s": round(self.world.time, 3),
                      "reward": self.world.reward, "max_reward": self.world.max_reward,
                      "success": self.world.success, "frames": self.frames,
                      "render_ms": round(self.render_ms, 1),
                      "real_time_factor": round(self.achieved_rtf, 3),
                      "real_time_factor_cap": self.real_time_factor,
                      "ignored_writes": self.ignored_writes}
        level, message = 0, f"{self.task} episode {self.episode}"
        if self.errors:
            level, message = 2, self.errors[-1]
        return [BackendDiagnostic(level, "sim", message, values)]

    # ---- simulation control -------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        """Monotonic simulated time (s) since connect(), across episodes."""
        return self._sim_time_ns * 1e-9

    @property
    def sim_time_ns(self) -> int:
        """Monotonic simulated time (ns) since connect(): the stamp of the current state."""
        return self._sim_time_ns

    @property
    def episode_start_ns(self) -> int:
        """Simulated time (ns) of the current episode's first state (sent on /sim/episode_start)."""
        return self._clock_offset_ns

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start a new episode (objects placed from `seed`, else the sequence's next seed)."""
        if self.world is None:
            raise RuntimeError("sim backend: reset() before connect()")
        with self._lock:
            # The reset takes one control period: the new episode's first state gets a stamp of
            # its own, after every state (and camera frame) of the old episode.
            self._clock_offset_ns = self._sim_time_ns + CONTROL_DT_NS
            poses = self.world.reset(seed)
            self._target = self.world.ctrl_targets()
            self.episode += 1
            self._snapshot_state()
            self._publish_clock(self._sim_time_ns)
            stamp_ns = self._sim_time_ns
        self._publish_episode(stamp_ns)
        return poses

    # ---- threads ----------------------------------------------------------------------------
    def _start_thread(self, target, name: str) -> None:
        thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, loop):
        def run():
            try:
                loop()
            except Exception as exc:  # noqa: BLE001 - surface in diagnostics, never die silently
                self.errors.append(f"{loop.__name__}: {type(exc).__name__}: {exc}")
                if self._node is not None:
                    try:
                        self._node.get_logger().error(f"sim backend {loop.__name__} stopped: {exc}")
                    except Exception:  # noqa: BLE001 - node already gone
                        pass
        return run

    def _snapshot_state(self) -> None:
        """Cache the world's joint state for read(), stamped with its simulated time (caller
        holds the lock)."""
        self._sim_time_ns = self._clock_offset_ns + round(self.world.time * 1e9)
        self._state = ArmState(positions=self.world.qpos(), velocities=self.world.qvel(),
                               stamp=_stamp_seconds(self._sim_time_ns))

    def _physics_loop(self) -> None:
        dt = simworld.CONTROL_DT
        wall0, sim0 = time.monotonic(), self.sim_time
        rtf_wall, rtf_sim = wall0, sim0
        while not self._stop.is_set():
            with self._lock:
                self.world.step(self._target)
                self._snapshot_state()
                # Under the lock: /clock reaches T before any reader can hold the state of T,
                # and a concurrent reset cannot publish its later time first.
                self._publish_clock(self._sim_time_ns)
                now_sim = self.sim_time
                self._step_count += 1
                step = self._step_count
            if self._frame_period_steps and step % self._frame_period_steps == 0 and self._camera_pubs:
                self._capture_frame()
            if step % self._status_period_steps == 0:
                self._publish_status()
            # Pace: simulated time may run at most real_time_factor x wall time.
            wall = time.monotonic()
            if step % 50 == 0:
                self.achieved_rtf = (now_sim - rtf_sim) / max(wall - rtf_wall, 1e-9)
                rtf_wall, rtf_sim = wall, now_sim
            if now_sim < sim0:  # clock moved by a reset while we slept: re-anchor
                wall0, sim0 = wall, now_sim
            delay = wall0 + (now_sim - sim0) / self.real_time_factor - wall
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -10 * dt:
                wall0, sim0 = wall, now_sim  # fell behind (slow CPU): do not sprint to catch up

    def _capture_frame(self) -> None:
        """Capture the scene for the next frame once the previous one is rendered."""
        while not self._render_idle.wait(0.1):
            if self._stop.is_set():
                return
        with self._lock:
            self.world.update_scenes(self.cameras)
            stamp_ns = self._sim_time_ns  # the instant the images show
        self._render_idle.clear()
        self._render_stamp_ns = stamp_ns
        self._render_request.set()

    def _render_loop(self) -> None:
        self.world.prepare_renderers(self.cameras)  # GL contexts belong to this thread
        self._render_idle.set()
        while not self._stop.is_set():
            if not self._render_request.wait(0.1):
                continue
            self._render_request.clear()
            if self._stop.is_set():
                return
            start = time.perf_counter()
            images = self.world.render_scenes(self.cameras)
            self.render_ms = (time.perf_counter() - start) * 1e3
            self._publish_images(self._render_stamp_ns, images)
            self.frames += 1
            self._render_idle.set()

    # ---- ROS side ---------------------------------------------------------------------------
    def attach(self, node) -> None:
        """Add /clock, cameras, task status topics and the /sim/reset service to `node`."""
        from geometry_msgs.msg import PoseArray
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import Bool, Float64, Header, UInt32
        from std_srvs.srv import Trigger

        from motus_ros.cameras.calibration import resolve_intrinsics
        from motus_ros.cameras.publisher import CameraPublisher
        from motus_ros.qos import LATCHED

        self._node = node
        pubs = {
            "clock": node.create_publisher(Clock, SIM_TOPICS["clock"], 10),
            "task_success": node.create_publisher(Bool, SIM_TOPICS["task_success"], 10),
            "reward": node.create_publisher(Float64, SIM_TOPICS["reward"], 10),
            "object_poses": node.create_publisher(PoseArray, SIM_TOPICS["object_poses"], 10),
            "episode": node.create_publisher(UInt32, SIM_TOPICS["episode"], LATCHED),
            "episode_start": node.create_publisher(Header, SIM_TOPICS["episode_start"], LATCHED),
        }
        self._msg_types = {"clock": Clock, "bool": Bool, "float": Float64, "poses": PoseArray,
                           "uint": UInt32, "header": Header}
        camera_pubs = {}
        if self._frame_period_steps:
            height, width = self.image_size
            for camera in self.cameras:
                intrinsics, _source = resolve_intrinsics("sim", camera, width, height)
                camera_pubs[camera] = CameraPublisher(node, camera, intrinsics)
        node.create_service(Trigger, SIM_TOPICS["reset"], self._srv_reset)
        self._pubs = pubs
        self._camera_pubs = camera_pubs
        with self._lock:
            self._publish_clock(self._sim_time_ns)
            start_ns = self._clock_offset_ns
        self._publish_episode(start_ns)

    def _srv_reset(self, request, response):
        try:
            poses = self.reset()
        except Exception as exc:  # noqa: BLE001 - answer the caller, do not kill the executor
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        where = ", ".join(f"{k} at ({v[0]:.3f}, {v[1]:.3f}) m" for k, v in poses.items())
        response.success = True
        response.message = f"episode {self.episode} (seed {self.world.seed}): {where}"
        return response

    def _publish(self, key: str, msg) -> None:
        pub = self._pubs.get(key)
        if pub is None:
            return
        try:
            pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - node shutting down under us
            if not self._stop.is_set():
                self.errors.append(f"publish {key}: {exc}")

    def _publish_clock(self, sim_time_ns: int) -> None:
        """/clock, each time once and increasing (caller holds the state lock)."""
        if self._pubs and sim_time_ns > self._clock_published_ns:
            self._clock_published_ns = sim_time_ns
            self._publish("clock", self._msg_types["clock"](clock=_time_msg(sim_time_ns)))

    def _publish_episode(self, start_ns: int) -> None:
        """/sim/episode_start (stamp: the episode's first state), /sim/episode, then status."""
        if not self._pubs:
            return
        self._publish("episode_start", self._msg_types["header"](stamp=_time_msg(start_ns)))
        self._publish("episode", self._msg_types["uint"](data=self.episode))
        self._publish_status()

    def _publish_status(self) -> None:
        if not self._pubs or self.world is None:
            return
        from geometry_msgs.msg import Pose
        with self._lock:
            reward, success = self.world.reward, self.world.success
            poses = self.world.object_poses()
            stamp = _time_msg(self._sim_time_ns)
        self._publish("reward", self._msg_types["float"](data=float(reward)))
        self._publish("task_success", self._msg_types["bool"](data=bool(success)))
        msg = self._msg_types["poses"]()
        msg.header.stamp = stamp
        msg.header.frame_id = "world"
        for pose in poses.values():
            p = Pose()
            p.position.x, p.position.y, p.position.z = (float(v) for v in pose[:3])
            p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (
                float(v) for v in pose[3:7])
            msg.poses.append(p)
        self._publish("object_poses", msg)

    def _publish_images(self, stamp_ns: int, images: dict) -> None:
        stamp = _time_msg(stamp_ns)
        for camera, image in images.items():
            pub = self._camera_pubs.get(camera)
            if pub is None:
                continue
            try:
                pub.publish(image, stamp)
            except Exception as exc:  # noqa: BLE001 - node shutting down under us
                if not self._stop.is_set():
                    self.errors.append(f"publish {camera}: {exc}")
