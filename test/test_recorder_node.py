"""Recorder node: an episode from in-process publishers, read back with rosbags and with mcap."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import wait_until

from motus_ros import layout
from motus_ros.ros.images import numpy_to_image

ROOT = Path(__file__).resolve().parent.parent
N = 12  # messages per topic
CAMS = [layout.camera_image_topic(c) for c in layout.CAMERAS]
QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _topics_param(extra=()):
    return [*(f"{t}:sensor_msgs/msg/Image" for t in CAMS),
            "/puppet/joint_states:sensor_msgs/msg/JointState",
            "/master/joint_states:sensor_msgs/msg/JointState",
            "/motus/action_chunk:motus_msgs/msg/ActionChunk",
            "/motus/instruction:std_msgs/msg/String", *extra]


def make_recorder(tmp_path, **overrides):
    from rclpy.parameter import Parameter

    from motus_ros.nodes.recorder_node import RecorderNode
    params = {"output_dir": str(tmp_path / "episodes"), "topics": _topics_param(),
              "min_free_mb": 0.0, "fsync": False, "robot_profile": "sim",
              "disk_check_period_s": 0.05, **overrides}
    free_fn = params.pop("free_space_fn", None)
    return RecorderNode(free_space_fn=free_fn,
                        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _image(i: int, h=48, w=64) -> np.ndarray:
    """A smooth, frame-specific test picture (JPEG keeps smooth images close to the source)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 3 + i * 7, y * 4 + i * 3, (x + y) * 2 + i * 11], axis=-1)
    return (img % 256).astype(np.uint8)


def publish_episode(ros, recorder, n=N):
    """Publish n messages on every topic; returns what was sent, per topic."""
    from motus_msgs.msg import ActionChunk, InferenceMode
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    node = ros.node
    pubs = {t: node.create_publisher(Image, t, QOS) for t in CAMS}
    pubs["/puppet/joint_states"] = node.create_publisher(JointState, "/puppet/joint_states", QOS)
    pubs["/master/joint_states"] = node.create_publisher(JointState, "/master/joint_states", QOS)
    pubs["/motus/action_chunk"] = node.create_publisher(ActionChunk, "/motus/action_chunk", QOS)
    pubs["/motus/instruction"] = node.create_publisher(String, "/motus/instruction", QOS)
    wait_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10,
               "the recorder to subscribe to every topic")
    sent = {t: [] for t in pubs}
    for i in range(n):
        stamp = node.get_clock().now().to_msg()
        for k, t in enumerate(CAMS):
            msg = numpy_to_image(_image(100 * k + i), stamp=stamp, frame_id=t)
            pubs[t].publish(msg)
            sent[t].append(msg)
        for t, offset in (("/puppet/joint_states", 0.0), ("/master/joint_states", 0.5)):
            msg = JointState(name=list(layout.JOINT_NAMES),
                             position=[offset + i * 0.01 + j for j in range(layout.DOF)])
            msg.header.stamp = stamp
            pubs[t].publish(msg)
            sent[t].append(msg)
        chunk = ActionChunk(joint_names=list(layout.JOINT_NAMES), control_period=1 / 30,
                            horizon=2, positions=[float(i + j) for j in range(2 * layout.DOF)],
                            mode=InferenceMode(mode=InferenceMode.JOINT), chunk_id=i,
                            inference_latency=0.1 * i)
        chunk.header.stamp = stamp
        pubs["/motus/action_chunk"].publish(chunk)
        sent["/motus/action_chunk"].append(chunk)
        msg = String(data=f"pick the cube {i}")
        pubs["/motus/instruction"].publish(msg)
        sent["/motus/instruction"].append(msg)
    wait_until(lambda: all(recorder.episode_stats()["received"].get(t, 0) >= n for t in sent), 20,
               f"the recorder to receive {n} messages per topic")
    return sent, pubs


@pytest.mark.ros
def test_episode_roundtrip_rosbags_and_mcap(ros, tmp_path):
    from mcap_ros2.reader import read_ros2_messages
    from motus_msgs.srv import StartEpisode, StopEpisode
    from rosbags.rosbag2 import Reader

    from motus_ros.data import types as bag_types

    recorder = ros.add(make_recorder(tmp_path))
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"],
                     StartEpisode.Request(task="transfer the cube", operator_name="alice"))
    assert start.success, start.message
    again = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="x"))
    assert not again.success and "already recording" in again.message

    sent, pubs = publish_episode(ros, recorder)
    graph_hash = {t: str(ros.node.get_publishers_info_by_topic(t)[0].topic_type_hash) for t in sent}
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert stop.success, stop.message
    bag = tmp_path / "episodes" / start.episode_id
    assert stop.path == str(bag)
    assert (bag / "metadata.yaml").is_file()

    # rosbags: topics, counts, type hashes equal to rosidl's (as seen in the graph), contents
    store = bag_types.typestore()
    with Reader(bag) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert set(conns) == set(sent)
        for topic, conn in conns.items():
            assert conn.msgcount == N, topic
            assert conn.digest == graph_hash[topic], topic
        got = {t: [] for t in sent}
        for conn, _, raw in reader.messages():
            got[conn.topic].append(store.deserialize_cdr(raw, conn.msgtype))
    for k, topic in enumerate(CAMS):
        for i, msg in enumerate(got[topic]):
            assert (msg.height, msg.width, msg.encoding) == (48, 64, "rgb8")
            np.testing.assert_array_equal(np.asarray(msg.data).reshape(48, 64, 3), _image(100 * k + i))
    for topic in ("/puppet/joint_states", "/master/joint_states"):
        for msg, ref in zip(got[topic], sent[topic]):
            assert list(msg.name) == list(layout.JOINT_NAMES)
            np.testing.assert_allclose(msg.position, ref.position)
    for msg, ref in zip(got["/motus/action_chunk"], sent["/motus/action_chunk"]):
        assert msg.chunk_id == ref.chunk_id and msg.horizon == 2 and msg.mode.mode == 4
        np.testing.assert_allclose(msg.positions, ref.positions)
        assert msg.inference_latency == pytest.approx(ref.inference_latency)
    assert [m.data for m in got["/motus/instruction"]] == [m.data for m in sent["/motus/instruction"]]

    # independent reader: mcap + mcap_ros2 decode from the schemas stored in the file
    mcap_file = bag / f"{start.episode_id}_0.mcap"  # rosbag2 naming: split file 0
    by_topic = {t: [] for t in sent}
    for item in read_ros2_messages(str(mcap_file)):
        by_topic[item.channel.topic].append(item.ros_msg)
    assert {t: len(v) for t, v in by_topic.items()} == {t: N for t in sent}
    chunks = by_topic["/motus/action_chunk"]
    assert [c.chunk_id for c in chunks] == list(range(N))
    assert list(chunks[3].positions) == [float(3 + j) for j in range(2 * layout.DOF)]
    assert chunks[3].mode.mode == 4
    np.testing.assert_allclose(by_topic["/master/joint_states"][5].position,
                               sent["/master/joint_states"][5].position)
    assert bytes(by_topic[CAMS[1]][2].data) == _image(102).tobytes()

    meta = json.loads((bag / "episode.json").read_text())
    assert meta["status"] == "complete" and meta["task"] == "transfer the cube"
    assert meta["operator"] == "alice" and meta["robot_profile"] == "sim"
    assert meta["message_counts"] == {t: N for t in sent}
    assert meta["end_time_unix"] >= meta["start_time_unix"]
    assert meta["dropped"] == {}


@pytest.mark.ros
def test_jpeg_compression_and_calibration_hash(ros, tmp_path):
    from motus_msgs.srv import StartEpisode, StopEpisode
    from rosbags.rosbag2 import Reader

    from motus_ros.data import image_codec
    from motus_ros.data import types as bag_types
    from motus_ros.data.episode import file_sha256

    calib = tmp_path / "calib.yaml"
    calib.write_text("gripper_open: 0.07\n")
    recorder = ros.add(make_recorder(tmp_path, image_compression="jpeg", jpeg_quality=95,
                                     calibration_files=[str(calib)]))
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success, start.message
    sent, _ = publish_episode(ros, recorder, n=4)
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert stop.success
    store = bag_types.typestore()
    with Reader(stop.path) as reader:
        conns = {c.topic: c for c in reader.connections}
        topic = image_codec.compressed_topic(CAMS[0])
        assert CAMS[0] not in conns and conns[topic].msgtype == "sensor_msgs/msg/CompressedImage"
        frames = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages([conns[topic]])]
    assert len(frames) == 4 and frames[0].format == "rgb8; jpeg compressed bgr8"
    decoded = image_codec.decode_compressed(frames[1])
    assert decoded.shape == (48, 64, 3)
    err = np.abs(decoded.astype(int) - _image(1).astype(int)).mean()  # JPEG is lossy
    assert err < 4.0, err
    meta = json.loads((Path(stop.path) / "episode.json").read_text())
    assert meta["calibration"] == [{"path": str(calib), "sha256": file_sha256(calib)}]


def test_bad_topic_parameter_names_it(ros_context, tmp_path):
    from motus_ros.params import ParameterError
    with pytest.raises(ParameterError, match="topics"):
        make_recorder(tmp_path, topics=["no_slash:sensor_msgs/msg/Image"])
    with pytest.raises(ParameterError, match="topics.*nope_msgs"):
        make_recorder(tmp_path, topics=["/x:nope_msgs/msg/Thing"])


@pytest.mark.parametrize("robot", ["sim", "agilex_aloha2", "ac_one"])
def test_parameter_files_load(ros_context, tmp_path, robot):
    from rclpy.parameter import Parameter

    from motus_ros.graph.spec import load_graph
    from motus_ros.nodes.recorder_node import RecorderNode
    values = load_graph(robot).node_parameters("recorder")   # what the robot's graph starts it with
    overrides = [Parameter(k, value=v) for k, v in values.items() if k != "output_dir"]
    node = RecorderNode(parameter_overrides=[*overrides,
                                             Parameter("output_dir", value=str(tmp_path))])
    try:
        assert node.p["robot_profile"] == robot
        assert "/master/joint_states" in {s.topic for s in node.specs}
    finally:
        node.destroy_node()



@pytest.mark.ros
def test_best_effort_publisher_appearing_later_is_recorded(ros, tmp_path):
    """Cameras publish with sensor-data (best-effort) QoS; the recorder started first must adapt."""
    from motus_msgs.srv import StartEpisode, StopEpisode
    from rclpy.qos import qos_profile_sensor_data
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image

    recorder = ros.add(make_recorder(tmp_path, topics=[f"{CAMS[0]}:sensor_msgs/msg/Image"],
                                     discover_period_s=0.05))
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success
    pub = ros.node.create_publisher(Image, CAMS[0], qos_profile_sensor_data)
    wait_until(lambda: pub.get_subscription_count() >= 1, 10,
               "the recorder to re-subscribe with best-effort QoS")
    received = lambda: recorder.episode_stats()["received"].get(CAMS[0], 0)  # noqa: E731
    for k in range(1, 6):  # one at a time: nothing is queued in a best-effort writer
        pub.publish(numpy_to_image(_image(k)))
        wait_until(lambda: received() >= k, 10, f"image {k} through the best-effort subscription")
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    with Reader(stop.path) as reader:
        assert next(c for c in reader.connections if c.topic == CAMS[0]).msgcount == 5
