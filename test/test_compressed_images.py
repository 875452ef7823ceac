"""Compressed images (issue 16): JPEG sensor_msgs/CompressedImage from the cameras and the sim, read
by the policy / world model, recorded as received, decoded by the converter.

No assertion depends on timing: the ROS tests wait for messages with deadlines.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motus_ros import layout
from motus_ros.data import image_codec
from motus_ros.data import types as bag_types
from motus_ros.training.evaluation import psnr

CAMS = list(layout.CAMERAS)


def scene(h: int = 240, w: int = 320, k: int = 0) -> np.ndarray:
    """A non-trivial RGB picture like a camera's: colour gradients, a filled rectangle, a circle
    and a line, softened as a lens (or a renderer's anti-aliasing) does (Gaussian, sigma 1 px)."""
    import cv2

    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + y + 7 * k) * 255 // (w + h + 7 * k)], axis=-1)
    img = np.ascontiguousarray(img.astype(np.uint8))
    cv2.rectangle(img, (w // 8, h // 6), (w // 2, h // 2), (200, 30, 40), -1, cv2.LINE_AA)
    cv2.circle(img, (3 * w // 4, 2 * h // 3), h // 5, (20, 180 - k, 60), -1, cv2.LINE_AA)
    cv2.line(img, (0, h - 1), (w - 1, h // 3), (250, 250, 250), 2, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


# ------------------------------------------------------------------------------------------------
# numpy <-> CompressedImage (ros/images.py over data/image_codec.py)
def test_jpeg_round_trip_keeps_the_picture_at_quality_90(ros_context):
    from motus_ros.ros.images import compressed_to_numpy, numpy_to_compressed

    img = scene()
    msg = numpy_to_compressed(img, "rgb8", quality=90, frame_id="cam")
    assert msg.format == "rgb8; jpeg compressed bgr8" == image_codec.compressed_format("rgb8", "jpeg")
    assert msg.header.frame_id == "cam" and len(msg.data) < img.nbytes / 5
    back = compressed_to_numpy(msg)
    assert back.shape == img.shape and back.dtype == np.uint8
    assert psnr(back, img) >= 35.0
    np.testing.assert_array_equal(compressed_to_numpy(msg, "bgr8"), back[:, :, ::-1])
    # bgr8 input is stored the same way and comes back as RGB
    bgr = numpy_to_compressed(np.ascontiguousarray(img[:, :, ::-1]), "bgr8", quality=90)
    assert bgr.format == "bgr8; jpeg compressed bgr8" and psnr(compressed_to_numpy(bgr), img) >= 35.0
    mono = numpy_to_compressed(img[:, :, 1].copy(), "mono8", quality=90)
    assert mono.format == "mono8; jpeg compressed mono8"
    gray = compressed_to_numpy(mono)
    assert gray.shape == img.shape and psnr(gray[:, :, 0], img[:, :, 1]) >= 35.0
    # lower quality: smaller and worse, still decodable
    low = numpy_to_compressed(img, quality=10)
    assert len(low.data) < len(msg.data) and psnr(compressed_to_numpy(low), img) < psnr(back, img)


def test_format_string_is_one_implementation_shared_with_the_bag_codec():
    img = scene(48, 64)
    store = bag_types.typestore()
    Image = store.types[bag_types.IMAGE_TYPE]
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f")
    raw = bag_types.serialize(Image(header=header, height=48, width=64, encoding="rgb8",
                                    is_bigendian=0, step=64 * 3, data=img.reshape(-1)),
                              bag_types.IMAGE_TYPE)
    cdr = image_codec.compress_image_cdr(raw, "jpeg", jpeg_quality=90)
    msg = store.deserialize_cdr(cdr, bag_types.COMPRESSED_IMAGE_TYPE)
    assert msg.format == image_codec.compressed_format("rgb8", "jpeg")
    assert psnr(image_codec.decode_compressed(msg), img) >= 35.0
    parse = image_codec.parse_compressed_format
    assert parse("rgb8; jpeg compressed bgr8") == ("rgb8", "jpeg", "bgr8")
    assert parse("mono8; png compressed mono8") == ("mono8", "png", "mono8")
    assert parse("bgr8; jpeg compressed ") == ("bgr8", "jpeg", None)
    assert parse("jpeg") == (None, "jpeg", None) and parse("png") == (None, "png", None)


def test_bad_format_and_undecodable_data_name_the_field(ros_context):
    from sensor_msgs.msg import CompressedImage

    from motus_ros.ros.images import compressed_to_numpy, numpy_to_compressed

    good = numpy_to_compressed(scene(24, 32))
    for bad in ("h264", "", "16UC1; compressedDepth png", "rgb8; webp compressed bgr8"):
        msg = CompressedImage(format=bad, data=good.data)
        with pytest.raises(ValueError, match=r"CompressedImage\.format: got .*expected '<encoding>; "
                                             r"jpeg compressed <encoding>'"):
            compressed_to_numpy(msg)
    with pytest.raises(ValueError, match=r"CompressedImage\.data: OpenCV could not decode 12 bytes"):
        compressed_to_numpy(CompressedImage(format=good.format, data=b"not a jpeg!!"))
    with pytest.raises(ValueError, match=r"CompressedImage\.data: OpenCV could not decode 0 bytes"):
        compressed_to_numpy(CompressedImage(format=good.format))
    with pytest.raises(ValueError, match="jpeg_quality: got 0"):
        numpy_to_compressed(scene(24, 32), quality=0)
    with pytest.raises(ValueError, match="encoding: got 'rgba8'"):
        numpy_to_compressed(scene(24, 32), "rgba8")


def test_opencv_encodes_with_libjpeg_turbo():
    """The reason for the encoder choice (data/image_codec.py): the wheels' JPEG is libjpeg-turbo."""
    import cv2

    jpeg = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("JPEG:")]
    assert jpeg and "libjpeg-turbo" in jpeg[0], jpeg


def test_camera_topics_for_each_transport():
    assert layout.camera_transport_topic("high") == "/camera_high/color/image_raw"
    assert layout.camera_transport_topic("high", "compressed") == "/camera_high/color/image_raw/compressed"
    assert image_codec.compressed_topic("/a/image_raw/") == "/a/image_raw/compressed"
    with pytest.raises(ValueError, match="image_transport: got 'theora'"):
        layout.camera_transport_topic("high", "theora")


def test_recorder_topics_follow_image_transport():
    from motus_ros.data.topics import apply_image_transport, default_topic_specs, parse_topic_specs

    specs = parse_topic_specs(default_topic_specs())
    assert apply_image_transport(specs, "raw") == specs
    compressed = {s.topic: s.msgtype for s in apply_image_transport(specs, "compressed")}
    for cam in CAMS:
        topic = layout.camera_image_topic(cam)
        assert topic not in compressed
        assert compressed[topic + "/compressed"] == bag_types.COMPRESSED_IMAGE_TYPE
        assert compressed[layout.camera_info_topic(cam)] == "sensor_msgs/msg/CameraInfo"
    assert compressed[layout.TOPICS["joint_states"]] == "sensor_msgs/msg/JointState"
    assert compressed[layout.TOPICS["task_success"]] is None     # untyped entries untouched
    both = parse_topic_specs(["/c/image_raw:sensor_msgs/msg/Image",
                              "/c/image_raw/compressed:sensor_msgs/msg/CompressedImage"])
    assert len(apply_image_transport(both, "compressed")) == 1
    clash = parse_topic_specs(["/c/image_raw:sensor_msgs/msg/Image",
                               "/c/image_raw/compressed:std_msgs/msg/String"])
    with pytest.raises(ValueError, match="image_transport: compressed turns an Image entry into "
                                         "/c/image_raw/compressed"):
        apply_image_transport(clash, "compressed")
    with pytest.raises(ValueError, match="image_transport: got 'both'"):
        apply_image_transport(specs, "both")


# ------------------------------------------------------------------------------------------------
# converter: a bag whose cameras are CompressedImage
T0, CAM_RATE, JS_RATE = 500.0, 30.0, 50.0


def _stamp(store, t: float):
    ns = int(round(t * 1e9))
    return store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
        frame_id="")


def write_compressed_bag(folder: Path, duration: float = 1.0, corrupt_at: int | None = None) -> dict:
    """Joint ramps and JPEG cameras on <camera topic>/compressed (as a recorder with
    image_transport compressed writes them); returns {camera: [the RGB pictures encoded]}."""
    from motus_ros.data.bag_writer import BagWriter
    from motus_ros.data.episode import write_json_atomic

    store = bag_types.typestore()
    js, comp = "sensor_msgs/msg/JointState", bag_types.COMPRESSED_IMAGE_TYPE
    w = BagWriter(folder, fsync=False).open()
    for t in (layout.TOPICS["joint_states"], layout.TOPICS["leader_joint_states"]):
        w.add_topic(t, js)
    topics = {c: layout.camera_transport_topic(c, "compressed") for c in CAMS}
    for topic in topics.values():
        w.add_topic(topic, comp)
    events = [(T0 + k / JS_RATE, "j", k) for k in range(int(duration * JS_RATE) + 1)]
    events += [(T0 + k / CAM_RATE, "c", k) for k in range(int(duration * CAM_RATE) + 1)]
    sent = {c: [] for c in CAMS}
    for t, kind, k in sorted(events):
        log_ns = int(t * 1e9) + 3_000_000
        if kind == "j":
            for topic, offset in ((layout.TOPICS["joint_states"], 0.0),
                                  (layout.TOPICS["leader_joint_states"], 0.1)):
                msg = store.types[js](header=_stamp(store, t), name=list(layout.JOINT_NAMES),
                                      position=np.full(layout.DOF, offset + (t - T0)),
                                      velocity=np.zeros(0), effort=np.zeros(0))
                w.write(topic, log_ns, store.serialize_cdr(msg, js))
            continue
        for ci, cam in enumerate(CAMS):
            img = scene(48, 64, k=3 * k + ci)
            fmt, data = image_codec.encode_array(img, "rgb8", "jpeg", jpeg_quality=90)
            if corrupt_at == k and ci == 1:
                data = np.frombuffer(b"garbage", np.uint8)
            msg = store.types[comp](header=_stamp(store, t), format=fmt, data=data)
            w.write(topics[cam], log_ns, store.serialize_cdr(msg, comp))
            sent[cam].append(img)
    w.close()
    write_json_atomic(folder / "episode.json", {"task": "stack", "robot_profile": "sim"})
    return sent


def test_convert_decodes_compressed_camera_topics(tmp_path):
    from motus_ros.data.convert import ConvertConfig, convert
    from motus_ros.data.tiling import resolve_tiler

    sent = write_compressed_bag(tmp_path / "bags" / "ep_jpeg")
    report = convert([tmp_path / "bags" / "ep_jpeg"], tmp_path / "out", ConvertConfig(val_fraction=0.0),
                     progress=False)
    assert not report.failures and len(report.episodes) == 1
    data = np.load(tmp_path / "out" / "episodes" / "ep_jpeg" / "data.npz")
    tile = resolve_tiler()
    n = int(CAM_RATE) + 1
    assert data["state"].shape == (n, 14)
    np.testing.assert_array_equal(data["frame_steps"], np.arange(0, n, 6))
    for f, step in enumerate(data["frame_steps"]):   # cameras at 30 Hz: step s -> image s
        original = tile(*(sent[c][int(step)] for c in CAMS), height=384, width=320)
        assert psnr(data["frames"][f], original) >= 30.0   # JPEG, then the tiler's resize
        store = bag_types.typestore()   # exactly what decoding each recorded JPEG gives
        decoded = []
        for c in CAMS:
            fmt, buf = image_codec.encode_array(sent[c][int(step)], "rgb8", "jpeg", jpeg_quality=90)
            decoded.append(image_codec.decode_compressed(
                store.types[bag_types.COMPRESSED_IMAGE_TYPE](header=_stamp(store, 0.0), format=fmt,
                                                             data=buf)))
        np.testing.assert_array_equal(data["frames"][f], tile(*decoded, height=384, width=320))


def test_convert_names_the_camera_of_an_undecodable_frame(tmp_path):
    from motus_ros.data.convert import ConvertConfig, convert

    write_compressed_bag(tmp_path / "bags" / "ep_bad", corrupt_at=12)   # frame step 12 is used
    logs = []
    report = convert([tmp_path / "bags" / "ep_bad"], tmp_path / "out", ConvertConfig(),
                     progress=False, log=logs.append)
    assert not report.episodes and len(report.failures) == 1
    problem = report.failures[0][1]
    assert "camera left_wrist" in problem and "/camera_left_wrist/color/image_raw/compressed" in problem
    assert "CompressedImage.data" in problem


# ------------------------------------------------------------------------------------------------
# camera node and sim node: image_transport raw | compressed | both
def write_scene_video(path: Path, n: int = 6, size=(128, 96)) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.ascontiguousarray(scene(size[1], size[0], k)[:, :, ::-1]))
    writer.release()
    return path


def _by_stamp(msgs) -> dict:
    return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in msgs}


@pytest.mark.ros
def test_camera_node_both_publishes_image_and_jpeg_of_the_same_frame(ros, tmp_path):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage, Image

    from motus_ros.nodes.camera_node import CameraNode
    from motus_ros.ros.images import compressed_to_numpy, image_to_numpy
    from motus_ros.ros.qos import image_qos
    from ros_harness import wait_until

    path = write_scene_video(tmp_path / "scene.avi")
    raw = ros.collect(Image, "/camera_high/color/image_raw", image_qos())
    jpeg = ros.collect(CompressedImage, "/camera_high/color/image_raw/compressed", image_qos())
    values = {"cameras": ["high"], "backend": "opencv", "width": 128, "height": 96, "fps": 50.0,
              "high.source": str(path), "image_transport": "both", "jpeg_quality": 90}
    node = ros.add(CameraNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    try:
        def paired():
            return set(_by_stamp(raw.messages)) & set(_by_stamp(jpeg.messages))
        wait_until(lambda: len(paired()) >= 3, 20, "3 frames published both raw and compressed")
        images, compressed = _by_stamp(raw.messages), _by_stamp(jpeg.messages)
        for stamp in sorted(paired()):
            r, c = images[stamp], compressed[stamp]
            assert c.format == "rgb8; jpeg compressed bgr8"
            assert c.header.frame_id == r.header.frame_id == "camera_high_color_optical_frame"
            assert psnr(compressed_to_numpy(c), image_to_numpy(r)) >= 35.0
        # jpeg_quality is live (from the next frame); image_transport is read-only
        assert node.set_parameters([Parameter("jpeg_quality", value=20)])[0].successful
        assert node.streams[0].publisher.jpeg_quality == 20
        assert not node.set_parameters([Parameter("jpeg_quality", value=0)])[0].successful
        assert not node.set_parameters([Parameter("image_transport", value="raw")])[0].successful
    finally:
        node.close()


@pytest.mark.ros
def test_camera_node_compressed_only_and_bad_transport(ros, tmp_path):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage

    from motus_ros.nodes.camera_node import GLOBAL_PARAMS, CameraNode
    from motus_ros.params import ParameterError
    from motus_ros.ros.images import compressed_to_numpy
    from motus_ros.ros.qos import image_qos

    path = write_scene_video(tmp_path / "scene.avi")
    jpeg = ros.collect(CompressedImage, "/camera_high/color/image_raw/compressed", image_qos())
    values = {"cameras": ["high"], "backend": "opencv", "width": 128, "height": 96, "fps": 50.0,
              "high.source": str(path), "image_transport": "compressed"}
    node = ros.add(CameraNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    try:
        assert compressed_to_numpy(jpeg.wait_for(1, timeout=20)[0]).shape == (96, 128, 3)
        assert ros.node.count_publishers("/camera_high/color/image_raw") == 0   # no raw publisher
    finally:
        node.close()
    # a bad value fails at start-up naming the parameter (checked on the spec: a node whose
    # constructor raises cannot be destroyed and would stay in the graph for the later tests)
    spec = next(p for p in GLOBAL_PARAMS if p.name == "image_transport")
    with pytest.raises(ParameterError, match=r"parameter 'image_transport': got 'h264', expected "
                                             r"one of \['raw', 'compressed', 'both'\]"):
        spec.validate("h264")


@pytest.mark.ros
def test_sim_node_compressed_cameras(ros):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage, Image

    from motus_ros.hardware.sim_backend import SimArmBackend
    from motus_ros.nodes.sim_node import SimNode
    from motus_ros.ros.images import compressed_to_numpy, image_to_numpy
    from motus_ros.ros.qos import image_qos
    from ros_harness import wait_until

    backend = SimArmBackend(image_height=48, image_width=64, camera_rate_hz=10.0,
                            real_time_factor=5.0, seed=0)
    raw = ros.collect(Image, "/camera_high/color/image_raw", image_qos())
    jpeg = {c: ros.collect(CompressedImage, layout.camera_transport_topic(c, "compressed"), image_qos())
            for c in CAMS}
    try:
        sim = ros.add(SimNode(backend=backend, parameter_overrides=[
            Parameter("image_transport", value="both"), Parameter("jpeg_quality", value=90)]))
        backend.connect()
        for collector in jpeg.values():
            collector.wait_for(1, timeout=60)

        def paired():
            return set(_by_stamp(raw.messages)) & set(_by_stamp(jpeg["high"].messages))
        wait_until(lambda: len(paired()) >= 2, 60, "sim frames published both raw and compressed")
        images, compressed = _by_stamp(raw.messages), _by_stamp(jpeg["high"].messages)
        for stamp in sorted(paired()):
            assert psnr(compressed_to_numpy(compressed[stamp]), image_to_numpy(images[stamp])) >= 30.0
        assert sim.set_parameters([Parameter("jpeg_quality", value=50)])[0].successful
        assert all(pub.jpeg_quality == 50 for pub in sim.cameras.values())
        assert not sim.set_parameters([Parameter("image_transport", value="raw")])[0].successful
    finally:
        backend.close()


@pytest.mark.ros
def test_sim_graph_runs_compressed_sim_cameras_into_a_compressed_policy(ros):
    """The sim graph's data path with image_transport compressed on both ends: the sim publishes
    JPEG only, the policy (simulated time) acts on it."""
    from rclpy.parameter import Parameter

    from motus_msgs.msg import ActionChunk
    from motus_ros.hardware.sim_backend import SimArmBackend
    from motus_ros.nodes.arm_driver_node import ArmDriverNode
    from motus_ros.nodes.sim_node import SimNode

    backend = SimArmBackend(image_height=48, image_width=64, camera_rate_hz=10.0,
                            real_time_factor=2.0, seed=0)
    chunks = ros.collect(ActionChunk, layout.TOPICS["action_chunk"])
    ros.add(SimNode(backend=backend, parameter_overrides=[Parameter("image_transport", value="compressed")]))
    driver = ros.add(ArmDriverNode(backend=backend, parameter_overrides=[
        Parameter("calibration", value="sim"), Parameter("rate_hz", value=50.0),
        Parameter("command_timeout", value=60.0)]))
    policies = []
    try:
        assert ros.node.count_publishers("/camera_high/color/image_raw") == 0
        policy = make_policy(ros, policies, image_transport="compressed", use_sim_time=True,
                             max_observation_age_s=5.0, sync_tolerance_s=0.2)
        chunks.wait_for(1, timeout=120)
        obs = policies[0].observations[0]
        assert {c: obs["images"][c].shape for c in CAMS} == {c: (48, 64, 3) for c in CAMS}
        assert obs["images"]["high"].std() > 5          # a rendered scene, decoded
        policy.close()
    finally:
        driver.close()


# ------------------------------------------------------------------------------------------------
# consumers: policy / world model read either form
def make_policy(ros, policies, **params):
    from rclpy.parameter import Parameter

    from fake_policy import FakePolicy
    from motus_ros.nodes.policy_node import PolicyNode

    def factory(**kwargs):
        policies.append(FakePolicy(**kwargs))
        return policies[-1]
    values = {"tick_rate_hz": 50.0, "diagnostics_period_s": 0.1, "instruction": "pick", **params}
    return ros.add(PolicyNode(policy_factory=factory,
                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))


class CompressedSource:
    """Publishes the three cameras as JPEG on their compressed topics, and the joint state."""

    def __init__(self, ros):
        from sensor_msgs.msg import CompressedImage, JointState

        self.ros = ros
        self.pubs = {c: ros.node.create_publisher(CompressedImage,
                                                  layout.camera_transport_topic(c, "compressed"), 10)
                     for c in CAMS}
        self.state_pub = ros.node.create_publisher(JointState, layout.TOPICS["joint_states"], 10)
        self.images = {c: scene(96, 128, k=20 * i) for i, c in enumerate(CAMS)}
        self.corrupt: str | None = None

    def publish(self) -> None:
        from sensor_msgs.msg import JointState

        from motus_ros.ros.images import numpy_to_compressed

        t = self.ros.node.get_clock().now().to_msg()
        for cam, pub in self.pubs.items():
            msg = numpy_to_compressed(self.images[cam], quality=90, stamp=t)
            if cam == self.corrupt:
                msg.data = b"\xff\xd8 truncated"
            pub.publish(msg)
        state = JointState(name=list(layout.JOINT_NAMES), position=[0.1] * layout.DOF)
        state.header.stamp = t
        self.state_pub.publish(state)


@pytest.mark.ros
def test_policy_node_reads_compressed_cameras_and_skips_an_undecodable_frame(ros):
    from motus_msgs.msg import ActionChunk
    from ros_harness import wait_until

    chunks = ros.collect(ActionChunk, layout.TOPICS["action_chunk"])
    policies = []
    node = make_policy(ros, policies, image_transport="compressed")
    source = CompressedSource(ros)
    try:
        assert node.inputs.image_topics["high"] == "/camera_high/color/image_raw/compressed"
        assert ros.node.count_subscribers("/camera_high/color/image_raw") == 0  # raw not read

        def chunk_after(publish):
            before = len(chunks.messages)

            def arrived():
                publish()
                return len(chunks.messages) > before
            wait_until(arrived, 20, "an ActionChunk from compressed cameras", interval=0.05)
        chunk_after(source.publish)
        obs = policies[0].observations[-1]
        for cam in CAMS:   # decoded to RGB, close to what was encoded
            assert obs["images"][cam].shape == (96, 128, 3)
            assert psnr(obs["images"][cam], source.images[cam]) >= 35.0

        # a corrupt JPEG on one camera: no chunk from it, a reason naming the camera, no crash
        source.corrupt = "left_wrist"
        wait_until(lambda: (source.publish(), "undecodable" in node.last_reason)[1], 20,
                   "the policy to refuse the undecodable frame", interval=0.05)
        assert node.last_reason.startswith("camera left_wrist: undecodable frame on "
                                           "/camera_left_wrist/color/image_raw/compressed")
        assert "CompressedImage.data" in node.last_reason and node.inputs.bad_images >= 1
        n_obs = len(policies[0].observations)
        # good frames again: the node goes on
        source.corrupt = None
        chunk_after(source.publish)
        assert len(policies[0].observations) > n_obs
    finally:
        node.close()


@pytest.mark.ros
def test_model_nodes_image_transport_parameter(ros):
    from rclpy.parameter import Parameter

    from fake_policy import FakePolicy
    from motus_ros.nodes._model_node import INPUT_PARAMS
    from motus_ros.nodes.world_model_node import WorldModelNode
    from motus_ros.params import ParameterError

    wm = ros.add(WorldModelNode(policy_factory=lambda **kw: FakePolicy(**kw), parameter_overrides=[
        Parameter("image_transport", value="compressed"), Parameter("instruction", value="x")]))
    try:
        assert wm.inputs.image_transport == "compressed"
        assert set(wm.inputs.image_topics.values()) == {
            layout.camera_transport_topic(c, "compressed") for c in CAMS}
        refused = wm.set_parameters([Parameter("image_transport", value="raw")])[0]
        assert not refused.successful                                 # read-only
    finally:
        wm.close()
    policies = []
    raw = make_policy(ros, policies)
    try:
        assert raw.params["image_transport"] == "raw"
        assert raw.inputs.image_topics["high"] == layout.camera_image_topic("high")
    finally:
        raw.close()
    spec = next(p for p in INPUT_PARAMS if p.name == "image_transport")   # consumers read one form
    with pytest.raises(ParameterError, match=r"parameter 'image_transport': got 'both', expected "
                                             r"one of \['raw', 'compressed'\]"):
        spec.validate("both")


# ------------------------------------------------------------------------------------------------
# recorder: CompressedImage recorded as received, then converted
@pytest.mark.ros
def test_recorder_stores_the_cameras_jpeg_as_received_and_convert_decodes_it(ros, tmp_path):
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CompressedImage, JointState

    from motus_msgs.srv import StartEpisode, StopEpisode
    from motus_ros.data.convert import ConvertConfig, convert
    from motus_ros.nodes.recorder_node import RecorderNode
    from motus_ros.ros.images import numpy_to_compressed
    from motus_ros.stamps import to_time_msg
    from ros_harness import wait_until

    topics = [f"{layout.camera_image_topic(c)}:sensor_msgs/msg/Image" for c in CAMS] + [
        f"{layout.TOPICS['joint_states']}:sensor_msgs/msg/JointState",
        f"{layout.TOPICS['leader_joint_states']}:sensor_msgs/msg/JointState"]
    params = {"output_dir": str(tmp_path / "episodes"), "topics": topics, "min_free_mb": 0.0,
              "fsync": False, "robot_profile": "sim", "image_transport": "compressed",
              "image_compression": "jpeg"}   # re-encoding applies to raw Images only
    recorder = ros.add(RecorderNode(parameter_overrides=[Parameter(k, value=v)
                                                         for k, v in params.items()]))
    comp_topics = {c: layout.camera_transport_topic(c, "compressed") for c in CAMS}
    assert {s.topic: s.msgtype for s in recorder.specs if s.topic in comp_topics.values()} == {
        t: bag_types.COMPRESSED_IMAGE_TYPE for t in comp_topics.values()}
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success, start.message
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {t: ros.node.create_publisher(CompressedImage, t, qos) for t in comp_topics.values()}
    state_pubs = {t: ros.node.create_publisher(JointState, t, qos)
                  for t in (layout.TOPICS["joint_states"], layout.TOPICS["leader_joint_states"])}
    wait_until(lambda: all(p.get_subscription_count() >= 1
                           for p in [*pubs.values(), *state_pubs.values()]), 10,
               "the recorder to subscribe")
    # 0.6 s of episode, stamped in the (recent) past so that header stamps are usable
    now = ros.node.get_clock().now().nanoseconds * 1e-9
    n, rate = 19, 30.0
    sent = {t: [] for t in pubs}
    for k in range(n):
        stamp = to_time_msg(now - 1.0 + k / rate)
        for i, (cam, topic) in enumerate(comp_topics.items()):
            msg = numpy_to_compressed(scene(48, 64, k=5 * k + i), quality=90, stamp=stamp,
                                      frame_id=cam)
            pubs[topic].publish(msg)
            sent[topic].append(msg)
        for topic, offset in ((layout.TOPICS["joint_states"], 0.0),
                              (layout.TOPICS["leader_joint_states"], 0.2)):
            js = JointState(name=list(layout.JOINT_NAMES), position=[offset + k * 0.01] * layout.DOF)
            js.header.stamp = stamp
            state_pubs[topic].publish(js)
    wait_until(lambda: all(recorder.episode_stats()["received"].get(t, 0) >= n for t in pubs), 20,
               f"the recorder to receive {n} compressed frames per camera")
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert stop.success, stop.message
    with Reader(stop.path) as reader:
        conns = {c.topic: c for c in reader.connections}
        for cam in CAMS:
            assert layout.camera_image_topic(cam) not in conns
            assert conns[comp_topics[cam]].msgtype == bag_types.COMPRESSED_IMAGE_TYPE
        got = {t: [] for t in pubs}
        for conn, _, raw in reader.messages([conns[t] for t in pubs]):
            got[conn.topic].append(bytes(raw))
    # what was published, as published: the same JPEG bytes, format and header (the CDR may
    # differ only in its alignment padding, which the middleware does not initialise)
    assert {t: len(v) for t, v in got.items()} == {t: n for t in pubs}
    for topic in pubs:
        for raw, ref in zip(got[topic], sent[topic]):
            msg = deserialize_message(raw, CompressedImage)
            assert bytes(msg.data) == bytes(ref.data) and msg.format == ref.format
            assert msg.header == ref.header
    meta = json.loads((Path(stop.path) / "episode.json").read_text())
    assert meta["image_transport"] == "compressed"

    # bag -> dataset: the converter decodes the recorded JPEGs
    report = convert([Path(stop.path)], tmp_path / "out", ConvertConfig(val_fraction=0.0),
                     progress=False, log=lambda _: None)
    assert not report.failures, report.failures
    episode = report.episodes[0]
    assert episode.time_source == "header", episode.time_source_reason
    assert len(episode.frame_steps) >= 3
    data = np.load(tmp_path / "out" / "episodes" / Path(stop.path).name / "data.npz")
    assert data["frames"].shape[1:] == (384, 320, 3) and data["frames"].std() > 10
