"""Camera node: one or several cameras (realsense | opencv | replay) -> Image + CameraInfo.

Each camera runs in its own reader thread (device reads block), publishes with sensor-data QoS on
/camera_<name>/color/image_raw and /camera_<name>/color/camera_info, and reopens its device after
an error every `retry_period_s`. Device errors become /diagnostics entries, never crashes.
In simulation the sim node publishes the camera topics itself (see motus_ros/cameras/sim.py).

Parameters (all cameras): robot, cameras, backend, width, height, fps, loop, replay_rate, restamp,
retry_period_s, read_timeout_s, stale_after_s, autostart; per camera <name>.backend, <name>.serial,
<name>.source, <name>.topic, <name>.frame_id, <name>.calibration.
"""
from __future__ import annotations

import threading
import time

from builtin_interfaces.msg import Time
from rclpy.node import Node

from motus_ros import diagnostics as diag
from motus_ros.cameras.base import BACKENDS, CameraBackend, CameraError, EndOfStream, make_backend
from motus_ros.cameras.calibration import resolve_intrinsics
from motus_ros.cameras.publisher import CameraPublisher
from motus_ros.cameras.sim import SIM_NODE_HINT
from motus_ros.layout import CAMERAS
from motus_ros.nodes._run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.qos import IMAGE_RELIABILITY, image_qos

GLOBAL_PARAMS = [
    Param("robot", "sim", "robot profile; intrinsics come from calibration/<robot>/<camera>.yaml"),
    Param("cameras", list(CAMERAS), "camera names this node publishes (topics /camera_<name>/...)"),
    Param("backend", "realsense", "default backend of every camera", choices=BACKENDS),
    Param("width", 640, "image width (pixels)", min=16, max=8192),
    Param("height", 480, "image height (pixels)", min=16, max=8192),
    Param("fps", 30.0, "frame rate (Hz); for video files 0 = the file's own rate", min=0.0, max=1000.0),
    Param("loop", True, "video files and bags: restart at the end instead of stopping"),
    Param("replay_rate", 1.0, "bag replay speed factor (1 = recorded speed)", min=0.01, max=100.0),
    Param("restamp", True, "bag replay: stamp frames when published (false keeps recorded stamps)"),
    Param("hardware_timestamps", True, "realsense: use host-synchronised hardware timestamps"),
    Param("retry_period_s", 1.0, "seconds between attempts to reopen a failed device", min=0.01, max=60.0),
    Param("read_timeout_s", 1.0, "seconds a read waits for a frame before reporting a timeout",
          min=0.01, max=60.0),
    Param("stale_after_s", 1.0, "seconds without a frame before diagnostics report the camera stale",
          min=0.01, max=60.0),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", min=0.05, max=60.0),
    Param("reliability", "reliable", "image QoS reliability: reliable (default: best effort lost "
          "most 640x480 frames here, see motus_ros/qos.py) or best_effort (sensor-data style)",
          choices=IMAGE_RELIABILITY),
    Param("autostart", True, "configure and activate at start (false: call configure()/activate())"),
]


def camera_params(name: str) -> list[Param]:
    return [
        Param(f"{name}.backend", "", "backend of this camera ('' = the node's backend)",
              choices=("", *BACKENDS)),
        Param(f"{name}.serial", "", "realsense serial number ('' = the only connected camera)"),
        Param(f"{name}.source", "", "opencv: V4L2 index or /dev/videoN or video file; replay: bag folder"),
        Param(f"{name}.topic", "", "replay: image topic in the bag ('' = /camera_<name>/color/image_raw)"),
        Param(f"{name}.frame_id", "", "frame id ('' = camera_<name>_color_optical_frame)"),
        Param(f"{name}.calibration", "", "intrinsics YAML ('' = calibration/<robot>/<name>.yaml)"),
    ]


def to_time_msg(seconds: float) -> Time:
    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


class CameraStream:
    """One camera: backend + publisher + reader thread + health counters."""

    def __init__(self, node: "CameraNode", name: str, backend: CameraBackend, opts: dict):
        self.node, self.name, self.backend, self.opts = node, name, backend, opts
        self.opened = False
        self.ended = False
        self.last_error = ""
        self.errors = 0
        self.reconnects = 0
        self.frames = 0
        self.last_frame_mono: float | None = None
        self.hardware_stamps = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        intr, self.intrinsics_source = resolve_intrinsics(
            opts["robot"], name, opts["width"], opts["height"], path=opts["calibration"] or None)
        self.publisher = CameraPublisher(node, name, intr, opts["frame_id"] or None,
                                         qos=image_qos(opts["reliability"]))

    # -- thread -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera_{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self.opened:
            self.opened = False
            try:
                self.backend.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken device must not crash
                self.last_error = f"close: {exc}"

    def _fail(self, exc: Exception) -> None:
        self.errors += 1
        self.last_error = str(exc)
        self.node.get_logger().warning(f"camera {self.name}: {exc}", throttle_duration_sec=5.0)
        self._close()

    def _open(self) -> bool:
        try:
            self.backend.open()
        except Exception as exc:  # noqa: BLE001 - any device error is reported and retried
            self._fail(exc)
            return False
        if self.errors:
            self.reconnects += 1
        self.opened = True
        if self.intrinsics_source == "none" and self.backend.intrinsics is not None:
            self.publisher.set_intrinsics(self.backend.intrinsics)  # RealSense factory values
            self.intrinsics_source = "device"
        return True

    def _run(self) -> None:
        retry = self.opts["retry_period_s"]
        while not self._stop.is_set():
            if not self.opened and not self._open():
                self._stop.wait(retry)
                continue
            try:
                frame = self.backend.read(self.opts["read_timeout_s"])
            except EndOfStream as exc:
                self.ended, self.last_error = True, str(exc)
                self._close()
                return
            except Exception as exc:  # noqa: BLE001 - unplug, driver error: close and reconnect
                self._fail(exc)
                self._stop.wait(retry)
                continue
            if frame is None:
                continue
            if frame.due is not None:
                delay = frame.due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            stamp = to_time_msg(frame.stamp) if frame.stamp is not None \
                else self.node.get_clock().now().to_msg()
            try:
                self.publisher.publish(frame.image, stamp)
            except Exception as exc:  # noqa: BLE001 - e.g. context shut down while stopping
                if self._stop.is_set():
                    return
                self._fail(exc)
                continue
            self.hardware_stamps = frame.hardware_stamp
            self.frames += 1
            self.last_frame_mono = time.monotonic()

    # -- health -------------------------------------------------------------------------------
    def status(self, stale_after: float):
        values = {"backend": self.backend.description, "frames": self.frames, "errors": self.errors,
                  "reconnects": self.reconnects, "intrinsics": self.intrinsics_source,
                  "hardware_timestamps": self.hardware_stamps}
        name = f"camera_node: {self.name}"
        if self.ended:
            return diag.status(name, diag.WARN, f"stream ended: {self.last_error}", values)
        if not self.opened:
            return diag.status(name, diag.ERROR, f"device not open: {self.last_error or 'not started'}"
                               f"; retrying every {self.opts['retry_period_s']} s", values)
        age = None if self.last_frame_mono is None else time.monotonic() - self.last_frame_mono
        if age is None or age > stale_after:
            return diag.status(name, diag.WARN, "no frame for "
                               f"{'ever' if age is None else f'{age:.2f} s'}", values)
        values["age_s"] = age
        return diag.status(name, diag.OK, "streaming", values)


class CameraNode(Node):
    """Publishes the configured cameras; lifecycle-shaped (configure/activate/deactivate/cleanup)."""

    def __init__(self, renderer=None, **kwargs):
        super().__init__("camera", **kwargs)
        self.params = declare_parameters(self, GLOBAL_PARAMS)
        self.streams: list[CameraStream] = []
        self._renderer = renderer  # in-process sim renderer (tests); see cameras/sim.py
        names = list(self.params["cameras"])
        if not names or len(set(names)) != len(names):
            raise ParameterError(f"parameter 'cameras': got {names}, expected distinct camera names")
        self.camera_params = {n: declare_parameters(self, camera_params(n)) for n in names}
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.active = False
        self._diag_timer = self.create_timer(self.params["diagnostics_period_s"], self.publish_diagnostics)
        if self.params["autostart"]:
            self.configure()
            self.activate()

    def _backend_for(self, name: str) -> CameraBackend:
        p, c = self.params, self.camera_params[name]
        kind = c[f"{name}.backend"] or p["backend"]
        source, topic = c[f"{name}.source"], c[f"{name}.topic"]
        if kind == "sim":
            if self._renderer is None:
                raise ParameterError(f"parameter '{name}.backend' (or 'backend'): got 'sim': "
                                     f"{SIM_NODE_HINT}")
            return make_backend("sim", renderer=self._renderer, camera=source or name)
        if kind == "realsense":
            return make_backend("realsense", serial=c[f"{name}.serial"], width=p["width"],
                                height=p["height"], fps=int(p["fps"] or 30),
                                hardware_timestamps=p["hardware_timestamps"])
        if kind == "opencv":
            if not source:
                raise ParameterError(f"parameter '{name}.source': got '', expected a V4L2 index, "
                                     "/dev/videoN or a video file path for backend opencv")
            return make_backend("opencv", source=source, width=p["width"], height=p["height"],
                                fps=p["fps"], loop=p["loop"])
        if not source:
            raise ParameterError(f"parameter '{name}.source': got '', expected a rosbag2 folder "
                                 "for backend replay")
        from motus_ros.layout import camera_image_topic  # noqa: PLC0415
        return make_backend("replay", bag=source, topic=topic or camera_image_topic(name),
                            loop=p["loop"], rate=p["replay_rate"], restamp=p["restamp"])

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Create the backends (devices are opened by the reader threads, with retries)."""
        if self.streams:
            return
        for name in self.camera_params:
            c = self.camera_params[name]
            opts = {**self.params, "calibration": c[f"{name}.calibration"],
                    "frame_id": c[f"{name}.frame_id"]}
            try:
                backend = self._backend_for(name)
                self.streams.append(CameraStream(self, name, backend, opts))
            except CameraError as exc:
                raise ParameterError(f"camera {name}: {exc}") from exc

    def activate(self) -> None:
        if not self.active:
            for stream in self.streams:
                stream.start()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            for stream in self.streams:
                stream.stop()
            self.active = False

    def cleanup(self) -> None:
        self.deactivate()
        self.streams = []

    def close(self) -> None:
        self.cleanup()

    def publish_diagnostics(self) -> None:
        if not self.streams:
            self.diagnostics.publish(diag.status("camera_node", diag.WARN, "not configured"))
            return
        self.diagnostics.publish(*(s.status(self.params["stale_after_s"]) for s in self.streams))


def main(args=None):
    return run_node(lambda: CameraNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
