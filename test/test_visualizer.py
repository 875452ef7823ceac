"""Forward kinematics sanity, markers from chunks, the joint plot, and the RViz config's topics."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from motus_ros.layout import CAMERAS, JOINT_NAMES, TOPICS, camera_image_topic, camera_info_topic
from motus_ros.paths import config_dir
from motus_ros.viz.kinematics import ArxX5Kinematics, make_kinematics
from motus_ros.viz.rviz import rviz_topics
from ros_harness import wait_until


def test_sim_fk_matches_the_scene_geometry():
    # gym_aloha vx300s_left.xml at zero joints: base (-0.469, 0.5, 0) + shoulder z 0.079 + upper
    # arm z 0.04805 + forearm (0.05955, 0, 0.3) + 0.2 + 0.1 + gripper 0.069744 + site 0.15 along x.
    fk = make_kinematics("sim")
    p = fk.gripper_positions(np.zeros(14))[0]
    np.testing.assert_allclose(p[0], [-0.469 + 0.05955 + 0.2 + 0.1 + 0.069744 + 0.15, 0.5,
                                      0.079 + 0.04805 + 0.3], atol=1e-6)
    np.testing.assert_allclose(p[1], [-p[0][0], 0.5, p[0][2]], atol=1e-4)  # right arm mirrored
    q = np.zeros(14)
    q[0] = np.pi / 2  # waist +90 deg turns the left gripper from +x towards +y about its base
    turned = fk.gripper_positions(q)[0, 0]
    np.testing.assert_allclose(turned[:2], [-0.469, 0.5 + (p[0][0] + 0.469)], atol=1e-5)


def test_piper_fk_zero_pose_is_the_sdk_home_position():
    # piper_sdk C_PiperForwardKinematics(dh_is_offset=1).init_pos = [56.128, 0, 213.266] mm
    fk = make_kinematics("agilex_aloha2", {"left": (0, 0, 0), "right": (1, 0, 0)})
    p = fk.gripper_positions(np.zeros(14))[0]
    np.testing.assert_allclose(p[0], [0.056128, 0.0, 0.213266], atol=1e-5)
    np.testing.assert_allclose(p[1], [1.056128, 0.0, 0.213266], atol=1e-5)


def test_arx_x5_fk_zero_pose_and_base_yaw():
    # URDF chain at zero: x = 0.02 - 0.264 + 0.245 + 0.06775 + 0.02895 + 0.145,
    # z = 0.0605 + 0.04 + 0.056 + 0.0865 - 0.0865 (joint3 flips z), y = -0.0005 (joint5 offset)
    fk = ArxX5Kinematics({"left": (0, 0, 0), "right": (0, 0, 0)})
    zero = fk.arm_point("left", np.zeros(6))
    np.testing.assert_allclose(zero, [0.2427, -0.0005, 0.1565], atol=1e-4)
    yawed = fk.arm_point("left", np.array([np.pi / 2, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(yawed, [0.0005, 0.2427, 0.1565], atol=1e-4)


def test_unknown_robot_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        make_kinematics("ur5")


def graph_topics() -> set[str]:
    """Topics the graph publishes: motus_ros.layout plus this issue's nodes (lead: wire to the
    graph description)."""
    from motus_ros.nodes.policy_node import PREDICTED_IMAGE_TOPIC
    from motus_ros.nodes.visualizer_node import PLOT_TOPIC
    from motus_ros.nodes.world_model_node import WM_IMAGE_TOPIC, WM_STRIP_TOPIC

    topics = set(TOPICS.values())
    topics |= {camera_image_topic(c) for c in CAMERAS} | {camera_info_topic(c) for c in CAMERAS}
    return topics | {PREDICTED_IMAGE_TOPIC, PLOT_TOPIC, WM_IMAGE_TOPIC, WM_STRIP_TOPIC}


def test_every_rviz_topic_is_published_by_the_graph():
    shown = rviz_topics(config_dir() / "motus.rviz")
    assert {"/motus/markers", camera_image_topic("high"), "/motus/wm/predicted_future/image"} <= shown
    assert shown - graph_topics() == set()


def test_rviz_topics_reads_both_topic_forms(tmp_path):
    path = tmp_path / "a.rviz"
    path.write_text("Visualization Manager:\n  Displays:\n    - Topic: /a\n"
                    "    - Topic:\n        Value: /b\n    - Topic: ''\n")
    assert rviz_topics(path) == {"/a", "/b"}


def marker_graph(ros, robot):
    """A visualizer for `robot` (markers at 20 Hz, no plot), a collector of its markers and a
    publisher of action chunks."""
    from motus_msgs.msg import ActionChunk
    from motus_ros.nodes.visualizer_node import VisualizerNode

    markers = ros.collect(MarkerArray, "/motus/markers")
    node = ros.add(VisualizerNode(parameter_overrides=[
        Parameter("robot", value=robot), Parameter("marker_rate_hz", value=20.0),
        Parameter("plot_rate_hz", value=0.0)]))
    return node, markers, ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)


@pytest.mark.ros
def test_markers_follow_the_chunk_and_the_joint_states(ros):
    from motus_ros.nodes.messages import action_chunk_msg

    node, markers, chunk_pub = marker_graph(ros, "sim")
    state_pub = ros.node.create_publisher(JointState, TOPICS["joint_states"], 10)
    actions = np.zeros((48, 14))
    actions[:, 0] = np.linspace(0, np.pi / 2, 48)  # left waist sweeps a quarter turn

    def full(arr):
        ns = {(m.ns, m.id) for m in arr.markers}
        return {("predicted_path", 0), ("executed_path", 0), ("gripper", 1)} <= ns

    def published():
        t = ros.node.get_clock().now()
        chunk_pub.publish(action_chunk_msg(actions, t.nanoseconds * 1e-9, "vla", 1, 1 / 30, 0.0))
        state = JointState(name=list(JOINT_NAMES), position=[0.0] * 14)
        state.header.stamp = t.to_msg()
        state_pub.publish(state)
        return any(full(a) for a in markers.messages)
    wait_until(published, 10, "predicted and executed path markers", interval=0.05)
    array = [a for a in markers.messages if full(a)][-1]
    left = [m for m in array.markers if (m.ns, m.id) == ("predicted_path", 0)][0]
    assert len(left.points) == 48 and left.header.frame_id == "world"
    expected = make_kinematics("sim").gripper_positions(actions[[0, -1]])
    assert (left.points[0].x, left.points[0].y) == pytest.approx(tuple(expected[0, 0, :2]), abs=1e-6)
    assert (left.points[-1].x, left.points[-1].y) == pytest.approx(tuple(expected[1, 0, :2]), abs=1e-6)

    image = node.plot_image()
    assert image.dtype == np.uint8 and image.shape == (400, 960, 3) and image.std() > 0


def test_snapshot_composes_a_png(tmp_path):
    from motus_ros.commands.snapshot import compose_snapshot

    cams = {"high": np.full((48, 64, 3), 200, np.uint8), "left_wrist": np.zeros((48, 64, 3), np.uint8)}
    future = np.random.default_rng(0).integers(0, 255, (8, 32, 40, 3), dtype=np.uint8)
    t = np.arange(10) * 0.1
    out = compose_snapshot(tmp_path / "s.png", cams, future, "world model",
                           (t, np.ones((10, 14))), (t - 1.0, np.zeros((10, 14))))
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[:2] == (880, 1280)


def test_snapshot_without_a_graph_fails_clearly(tmp_path, capsys, monkeypatch):
    from motus_ros.commands.snapshot import main

    monkeypatch.setenv("ROS_DOMAIN_ID", "199")  # an empty domain: nothing publishes here
    assert main(["--out", str(tmp_path / "s.png"), "--duration", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "nothing arrived within 0.3 s" in err and "/camera_high/color/image_raw" in err
    assert not (tmp_path / "s.png").exists()


@pytest.mark.ros
def test_live_parameters_apply_and_robot_is_read_only(ros):
    from motus_ros.nodes.messages import action_chunk_msg

    node, markers, chunk_pub = marker_graph(ros, "agilex_aloha2")

    def predicted(arr):
        return [m for m in arr.markers if (m.ns, m.id) == ("predicted_path", 0)]

    def left_path(predicate):
        def shown():
            t = ros.node.get_clock().now().nanoseconds * 1e-9
            chunk_pub.publish(action_chunk_msg(np.zeros((48, 14)), t, "vla", 1, 1 / 30, 0.0))
            return any(predicted(a) and predicate(predicted(a)[0]) for a in markers.messages)
        wait_until(shown, 10, "a predicted path marker", interval=0.05)
        return [predicted(a)[0] for a in markers.messages if predicted(a) and predicate(predicted(a)[0])][-1]

    before = left_path(lambda m: True)
    assert node.set_parameters([Parameter("left_base_xyz", value=[0.0, 0.3, 0.5]),
                                Parameter("line_width", value=0.02),
                                Parameter("frame_id", value="table")])[0].successful
    after = left_path(lambda m: m.header.frame_id == "table")
    assert after.scale.x == pytest.approx(0.02)
    assert after.points[0].z == pytest.approx(before.points[0].z + 0.5, abs=1e-9)  # base moved up
    bad = node.set_parameters([Parameter("right_base_xyz", value=[0.0, 0.1])])[0]
    assert not bad.successful and "right_base_xyz" in bad.reason and "[x, y, z]" in bad.reason
    assert not node.set_parameters([Parameter("robot", value="sim")])[0].successful
    assert node.get_parameter("robot").value == "agilex_aloha2"
