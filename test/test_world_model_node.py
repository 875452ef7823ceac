"""World-model node (fake policy, test/fake_policy.py) and the pure chaining helpers."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from fake_policy import FakePolicy
from motus_msgs.msg import ActionChunk, InferenceMode, PredictedFuture
from motus_ros.layout import TOPICS
from motus_ros.nodes.messages import action_chunk_msg
from motus_ros.policy.chain import ChainedRollout, segments, split_tiled
from ros_harness import wait_until
from test_policy_node import STATE, ObservationSource


def test_split_tiled_inverts_the_t_tiling():
    from motus_ros.policy.transforms import tile_cameras

    cams = {"high": np.full((480, 640, 3), 10, np.uint8), "left_wrist": np.full((480, 640, 3), 20, np.uint8),
            "right_wrist": np.full((480, 640, 3), 30, np.uint8)}
    tiled = tile_cameras(cams, 384, 320)
    views = split_tiled(tiled)
    assert views["high"].shape == (192, 320, 3) and views["left_wrist"].shape == (192, 160, 3)
    assert views["high"].max() == 10 and views["left_wrist"].max() == 20 and views["right_wrist"].max() == 30
    np.testing.assert_array_equal(tile_cameras(views, 384, 320), tiled)  # feeding back is stable


def test_segments_hold_last_action():
    actions = np.arange(50 * 14, dtype=float).reshape(50, 14)
    parts = segments(actions, 2)
    assert [p.shape for p in parts] == [(48, 14), (48, 14)]
    np.testing.assert_array_equal(parts[1][1], actions[49])
    np.testing.assert_array_equal(parts[1][-1], actions[49])
    with pytest.raises(ValueError, match=r"expected \(N>0, 14\)"):
        segments(np.zeros((3, 7)), 1)


def test_chained_rollout_feeds_back_state_and_frames():
    policy = FakePolicy(mode="wm", frame_size=(384, 320))
    chained = ChainedRollout(policy, chain=3)
    images = {c: np.zeros((48, 64, 3), np.uint8) for c in ("high", "left_wrist", "right_wrist")}
    actions = np.tile(np.linspace(0, 1, 96)[:, None], (1, 14))
    out = chained.infer({"images": images, "state": np.zeros(14), "actions": actions,
                         "instruction": "x"})
    assert out["frames"].shape == (24, 384, 320, 3) and out["actions"] is None
    seen = policy.observations
    assert len(seen) == 3 and all(o["mode"] == "wm" for o in seen)
    np.testing.assert_allclose(seen[1]["state"], actions[47])
    assert seen[1]["images"]["high"].shape == (192, 320, 3)  # fed back from the tiled frame
    assert seen[2]["images"]["high"][0, 0, 0] == 2  # the second rollout's frames (counter 2)


def make_node(ros, **params):
    from motus_ros.nodes.world_model_node import WorldModelNode

    policies = []

    def factory(**kwargs):
        policies.append(FakePolicy(**kwargs))
        return policies[-1]
    overrides = [Parameter(k, value=v) for k, v in {"tick_rate_hz": 50.0, "instruction": "pick", **params}.items()]
    return ros.add(WorldModelNode(policy_factory=factory, parameter_overrides=overrides)), policies


@pytest.mark.ros
def test_world_model_imagines_a_chunk_and_never_commands(ros):
    futures = ros.collect(PredictedFuture, "/motus/wm/predicted_future")
    images = ros.collect(Image, "/motus/wm/predicted_future/image")
    strips = ros.collect(Image, "/motus/wm/predicted_future/strip")
    node, policies = make_node(ros, chain=2, action_topic="/user/chunk")
    source = ObservationSource(ros)
    chunk_pub = ros.node.create_publisher(ActionChunk, "/user/chunk", 10)

    def imagined():
        stamp = source.now()
        source.publish(stamp)
        actions = STATE[None, :] + np.zeros((48, 14))
        chunk_pub.publish(action_chunk_msg(actions, stamp, "vla", 7, 1 / 30, 0.0))
        return bool(futures.messages)
    wait_until(imagined, 15, "a PredictedFuture on /motus/wm/predicted_future", interval=0.05)
    future = futures.messages[0]
    assert future.chunk_id == 7 and future.mode.mode == InferenceMode.WM
    assert len(future.frames) == 16 and future.frame_period == pytest.approx(0.2)  # 2 x 8 frames
    obs = policies[0].observations[0]
    assert obs["mode"] == "wm" and obs["actions"].shape == (48, 14)
    np.testing.assert_allclose(obs["state"], STATE)
    assert images.wait_for(1)[0].height == 32 and strips.wait_for(1)[0].width == 16 * 48

    topics = {name for name, _ in ros.node.get_publisher_names_and_types_by_node("world_model", "/")}
    assert TOPICS["joint_command"] not in topics and TOPICS["action_chunk"] not in topics
    assert not any("command" in t for t in topics)
    assert {"/motus/wm/predicted_future", "/motus/wm/predicted_future/image"} <= topics
    node.close()


@pytest.mark.ros
@pytest.mark.skipif(__import__("importlib").util.find_spec("motus_ros.policy.runtime") is None,
                    reason="motus_ros/policy/runtime.py not written yet")
def test_real_tiny_preset_imagines_frames(ros):
    from motus_ros.nodes.world_model_node import WorldModelNode

    futures = ros.collect(PredictedFuture, "/motus/wm/predicted_future")
    node = ros.add(WorldModelNode(parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("steps", value=1), Parameter("chain", value=2),
        Parameter("instruction", value="transfer the cube"), Parameter("tick_rate_hz", value=20.0)]))
    source = ObservationSource(ros, size=(48, 64))
    chunk_pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)

    def imagined():
        stamp = source.now()
        source.publish(stamp)
        chunk_pub.publish(action_chunk_msg(np.zeros((48, 14)) + STATE, stamp, "vla", 3, 1 / 30, 0.0))
        return bool(futures.messages)
    wait_until(imagined, 120, "a PredictedFuture from the tiny preset", interval=0.2)
    future = futures.messages[0]
    assert future.chunk_id == 3 and len(future.frames) > 0 and len(future.frames) % 2 == 0
    assert future.frames[0].encoding == "rgb8" and future.frames[0].height > 0
    node.close()


def publish_chunk_and_state(source, chunk_pub, chunk_id=7):
    stamp = source.now()
    source.publish(stamp)
    chunk_pub.publish(action_chunk_msg(STATE[None, :] + np.zeros((48, 14)), stamp, "vla", chunk_id,
                                       1 / 30, 0.0))


@pytest.mark.ros
def test_world_model_lifecycle_transitions(ros):
    from motus_ros.graph.lifecycle import change_state, get_state

    futures = ros.collect(PredictedFuture, "/motus/wm/predicted_future")
    node, policies = make_node(ros, autostart=False, action_topic="/user/chunk")
    source = ObservationSource(ros)
    chunk_pub = ros.node.create_publisher(ActionChunk, "/user/chunk", 10)
    spin = lambda future, timeout_s: wait_until(future.done, timeout_s, "a lifecycle reply")  # noqa: E731
    assert get_state(ros.node, "world_model", spin=spin) == "unconfigured" and policies == []
    assert change_state(ros.node, "world_model", "configure", spin=spin) == "inactive"
    assert len(policies) == 1
    for i in range(5):
        publish_chunk_and_state(source, chunk_pub, i)
    assert node.worker.wait_idle(5.0) and policies[0].observations == []   # loaded, not imagining
    assert change_state(ros.node, "world_model", "activate", spin=spin) == "active"
    wait_until(lambda: publish_chunk_and_state(source, chunk_pub) or futures.messages, 15,
               "a PredictedFuture once active", interval=0.05)
    assert change_state(ros.node, "world_model", "deactivate", spin=spin) == "inactive"
    assert node.worker.wait_idle(5.0)
    seen = len(policies[0].observations)
    for i in range(5):
        publish_chunk_and_state(source, chunk_pub, i)
    assert node.worker.wait_idle(5.0) and len(policies[0].observations) == seen   # stopped
    assert change_state(ros.node, "world_model", "cleanup", spin=spin) == "unconfigured"
    assert node.worker is None
    assert change_state(ros.node, "world_model", "configure", spin=spin) == "inactive"
    assert change_state(ros.node, "world_model", "activate", spin=spin) == "active"
    wait_until(lambda: publish_chunk_and_state(source, chunk_pub) or policies[1].observations, 15,
               "a rollout after reconfiguring", interval=0.05)
    node.close()


@pytest.mark.ros
def test_world_model_live_chain_applies_and_action_topic_is_read_only(ros):
    futures = ros.collect(PredictedFuture, "/motus/wm/predicted_future")
    node, policies = make_node(ros, chain=1, action_topic="/user/chunk")
    source = ObservationSource(ros)
    chunk_pub = ros.node.create_publisher(ActionChunk, "/user/chunk", 10)
    wait_until(lambda: publish_chunk_and_state(source, chunk_pub) or futures.messages, 15,
               "a first PredictedFuture", interval=0.05)
    assert len(futures.messages[0].frames) == 8
    assert node.set_parameters([Parameter("chain", value=3)])[0].successful
    wait_until(lambda: publish_chunk_and_state(source, chunk_pub)
               or any(len(f.frames) == 24 for f in futures.messages), 15,
               "a 3-rollout PredictedFuture", interval=0.05)
    assert not node.set_parameters([Parameter("chain", value=17)])[0].successful    # > max 16
    refused = node.set_parameters([Parameter("action_topic", value="/other")])[0]
    assert not refused.successful and node.get_parameter("action_topic").value == "/user/chunk"
    node.close()


@pytest.mark.ros
def test_world_model_compares_each_prediction_with_the_frames_that_came(ros):
    from diagnostic_msgs.msg import DiagnosticArray

    from motus_ros.layout import CAMERAS
    from motus_ros.nodes.messages import PREDICTION_QOS
    from motus_ros.ros.images import image_to_numpy, numpy_to_image
    from motus_ros.stamps import to_seconds, to_time_msg
    from motus_ros.training.evaluation import psnr
    from motus_ros.viz.prediction_check import comparison_image, model_frame
    from ros_harness import wait_for_status

    futures = ros.collect(PredictedFuture, "/motus/wm/predicted_future")
    comparisons = ros.collect(Image, TOPICS["wm_comparison"], PREDICTION_QOS)
    diagnostics = ros.collect(DiagnosticArray, "/diagnostics")
    # 50 Hz frames: the prediction covers s0 + 0.02 .. s0 + 0.16 s. Generous waits: discovery on a
    # busy machine must not age the observation or drop the prediction before the frames come.
    node, policies = make_node(ros, action_topic="/user/chunk", video_rate_hz=50.0,
                               diagnostics_period_s=0.1, max_observation_age_s=60.0,
                               comparison_max_wait_s=60.0)
    source = ObservationSource(ros)          # cameras 24x32, filled with 0, 50, 100
    chunk_pub = ros.node.create_publisher(ActionChunk, "/user/chunk", 10)
    s0 = source.now()

    def imagined():
        source.publish(s0)
        chunk_pub.publish(action_chunk_msg(STATE[None, :] + np.zeros((48, 14)), s0, "vla", 7,
                                           1 / 30, 0.0))
        return bool(futures.messages)
    wait_until(imagined, 15, "a PredictedFuture on /motus/wm/predicted_future", interval=0.05)
    assert comparisons.messages == []          # nothing to compare with yet

    # The real frames for the predicted times arrive afterwards, each camera a new value per frame.
    def cams_at(k):
        return {c: np.full((24, 32, 3), 20 * k + 5 * i, np.uint8) for i, c in enumerate(CAMERAS)}
    def arrived(t):
        newest = {c: -age for c, age in node.inputs.sync.ages(0.0).items()}   # age at 0 s: -stamp
        return all(abs(newest[c] - t) < 1e-6 for c in CAMERAS)
    for k in range(1, 9):
        t = s0 + 0.02 * k
        for cam, image in cams_at(k).items():
            source.image_pubs[cam].publish(numpy_to_image(image, stamp=to_time_msg(t)))
        # One frame at a time, so a shallow image queue drops none of them.
        wait_until(lambda: arrived(t), 5, f"the camera frames at s0 + {0.02 * k:.2f} s")

    got = comparisons.wait_for(1, timeout=10)[0]
    assert to_seconds(got.header.stamp) == pytest.approx(s0, abs=1e-6)   # the observation's time
    image = image_to_numpy(got)
    real = np.stack([model_frame(cams_at(k), 32, 48) for k in range(1, 9)])
    value = int(image[-1, 0, 0])         # fake predictions are uniform: the chunk counter
    assert any(f.frames[0].data[0] == value for f in futures.messages)
    np.testing.assert_array_equal(image, comparison_image(real, np.full_like(real, value)))

    _, message, values = wait_for_status(diagnostics, "world_model_node",
                                         lambda level, m, v: "psnr_last_db" in v)
    assert int(values["compared_predictions"]) >= 1 and "PSNR" in message
    condition = model_frame({c: np.full((24, 32, 3), 50 * i, np.uint8)
                             for i, c in enumerate(CAMERAS)}, 32, 48)
    copy_db = np.mean([psnr(condition, r) for r in real])
    assert float(values["copy_psnr_last_db"]) == pytest.approx(copy_db, rel=1e-4)
    seen = {int(f.frames[0].data[0]) for f in futures.messages}
    candidates = [np.mean([psnr(np.full_like(r, v), r) for r in real]) for v in seen]
    assert any(float(values["psnr_last_db"]) == pytest.approx(c, rel=1e-4) for c in candidates)
    assert len(values["psnr_by_frame_db"].split()) == 8
    node.close()
