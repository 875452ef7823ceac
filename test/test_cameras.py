"""Camera backends (opencv file, rosbag2 replay, realsense through a fake), calibration, camera node."""
from __future__ import annotations

import types

import numpy as np
import pytest

from motus_ros.cameras.base import CameraError, EndOfStream
from motus_ros.cameras.registry import make_backend
from motus_ros.cameras.calibration import load_intrinsics, resolve_intrinsics
from motus_ros.cameras.opencv import OpenCVBackend
from motus_ros.cameras.realsense import RealSenseBackend
from motus_ros.cameras.replay import ReplayBackend


# ------------------------------------------------------------------------------------------------
# opencv: a small video file written here
def write_video(path, colors_bgr, size=(32, 24)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for bgr in colors_bgr:
        writer.write(np.full((size[1], size[0], 3), bgr, np.uint8))
    writer.release()
    return path


def test_opencv_file_returns_rgb_and_stops_at_end(tmp_path):
    path = write_video(tmp_path / "v.avi", [(255, 0, 0)] * 3)  # pure blue in BGR
    cam = OpenCVBackend(str(path), width=32, height=24, fps=100.0, loop=False)
    with cam:
        frames = [cam.read() for _ in range(3)]
        with pytest.raises(EndOfStream, match="end of video file"):
            cam.read()
    first = frames[0].image
    assert first.shape == (24, 32, 3) and first.dtype == np.uint8
    assert first[..., 2].mean() > 200 and first[..., 0].mean() < 50  # blue lands in channel 2 (RGB)
    dues = [f.due for f in frames]
    # paced at 100 fps: never faster than the period (later when the reader itself is late)
    assert all(b - a >= 0.01 - 1e-6 for a, b in zip(dues, dues[1:]))


def test_opencv_file_loops_and_resizes(tmp_path):
    path = write_video(tmp_path / "v.avi", [(0, 0, 0), (0, 255, 0)])
    cam = OpenCVBackend(str(path), width=16, height=12, fps=100.0, loop=True)
    with cam:
        frames = [cam.read().image for _ in range(5)]
    assert all(f.shape == (12, 16, 3) for f in frames)
    greens = [f[..., 1].mean() > 128 for f in frames]
    assert greens == [False, True, False, True, False]


def test_opencv_missing_file_is_clear(tmp_path):
    with pytest.raises(CameraError, match="video file not found"):
        OpenCVBackend(str(tmp_path / "nope.avi")).open()


# ------------------------------------------------------------------------------------------------
# replay: a small bag written with rosbags
def write_bag(folder, n=3):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    import cv2

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Compressed = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    images = [np.full((4, 6, 3), (10 * i, 100, 200), np.uint8) for i in range(n)]
    with Writer(folder, version=9) as writer:
        raw = writer.add_connection("/camera_high/color/image_raw", Image.__msgtype__, typestore=ts)
        comp = writer.add_connection("/camera_left_wrist/color/image_raw/compressed",
                                     Compressed.__msgtype__, typestore=ts)
        for i, img in enumerate(images):
            t_ns = 1_000_000_000 + i * 50_000_000  # 20 Hz
            header = Header(stamp=Time(sec=100 + i, nanosec=0), frame_id="cam")
            msg = Image(header=header, height=4, width=6, encoding="bgr8", is_bigendian=0, step=18,
                        data=np.ascontiguousarray(img[:, :, ::-1]).reshape(-1))
            writer.write(raw, t_ns, ts.serialize_cdr(msg, Image.__msgtype__))
            ok, png = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
            cmsg = Compressed(header=header, format="png", data=png.reshape(-1))
            writer.write(comp, t_ns, ts.serialize_cdr(cmsg, Compressed.__msgtype__))
    return images


def test_replay_image_and_compressed_paced_by_recorded_time(tmp_path):
    images = write_bag(tmp_path / "bag")
    cam = ReplayBackend(str(tmp_path / "bag"), "/camera_high/color/image_raw", loop=False,
                        restamp=False)
    with cam:
        frames = [cam.read() for _ in range(3)]
        with pytest.raises(EndOfStream):
            cam.read()
    for frame, img in zip(frames, images):
        np.testing.assert_array_equal(frame.image, img)  # bgr8 in the bag -> RGB out
    assert [f.stamp for f in frames] == [100.0, 101.0, 102.0]
    assert frames[2].due - frames[0].due == pytest.approx(0.1, abs=1e-9)  # 2 x 50 ms recorded

    comp = ReplayBackend(str(tmp_path / "bag"), "/camera_left_wrist/color/image_raw/compressed",
                         loop=True, rate=2.0)
    with comp:
        frames = [comp.read() for _ in range(4)]
    np.testing.assert_array_equal(frames[1].image, images[1])  # PNG is lossless
    np.testing.assert_array_equal(frames[3].image, images[0])  # looped
    assert frames[1].due - frames[0].due == pytest.approx(0.025, abs=1e-9)  # rate 2x
    assert frames[0].stamp is None  # restamped on publication


def test_replay_unknown_topic_lists_image_topics(tmp_path):
    write_bag(tmp_path / "bag", n=1)
    with pytest.raises(CameraError, match="/camera_high/color/image_raw"):
        ReplayBackend(str(tmp_path / "bag"), "/nope").open()


# ------------------------------------------------------------------------------------------------
# realsense: a fake of the small pyrealsense2 surface the backend uses (test double)
class FakeRealSense:
    """Stands in for the pyrealsense2 module: devices can be plugged and unplugged."""

    def __init__(self, serials=("123",), domain="global_time"):
        self.devices = list(serials)
        self.domain = domain
        self.stream = types.SimpleNamespace(color="color")
        self.format = types.SimpleNamespace(rgb8="rgb8")
        self.camera_info = types.SimpleNamespace(serial_number="serial_number")
        self.option = types.SimpleNamespace(global_time_enabled="global_time_enabled")
        self.timestamp_domain = types.SimpleNamespace(global_time="global_time",
                                                      hardware_clock="hardware_clock")
        self.started = []
        self.options = {}
        fake = self

        class Device:
            def __init__(self, serial):
                self.serial = serial

            def get_info(self, key):
                assert key == "serial_number"
                return self.serial

        class Context:
            def query_devices(self):
                return [Device(s) for s in fake.devices]

        class Config:
            def __init__(self):
                self.serial, self.streams = None, []

            def enable_device(self, serial):
                self.serial = serial

            def enable_stream(self, *args):
                self.streams.append(args)

        class Frame:
            def __init__(self, n, w, h):
                self.n, self.w, self.h = n, w, h

            def get_data(self):
                return np.full((self.h, self.w, 3), self.n % 256, np.uint8)

            def get_timestamp(self):
                return 1.7e12 + 33.0 * self.n  # ms

            def get_frame_timestamp_domain(self):
                return fake.domain

        class Pipeline:
            def __init__(self):
                self.n, self.size, self.serial = 0, None, None

            def start(self, config):
                _, w, h, fmt, fps = config.streams[0]
                assert fmt == "rgb8"
                self.size, self.serial = (w, h), config.serial
                fake.started.append(config.serial)
                intr = types.SimpleNamespace(width=w, height=h, fx=400.0, fy=401.0, ppx=w / 2,
                                             ppy=h / 2, coeffs=[0.1, 0, 0, 0, 0])
                sensor = types.SimpleNamespace(supports=lambda o: True,
                                               set_option=lambda o, v: fake.options.update({o: v}))
                stream = types.SimpleNamespace(
                    as_video_stream_profile=lambda: types.SimpleNamespace(get_intrinsics=lambda: intr))
                return types.SimpleNamespace(
                    get_stream=lambda s: stream,
                    get_device=lambda: types.SimpleNamespace(first_color_sensor=lambda: sensor))

            def wait_for_frames(self, timeout_ms):
                if self.serial not in fake.devices:
                    raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
                self.n += 1
                frame = Frame(self.n, *self.size)
                return types.SimpleNamespace(get_color_frame=lambda: frame)

            def stop(self):
                pass

        self.context, self.config, self.pipeline = Context, Config, Pipeline


def test_realsense_reads_with_hardware_stamps_and_intrinsics():
    rs = FakeRealSense()
    cam = RealSenseBackend(serial="123", width=64, height=48, fps=30, rs_module=rs)
    with cam:
        frame = cam.read()
    assert frame.image.shape == (48, 64, 3) and frame.image[0, 0, 0] == 1
    assert frame.hardware_stamp and frame.stamp == pytest.approx(1.7e9 + 0.033)
    assert cam.intrinsics.fx == 400.0 and cam.intrinsics.distortion[0] == 0.1
    assert rs.options == {"global_time_enabled": 1}


def test_realsense_hardware_clock_falls_back_to_receipt_stamp():
    cam = RealSenseBackend(serial="123", rs_module=FakeRealSense(domain="hardware_clock"))
    with cam:
        frame = cam.read()
    assert frame.stamp is None and not frame.hardware_stamp


def test_realsense_wrong_serial_names_connected_devices():
    with pytest.raises(CameraError, match=r"serial 999 not connected; connected: \['123', '456'\]"):
        RealSenseBackend(serial="999", rs_module=FakeRealSense(("123", "456"))).open()
    with pytest.raises(CameraError, match="set the serial parameter"):
        RealSenseBackend(rs_module=FakeRealSense(("123", "456"))).open()


def test_realsense_unplug_raises_and_replug_reconnects():
    rs = FakeRealSense()
    cam = RealSenseBackend(serial="123", rs_module=rs)
    cam.open()
    assert cam.read() is not None
    rs.devices.clear()  # unplug
    with pytest.raises(CameraError, match="disconnected"):
        cam.read()
    cam.close()
    with pytest.raises(CameraError, match="no RealSense connected"):
        cam.open()
    rs.devices.append("123")  # replug
    cam.open()
    assert cam.read() is not None and rs.started == ["123", "123"]
    cam.close()


# ------------------------------------------------------------------------------------------------
def test_calibration_files_load_and_scale():
    intr = load_intrinsics(resolve_intrinsics("agilex_aloha2", "high", 640, 480)[1])
    assert (intr.width, intr.height) == (640, 480) and 500 < intr.fx < 700
    half, source = resolve_intrinsics("ac_one", "left_wrist", 320, 240)
    assert half.fx == pytest.approx(load_intrinsics(source.split(" ")[0]).fx / 2)
    assert "scaled" in source
    assert resolve_intrinsics("no_such_robot", "high", 640, 480) == (None, "none")


def test_sim_backend_requires_renderer_and_points_at_sim_node():
    with pytest.raises(CameraError, match="published by the sim node"):
        make_backend("sim")

    class Renderer:
        def render(self, camera):
            return np.full((4, 4, 3), len(camera), np.uint8)

    cam = make_backend("sim", renderer=Renderer(), camera="top")
    with cam:
        assert cam.read().image[0, 0, 0] == 3


# ------------------------------------------------------------------------------------------------
@pytest.mark.ros
def test_camera_node_publishes_image_and_info_and_reports_bad_device(ros, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from motus_ros.nodes.camera_node import CameraNode
    from ros_harness import wait_until

    path = write_video(tmp_path / "v.avi", [(0, 0, 255)] * 4, size=(64, 48))
    images = ros.collect(Image, "/camera_high/color/image_raw", qos_profile_sensor_data)
    infos = ros.collect(CameraInfo, "/camera_high/color/camera_info", qos_profile_sensor_data)
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = CameraNode(parameter_overrides=[
        Parameter("robot", value="agilex_aloha2"),
        Parameter("cameras", value=["high", "left_wrist"]),
        Parameter("backend", value="opencv"),
        Parameter("width", value=64), Parameter("height", value=48), Parameter("fps", value=50.0),
        Parameter("high.source", value=str(path)),
        Parameter("left_wrist.source", value=str(tmp_path / "missing.avi")),
        Parameter("retry_period_s", value=0.05), Parameter("diagnostics_period_s", value=0.1),
    ])
    ros.add(node)
    msg = images.wait_for(2, timeout=10)[0]
    assert (msg.width, msg.height, msg.encoding) == (64, 48, "rgb8")
    assert msg.header.frame_id == "camera_high_color_optical_frame"
    assert msg.data[0] > 200  # red in RGB
    info = infos.wait_for(1, timeout=10)[0]
    assert info.k[0] == pytest.approx(620.8 / 10, abs=0.05)  # 640 -> 64 px wide: scaled by 1/10
    assert info.header.frame_id == msg.header.frame_id

    def bad_wrist(arr):
        return any(s.name == "camera_node: left_wrist" and s.level == b"\x02"
                   and "video file not found" in s.message for s in arr.status)
    diags.wait_for(1, timeout=10, predicate=bad_wrist)
    stream = {s.name: s for s in node.streams}["left_wrist"]
    wait_until(lambda: stream.errors >= 2, 10, "a second open attempt")  # retried, did not crash
    node.close()


@pytest.mark.ros
def test_camera_node_backend_sim_fails_with_pointer_to_sim_node(ros_context):
    from rclpy.parameter import Parameter

    from motus_ros.nodes.camera_node import CameraNode
    from motus_ros.params import ParameterError

    with pytest.raises(ParameterError, match="sim node"):
        CameraNode(parameter_overrides=[Parameter("backend", value="sim")])


def test_image_qos_defaults_to_reliable_and_names_bad_values():
    from rclpy.qos import ReliabilityPolicy

    from motus_ros.ros.qos import image_qos

    assert image_qos().reliability == ReliabilityPolicy.RELIABLE
    assert image_qos("best_effort").reliability == ReliabilityPolicy.BEST_EFFORT
    with pytest.raises(ValueError, match=r"got 'sensor', expected one of \['reliable', 'best_effort'\]"):
        image_qos("sensor")


def start_camera_node(ros, path, **params):
    from rclpy.parameter import Parameter

    from motus_ros.nodes.camera_node import CameraNode

    values = {"cameras": ["high"], "backend": "opencv", "width": 64, "height": 48, "fps": 50.0,
              "high.source": str(path), "diagnostics_period_s": 0.1, **params}
    return ros.add(CameraNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))


@pytest.mark.ros
def test_camera_node_lifecycle_transitions(ros, tmp_path):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from motus_ros.graph.lifecycle import change_state, get_state
    from ros_harness import wait_until

    path = write_video(tmp_path / "v.avi", [(0, 255, 0)] * 4, size=(64, 48))
    images = ros.collect(Image, "/camera_high/color/image_raw", qos_profile_sensor_data)
    node = start_camera_node(ros, path, autostart=False)
    spin = lambda future, timeout_s: wait_until(future.done, timeout_s, "a lifecycle reply")  # noqa: E731
    assert get_state(ros.node, "camera", spin=spin) == "unconfigured" and node.streams == []
    assert change_state(ros.node, "camera", "configure", spin=spin) == "inactive"
    stream = node.streams[0]
    assert not stream.opened and stream.frames == 0                    # device not opened yet
    assert change_state(ros.node, "camera", "activate", spin=spin) == "active"
    images.wait_for(2, timeout=10)
    assert change_state(ros.node, "camera", "deactivate", spin=spin) == "inactive"
    assert not stream.opened                                           # device closed
    frames = stream.frames
    assert stream.frames == frames and node.streams == [stream]        # stopped, still configured
    assert change_state(ros.node, "camera", "cleanup", spin=spin) == "unconfigured"
    assert node.streams == []
    assert change_state(ros.node, "camera", "configure", spin=spin) == "inactive"
    assert change_state(ros.node, "camera", "activate", spin=spin) == "active"
    wait_until(lambda: node.streams[0].frames >= 2, 10, "frames after reconfiguring")
    node.close()
    assert node.lifecycle_state == "finalized" and node.streams == []


@pytest.mark.ros
def test_camera_node_live_and_read_only_parameters(ros, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from ros_harness import wait_for_status

    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = start_camera_node(ros, tmp_path / "missing.avi", retry_period_s=5.0)
    wait_for_status(diags, "camera_node: high", lambda level, message, values: "every 5.0 s" in message)
    # retry_period_s is live: the reader thread and the diagnostics follow it at once.
    assert node.set_parameters([Parameter("retry_period_s", value=0.25)])[0].successful
    errors = node.streams[0].errors
    wait_for_status(diags, "camera_node: high", lambda level, message, values: "every 0.25 s" in message)
    from ros_harness import wait_until
    wait_until(lambda: node.streams[0].errors >= errors + 2, 5, "retries at the new period")
    bad = node.set_parameters([Parameter("retry_period_s", value=0.0)])[0]
    assert not bad.successful and "retry_period_s" in bad.reason and node.params["retry_period_s"] == 0.25
    for name, value in (("width", 128), ("backend", "replay"), ("high.source", "/dev/video0")):
        assert not node.set_parameters([Parameter(name, value=value)])[0].successful, name
    assert node.get_parameter("width").value == 64
    node.close()


def test_camera_base_knows_no_backend_and_the_registry_names_the_choices():
    import ast
    import inspect

    from motus_ros.cameras import base, registry

    tree = ast.parse(inspect.getsource(base))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith("motus_ros.cameras") for m in imported)   # no import cycle
    with pytest.raises(CameraError, match=r"got 'webcam', expected one of \['realsense', 'opencv'"):
        registry.make_backend("webcam")
