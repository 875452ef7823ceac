"""Intel RealSense colour stream through pyrealsense2.

The surface of pyrealsense2 used here is deliberately small (so tests can inject a fake):
  rs.context().query_devices() -> devices with get_info(rs.camera_info.serial_number)
  rs.pipeline(), rs.config(): enable_device(serial), enable_stream(rs.stream.color, w, h,
      rs.format.rgb8, fps); pipeline.start(config) -> profile; pipeline.stop()
  profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
      -> width, height, fx, fy, ppx, ppy, coeffs
  profile.get_device().first_color_sensor(): supports(rs.option.global_time_enabled),
      set_option(...)
  pipeline.wait_for_frames(timeout_ms) -> frames.get_color_frame() -> get_data(),
      get_timestamp() (ms), get_frame_timestamp_domain()
Timestamps: with `global_time_enabled` librealsense maps the device's hardware clock onto the
host clock and reports domain `global_time` (ms since the epoch): that is used as the capture
stamp. Other domains (`hardware_clock`: device ticks; `system_time`: host arrival) are not
comparable with ROS time and fall back to stamping on receipt (stamp None).
Unplugging makes wait_for_frames raise RuntimeError: read() turns that into CameraError and the
node closes and re-opens (the serial is looked up again, so the camera comes back when replugged).
"""
from __future__ import annotations

import numpy as np

from motus_ros.cameras.base import CameraBackend, CameraError, CameraFrame, CameraIntrinsics, check_rgb


def _import_rs():
    try:
        import pyrealsense2 as rs  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError as exc:  # e.g. libusb-1.0.so.0 missing on Debian without libusb-1.0-0
        raise CameraError(f"realsense backend: cannot import pyrealsense2 ({exc}); install "
                          "pyrealsense2 and Debian's libusb-1.0-0") from exc
    return rs


class RealSenseBackend(CameraBackend):
    """Colour stream of one RealSense (D405/D435/...) chosen by serial number ('' = the only one)."""

    def __init__(self, serial: str = "", width: int = 640, height: int = 480, fps: int = 30,
                 hardware_timestamps: bool = True, rs_module=None):
        self.serial = str(serial)
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.hardware_timestamps = bool(hardware_timestamps)
        self._rs = rs_module
        self._pipeline = None
        self._intrinsics: CameraIntrinsics | None = None
        self.description = f"realsense:{self.serial or 'any'}"

    @property
    def rs(self):
        if self._rs is None:
            self._rs = _import_rs()
        return self._rs

    def connected_serials(self) -> list[str]:
        rs = self.rs
        return [str(d.get_info(rs.camera_info.serial_number)) for d in rs.context().query_devices()]

    def open(self) -> None:
        rs = self.rs
        serials = self.connected_serials()
        if not serials:
            raise CameraError(f"{self.description}: no RealSense connected (check the USB cable "
                              "and that the udev rules allow access)")
        if self.serial and self.serial not in serials:
            raise CameraError(f"{self.description}: serial {self.serial} not connected; "
                              f"connected: {serials}")
        if not self.serial and len(serials) > 1:
            raise CameraError(f"{self.description}: {len(serials)} RealSense connected {serials}; "
                              "set the serial parameter to choose one")
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"{self.description}: cannot start colour stream "
                              f"{self.width}x{self.height}@{self.fps}: {exc}") from exc
        self._pipeline = pipeline
        try:
            intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
            self._intrinsics = CameraIntrinsics(
                int(intr.width), int(intr.height), float(intr.fx), float(intr.fy),
                float(intr.ppx), float(intr.ppy), "plumb_bob",
                tuple(float(c) for c in list(intr.coeffs)[:5]))
        except (RuntimeError, AttributeError):
            self._intrinsics = None
        if self.hardware_timestamps:
            try:
                sensor = profile.get_device().first_color_sensor()
                if sensor.supports(rs.option.global_time_enabled):
                    sensor.set_option(rs.option.global_time_enabled, 1)
            except (RuntimeError, AttributeError):
                pass  # older firmware: stamps fall back to receipt time

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        if self._pipeline is None:
            raise CameraError(f"{self.description}: read() before open()")
        rs = self.rs
        try:
            frames = self._pipeline.wait_for_frames(int(max(timeout, 0.001) * 1000))
        except RuntimeError as exc:
            # librealsense raises "Frame didn't arrive within N" both on a slow frame and on unplug;
            # a device that is gone is reported by query_devices.
            if self.serial and self.serial not in self.connected_serials():
                raise CameraError(f"{self.description}: device disconnected ({exc})") from exc
            if "didn't arrive" in str(exc):
                return None
            raise CameraError(f"{self.description}: {exc}") from exc
        color = frames.get_color_frame()
        if not color:
            return None
        image = np.asanyarray(color.get_data())
        image = check_rgb(np.ascontiguousarray(image, dtype=np.uint8), self.description)
        stamp, hardware = None, False
        if self.hardware_timestamps and \
                color.get_frame_timestamp_domain() == rs.timestamp_domain.global_time:
            stamp, hardware = float(color.get_timestamp()) / 1000.0, True
        return CameraFrame(image=image, stamp=stamp, hardware_stamp=hardware)

    def close(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.stop()
            except RuntimeError:
                pass  # already stopped by an unplug

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        return self._intrinsics
