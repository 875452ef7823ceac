"""Camera node: one or several cameras (realsense | opencv | replay) -> Image/CompressedImage + CameraInfo.

Each camera runs in its own reader thread (device reads block), publishes on
/camera_<name>/color/image_raw (sensor_msgs/Image) and/or /camera_<name>/color/image_raw/compressed
(sensor_msgs/CompressedImage, JPEG, encoded once per frame in that thread), as `image_transport`
says (raw | compressed | both), and /camera_<name>/color/camera_info, and reopens its device after
an error every `retry_period_s`. Device errors become /diagnostics entries, never crashes.
In simulation the sim node publishes the camera topics itself (see motus_ros/cameras/sim.py).

A managed node (`ros2 lifecycle` drives it; with `autostart` it configures and activates itself):
configure creates the backends and publishers, activate starts the reader threads (devices are
opened there, with retries), deactivate stops them and closes the devices, cleanup releases the
backends. A bad parameter (an unknown backend, a missing source) fails at start-up whatever the
autostart setting.

Parameters (all cameras): robot, cameras, backend, width, height, fps, loop, replay_rate, restamp,
retry_period_s, read_timeout_s, stale_after_s, image_transport, jpeg_quality, autostart; per camera
<name>.backend, <name>.serial, <name>.source, <name>.topic, <name>.frame_id, <name>.calibration.
Live: retry_period_s, read_timeout_s, stale_after_s, diagnostics_period_s, jpeg_quality (from the
next frame); the rest are read-only (a device opened with them would have to be reopened).
"""
from __future__ import annotations

import threading
import time

from motus_ros.ros import diagnostics as diag
from motus_ros.cameras.base import CameraBackend, CameraError, EndOfStream
from motus_ros.cameras.calibration import resolve_intrinsics
from motus_ros.cameras.publisher import PUBLISH_TRANSPORTS, CameraPublisher
from motus_ros.cameras.registry import BACKENDS, make_backend
from motus_ros.cameras.sim import SIM_NODE_HINT
from motus_ros.layout import CAMERAS, camera_image_topic
from motus_ros.ros.managed import AUTOSTART, ManagedNode
from motus_ros.ros.run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.ros.qos import IMAGE_RELIABILITY, image_qos
from motus_ros.stamps import to_time_msg

GLOBAL_PARAMS = [
    Param("robot", "sim", "robot profile; intrinsics come from calibration/<robot>/<camera>.yaml"),
    Param("cameras", list(CAMERAS), "camera names this node publishes (topics /camera_<name>/...)"),
    Param("backend", "realsense", "default backend of every camera", choices=tuple(BACKENDS)),
    Param("width", 640, "image width (pixels)", min=16, max=8192),
    Param("height", 480, "image height (pixels)", min=16, max=8192),
    Param("fps", 30.0, "frame rate (Hz); for video files 0 = the file's own rate", min=0.0, max=1000.0),
    Param("loop", True, "video files and bags: restart at the end instead of stopping"),
    Param("replay_rate", 1.0, "bag replay speed factor (1 = recorded speed)", min=0.01, max=100.0),
    Param("restamp", True, "bag replay: stamp frames when published (false keeps recorded stamps)"),
    Param("hardware_timestamps", True, "realsense: use host-synchronised hardware timestamps"),
    Param("retry_period_s", 1.0, "seconds between attempts to reopen a failed device", min=0.01,
          max=60.0, live=True),
    Param("read_timeout_s", 1.0, "seconds a read waits for a frame before reporting a timeout",
          min=0.01, max=60.0, live=True),
    Param("stale_after_s", 1.0, "seconds without a frame before diagnostics report the camera stale",
          min=0.01, max=60.0, live=True),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", min=0.05, max=60.0,
          live=True),
    Param("reliability", "reliable", "image QoS reliability: reliable (default: best effort lost "
          "most 640x480 frames here, see motus_ros/ros/qos.py) or best_effort (sensor-data style)",
          choices=IMAGE_RELIABILITY),
    Param("image_transport", "raw", "what each camera publishes: raw (sensor_msgs/Image on "
          "<image topic>), compressed (sensor_msgs/CompressedImage, JPEG, on <image topic>/compressed, "
          "image_transport naming) or both", choices=PUBLISH_TRANSPORTS),
    Param("jpeg_quality", 90, "JPEG quality (1-100) of the compressed images", min=1, max=100,
          live=True),
    AUTOSTART,
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
                                         qos=image_qos(opts["reliability"]),
                                         transport=opts["image_transport"],
                                         jpeg_quality=opts["jpeg_quality"])

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

    def _pause_before_retry(self) -> None:
        """Wait retry_period_s, re-read while waiting (it is live), or until stop()."""
        start = time.monotonic()
        while not self._stop.is_set():
            left = start + self.node.params["retry_period_s"] - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.1))

    def _run(self) -> None:
        live = self.node.params   # retry_period_s and read_timeout_s are live: read every loop
        while not self._stop.is_set():
            if not self.opened and not self._open():
                self._pause_before_retry()
                continue
            try:
                frame = self.backend.read(live["read_timeout_s"])
            except EndOfStream as exc:
                self.ended, self.last_error = True, str(exc)
                self._close()
                return
            except Exception as exc:  # noqa: BLE001 - unplug, driver error: close and reconnect
                self._fail(exc)
                self._pause_before_retry()
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
                self.publisher.publish(frame.image, stamp)   # JPEG-encodes here (image_transport)
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
                  "hardware_timestamps": self.hardware_stamps,
                  "image_transport": self.publisher.transport}
        name = f"camera_node: {self.name}"
        if self.ended:
            return diag.status(name, diag.WARN, f"stream ended: {self.last_error}", values)
        if not self.opened:
            return diag.status(name, diag.ERROR, f"device not open: {self.last_error or 'not started'}"
                               f"; retrying every {self.node.params['retry_period_s']} s", values)
        age = None if self.last_frame_mono is None else time.monotonic() - self.last_frame_mono
        if age is None or age > stale_after:
            return diag.status(name, diag.WARN, "no frame for "
                               f"{'ever' if age is None else f'{age:.2f} s'}", values)
        values["age_s"] = age
        return diag.status(name, diag.OK, "streaming", values)


class CameraNode(ManagedNode):
    """Publishes the configured cameras; a managed node (see the module docstring)."""

    def __init__(self, renderer=None, **kwargs):
        super().__init__("camera", **kwargs)
        self.params = declare_parameters(self, GLOBAL_PARAMS, on_change=self._on_params)
        self.streams: list[CameraStream] = []
        self._renderer = renderer  # in-process sim renderer (tests); see cameras/sim.py
        names = list(self.params["cameras"])
        if not names or len(set(names)) != len(names):
            raise ParameterError(f"parameter 'cameras': got {names}, expected distinct camera names")
        self.camera_params = {n: declare_parameters(self, camera_params(n)) for n in names}
        for name in names:
            self._check_source(name)   # bad parameters fail now, not at the first configure
        self.diagnostics = diag.DiagnosticsPublisher(self)
        self.active = False
        self._diag_timer = self.create_timer(self.params["diagnostics_period_s"], self.publish_diagnostics)
        self.start(self.params["autostart"])   # at start-up a camera that cannot be created ends the node

    def _kind(self, name: str) -> str:
        return self.camera_params[name][f"{name}.backend"] or self.params["backend"]

    def _check_source(self, name: str) -> None:
        """ParameterError naming the parameter when camera `name` cannot have a backend."""
        kind, source = self._kind(name), self.camera_params[name][f"{name}.source"]
        if kind == "sim" and self._renderer is None:
            raise ParameterError(f"parameter '{name}.backend' (or 'backend'): got 'sim': {SIM_NODE_HINT}")
        if kind == "opencv" and not source:
            raise ParameterError(f"parameter '{name}.source': got '', expected a V4L2 index, "
                                 "/dev/videoN or a video file path for backend opencv")
        if kind == "replay" and not source:
            raise ParameterError(f"parameter '{name}.source': got '', expected a rosbag2 folder "
                                 "for backend replay")

    def _backend_for(self, name: str) -> CameraBackend:
        p, c = self.params, self.camera_params[name]
        kind = self._kind(name)
        source, topic = c[f"{name}.source"], c[f"{name}.topic"]
        if kind == "sim":
            return make_backend("sim", renderer=self._renderer, camera=source or name)
        if kind == "realsense":
            return make_backend("realsense", serial=c[f"{name}.serial"], width=p["width"],
                                height=p["height"], fps=int(p["fps"] or 30),
                                hardware_timestamps=p["hardware_timestamps"])
        if kind == "opencv":
            return make_backend("opencv", source=source, width=p["width"], height=p["height"],
                                fps=p["fps"], loop=p["loop"])
        return make_backend("replay", bag=source, topic=topic or camera_image_topic(name),
                            loop=p["loop"], rate=p["replay_rate"], restamp=p["restamp"])

    def _on_params(self, changed: dict) -> None:
        # retry_period_s, read_timeout_s and stale_after_s are read where they are used.
        if "diagnostics_period_s" in changed:
            self._diag_timer.timer_period_ns = int(changed["diagnostics_period_s"] * 1e9)
        if "jpeg_quality" in changed:   # read by each publisher at its next frame
            for stream in self.streams:
                stream.publisher.jpeg_quality = int(changed["jpeg_quality"])

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Create the backends and publishers (devices are opened by the reader threads)."""
        for name in self.camera_params:
            c = self.camera_params[name]
            opts = {**self.params, "calibration": c[f"{name}.calibration"],
                    "frame_id": c[f"{name}.frame_id"]}
            try:
                backend = self._backend_for(name)
            except CameraError as exc:
                raise ParameterError(f"camera {name}: {exc}") from exc
            self.streams.append(CameraStream(self, name, backend, opts))

    def activate(self) -> None:
        for stream in self.streams:
            stream.start()
        self.active = True

    def deactivate(self) -> None:
        self.active = False
        for stream in self.streams:
            stream.stop()

    def cleanup(self) -> None:
        for stream in self.streams:
            stream.stop()   # no-op after deactivate; releases what a failed activate opened
            stream.publisher.destroy()
        self.streams = []

    def publish_diagnostics(self) -> None:
        if not self.streams:
            self.diagnostics.publish(diag.status("camera_node", diag.WARN, "not configured"))
            return
        self.diagnostics.publish(*(s.status(self.params["stale_after_s"]) for s in self.streams))


def main(args=None):
    return run_node(lambda: CameraNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
