"""`sim` arm backend: the MuJoCo ALOHA world (motus_ros.sim.world) behind the arm interface.

The simulation owns time. A physics thread advances the world one control step (0.02 s, gym-aloha's
50 Hz) at a time, paced against the wall clock so that simulated time runs at most
`real_time_factor` times as fast as real time. Cameras are rendered at `camera_rate_hz` of
*simulated* time in a second thread: the physics thread captures the scene at the frame's instant
(cheap, under the state lock) and the render thread rasterizes it (slow, no lock), so rendering
never blocks a read() or write() of the driver. If rendering cannot keep up, the physics thread
waits for the previous frame before capturing the next one: simulated time slows down, the camera
rate in simulated time holds.

This module is plain Python. What the rest of the world sees of the simulation (simulated time,
camera frames, task status, episode starts) goes to SimListener objects registered with
add_listener(); motus_ros.nodes.sim_node turns them into /clock, the camera topics and /sim/*.

Time stamps are the simulated time of the physics state they describe, kept in integer
nanoseconds (no drift, clock ticks and stamps compare exactly):
  - read() returns the state of the last control step with stamp = the simulated time of that
    state; on_clock is called under the state lock, so a listener is told time T before anyone
    can read the state of T;
  - camera frames carry the simulated time of the state they show (the instant the scene was
    captured), not the later instant the rasterization finished;
  - a reset takes one control period of simulated time: the new episode's first state is stamped
    one step after the old episode's last one, so stamps never repeat or go back, and
    SimEpisode.start_ns says exactly when the new episode began.
Status goes out at the camera rate (10 Hz of simulated time if cameras are off).

Constructor keyword arguments (the sim node's parameters, see motus_ros.nodes.sim_node):
  task              "transfer_cube" | "insertion"
  image_height      camera image height (pixels)
  image_width       camera image width (pixels)
  camera_rate_hz    camera frames per simulated second; 0 turns the cameras off
  real_time_factor  cap on simulated seconds per wall-clock second (set_real_time_factor: live)
  seed              seed of the sequence of episodes (object placements), reproducible
  render_quality    "fast" (no shadows, no multisampling) | "full" (the scene's own settings)
  calibration       optional JointCalibration (the driver's); its limits replace the defaults
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from motus_ros.hardware.interface import ArmBackend, ArmState, BackendDiagnostic, JointLimits
from motus_ros.layout import CAMERAS, DOF
from motus_ros.sim import world as simworld

# Default speed limits: ViperX 300 s Dynamixel joints (XM540/XM430) run about 3-4 rad/s without
# load; the gripper moves its full normalized range in about 0.25 s.
DEFAULT_MAX_VELOCITY = np.concatenate([[3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]] * 2)

CONTROL_DT_NS = round(simworld.CONTROL_DT * 1e9)   # one control step of simulated time (ns)
MAX_SEED = 2**31 - 2                                # gym-aloha's samplers draw seeds below 2^31 - 1


def _stamp_seconds(ns: int) -> float:
    """ns -> float seconds that convert back to exactly ns whether the reader truncates
    (rclpy.time.Time(seconds=...)) or rounds: a quarter nanosecond in, so float error (under
    0.02 ns for the first 10^5 s) cannot fall below ns or reach ns + 0.5. Header stamps then
    equal the clock values exactly."""
    return (ns + 0.25) * 1e-9


@dataclass(frozen=True)
class SimEpisode:
    """An episode that just started: its number (0 at connect, +1 per reset), the seed its objects
    were placed from, the simulated time of its first state (ns) and the objects' poses."""

    number: int
    seed: int
    start_ns: int
    object_poses: dict[str, np.ndarray]   # name -> (7,) x, y, z (m), qw, qx, qy, qz


@dataclass(frozen=True)
class SimStatus:
    """Task status at simulated time stamp_ns: gym-aloha reward, success, object poses (task order)."""

    stamp_ns: int
    reward: float
    success: bool
    object_poses: dict[str, np.ndarray]


class SimListener:
    """What the simulation tells the outside world; override what you need. Called from the
    simulation's threads: keep it short, never call back into the backend's state lock."""

    def on_clock(self, sim_time_ns: int) -> None:
        """Simulated time advanced to sim_time_ns (each value once, increasing; under the state lock)."""

    def on_frame(self, stamp_ns: int, images: dict[str, np.ndarray]) -> None:
        """Camera images (camera -> HxWx3 uint8 RGB) of the scene at simulated time stamp_ns."""

    def on_status(self, status: SimStatus) -> None:
        """Task status, at the camera rate of simulated time."""

    def on_episode(self, episode: SimEpisode) -> None:
        """An episode started (at connect and at every reset), before its first status."""


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
        self._clock_published_ns = -1          # last time given to on_clock (ns)
        self._reanchor = False                 # pacing restarts from now (real_time_factor changed)
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
        # Replaced, never mutated: the threads iterate over a snapshot without the lock.
        self._listeners: tuple[SimListener, ...] = ()
        self.errors: list[str] = []

    @classmethod
    def from_params(cls, values, calibration) -> "SimArmBackend":
        # The world's options belong to the sim node, which also publishes its clock and cameras;
        # a driver building the world on its own would run a simulation nobody can see.
        raise RuntimeError("backend 'sim': start the sim_node executable (the simulation with its "
                           "arm driver), not arm_driver_node alone")

    # ---- listeners ----------------------------------------------------------------------------
    def add_listener(self, listener: SimListener) -> None:
        """Send the simulation's clock, frames, status and episodes to `listener` from now on; a
        listener added after connect() is told the current time and episode at once."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
            if self.world is None:
                return
            self._call(listener.on_clock, self._sim_time_ns)
            episode = self._episode_locked()
        self._call(listener.on_episode, episode)
        self._emit_status()

    def remove_listener(self, listener: SimListener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def _call(self, method, *args) -> None:
        """One listener call; its failure is recorded, never stops the simulation."""
        try:
            method(*args)
        except Exception as exc:  # noqa: BLE001 - a listener (the ROS side shutting down) must not kill physics
            if not self._stop.is_set():
                self.errors.append(f"{method.__qualname__}: {type(exc).__name__}: {exc}")

    def _emit(self, name: str, *args) -> None:
        for listener in self._listeners:
            self._call(getattr(listener, name), *args)

    def set_real_time_factor(self, value: float) -> None:
        """Change the cap on simulated seconds per wall-clock second while running."""
        if not value > 0:
            raise ValueError(f"real_time_factor: got {value}, expected > 0")
        self.real_time_factor = float(value)
        self._reanchor = True

    # ---- ArmBackend -------------------------------------------------------------------------
    @property
    def limits(self) -> JointLimits:
        return self._limits

    def connect(self) -> None:
        if self.world is not None:
            return
        if self._step_count:
            # Connected before (driver cleanup, then configure): the clock goes on from where it
            # stopped, one control period later, as at a reset.
            self._clock_offset_ns = self._sim_time_ns + CONTROL_DT_NS
            self.episode += 1
        try:
            self.world = simworld.SimWorld(self.task, self.image_size, seed=self.seed,
                                           render_quality=self.render_quality)
        except Exception as exc:  # noqa: BLE001 - report any load failure the same way
            raise RuntimeError(f"sim backend: cannot load the gym-aloha '{self.task}' scene: {exc}") from exc
        with self._lock:
            self.world.reset()
            self._target = self.world.ctrl_targets()
            self._snapshot_state()
            self._emit_clock(self._sim_time_ns)
            episode = self._episode_locked()
        self._emit("on_episode", episode)
        self._emit_status()
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
        """Simulated time (ns) of the current episode's first state."""
        return self._clock_offset_ns

    def reset(self, seed: int | None = None) -> SimEpisode:
        """Start a new episode (objects placed from `seed`, else the sequence's next seed)."""
        if self.world is None:
            raise RuntimeError("sim backend: reset() before connect()")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed: got {seed}, expected 0..{MAX_SEED} (or none: the sequence's next)")
        with self._lock:
            # The reset takes one control period: the new episode's first state gets a stamp of
            # its own, after every state (and camera frame) of the old episode.
            self._clock_offset_ns = self._sim_time_ns + CONTROL_DT_NS
            self.world.reset(seed)
            self._target = self.world.ctrl_targets()
            self.episode += 1
            self._snapshot_state()
            self._emit_clock(self._sim_time_ns)
            episode = self._episode_locked()
        self._emit("on_episode", episode)
        self._emit_status()
        return episode

    def _episode_locked(self) -> SimEpisode:
        """The current episode (caller holds the state lock)."""
        return SimEpisode(number=self.episode, seed=self.world.seed, start_ns=self._clock_offset_ns,
                          object_poses=self.world.object_poses())

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
                # diagnostics() reports it (ERROR) through the driver's /diagnostics
                self.errors.append(f"{loop.__name__} stopped: {type(exc).__name__}: {exc}")
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
                # Under the lock: listeners hear of T before any reader can hold the state of T,
                # and a concurrent reset cannot announce its later time first.
                self._emit_clock(self._sim_time_ns)
                now_sim = self.sim_time
                self._step_count += 1
                step = self._step_count
            # Nobody listening: no frame to render (rendering is the expensive part).
            if self._frame_period_steps and step % self._frame_period_steps == 0 and self._listeners:
                self._capture_frame()
            if step % self._status_period_steps == 0:
                self._emit_status()
            # Pace: simulated time may run at most real_time_factor x wall time.
            wall = time.monotonic()
            if step % 50 == 0:
                self.achieved_rtf = (now_sim - rtf_sim) / max(wall - rtf_wall, 1e-9)
                rtf_wall, rtf_sim = wall, now_sim
            if now_sim < sim0 or self._reanchor:  # clock reset, or a new real_time_factor
                self._reanchor = False
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
            self._emit("on_frame", self._render_stamp_ns, images)
            self.frames += 1
            self._render_idle.set()

    # ---- what listeners are told -----------------------------------------------------------
    def _emit_clock(self, sim_time_ns: int) -> None:
        """on_clock, each time once and increasing (caller holds the state lock)."""
        if sim_time_ns > self._clock_published_ns:
            self._clock_published_ns = sim_time_ns
            self._emit("on_clock", sim_time_ns)

    def _emit_status(self) -> None:
        if not self._listeners or self.world is None:
            return
        with self._lock:
            if self.world is None:
                return
            status = SimStatus(stamp_ns=self._sim_time_ns, reward=float(self.world.reward),
                               success=bool(self.world.success), object_poses=self.world.object_poses())
        self._emit("on_status", status)
