"""Recorder with max_bag_duration_s: a SIGKILLed recorder leaves closed files that any MCAP reader
opens without repair, and only the open file for `bag repair`; metadata.yaml carries the
publishers' offered_qos_profiles; messages across split files equal what was published."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import wait_until
from ruamel.yaml import YAML
from test_recorder_crash import _recorded_publishers, _scan_counts, _start_recorder
from test_recorder_node import make_recorder

from motus_ros import layout

ROOT = Path(__file__).resolve().parent.parent


def _metadata(bag: Path) -> dict:
    return YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _qos_by_topic(info: dict) -> dict[str, list[tuple[str, str]]]:
    return {t["topic_metadata"]["name"]: [(q["reliability"], q["durability"])
                                          for q in t["topic_metadata"]["offered_qos_profiles"]]
            for t in info["topics_with_message_count"]}


def _mcap_messages(path: Path) -> list[tuple[str, object]]:
    """(topic, decoded message) of one file with the independent mcap + mcap_ros2 readers."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    with path.open("rb") as f:
        return [(channel.topic, msg) for _, channel, _, msg
                in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]


@pytest.mark.ros
def test_sigkill_after_splits_closed_files_read_without_repair(ros, tmp_path):
    from rosbags.rosbag2 import Reader

    from motus_ros.data import types as bag_types
    from motus_ros.data.bag_repair import bag_files, has_footer, needs_repair, recover_episode

    out = tmp_path / "episodes"
    # qos_depth: the subscription's history, as deep as the publishers' (see _recorded_publishers)
    proc = _start_recorder(out, "max_bag_duration_s:=0.3", "qos_depth:=5000")
    sent = 0
    try:
        publish = _recorded_publishers(ros, out)
        # Warm up until both topics reach the disk: the publisher may see the match before the
        # recorder's reader has matched it, and DDS drops what is sent in between. Counts below
        # are then taken above this baseline (a late warm-up message only adds to them).
        warm = 10**6      # warm-up ids, apart from the counted ones
        while min(_scan_counts(out).get(t, 0) for t in ("/puppet/joint_states", "/motus/action_chunk")) < 1:
            assert warm < 10**6 + 600, "nothing reached the recorder's bag within 30 s"
            publish(warm)
            warm += 1
            time.sleep(0.05)
        baseline = min(_scan_counts(out).values())
        deadline = time.monotonic() + 30
        while len(list(out.glob("*/*.mcap"))) < 4:  # at least 3 closed files and the open one
            assert time.monotonic() < deadline, "the recorder did not split its bag"
            publish(sent)
            sent += 1
            time.sleep(0.01)
        flushed = sent - 10
        wait_until(lambda: min(_scan_counts(out).values() or [0]) - baseline >= flushed, 20,
                   f"{flushed} flushed messages per topic")
        for _ in range(20):  # in flight or in the unflushed chunk when killed
            publish(sent)
            sent += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    bag = next(out.iterdir())
    files = bag_files(bag)
    closed = [f for f in files if has_footer(f)]
    assert len(closed) >= 3 and closed == files[:-1], [f.name for f in files]
    assert not has_footer(files[-1])  # only the file open at the kill lacks its footer
    assert needs_repair(bag)

    # before any repair: metadata.yaml lists every closed file with its true message count, and
    # every closed file reads and decodes with the independent mcap reader
    info = _metadata(bag)
    assert info["custom_data"]["motus.state"] == "recording"
    listed = {f["path"]: f["message_count"] for f in info["files"]}
    hashes = {}
    for path in closed:
        messages = _mcap_messages(path)
        assert len(messages) == listed[path.name] > 0
        assert all(t in ("/puppet/joint_states", "/motus/action_chunk") for t, _ in messages)
        hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _qos_by_topic(info)["/puppet/joint_states"] == [("reliable", "volatile")]

    report = recover_episode(bag)
    assert report.repaired and report.repaired_files == [files[-1].name]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in closed} == hashes
    assert not needs_repair(bag)
    assert len(_mcap_messages(files[-1])) == sum(report.counts.values()) - sum(listed.values())

    store = bag_types.typestore()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        positions = [store.deserialize_cdr(raw, c.msgtype).position[0]
                     for c, _, raw in reader.messages() if c.topic == "/puppet/joint_states"]
        chunk_ids = [store.deserialize_cdr(raw, c.msgtype).chunk_id
                     for c, _, raw in reader.messages() if c.topic == "/motus/action_chunk"]
    assert counts == report.counts
    # nothing lost or repeated at the splits: an in-order prefix of what was published
    positions = [p for p in positions if p < 10**6]       # the warm-up messages came first
    chunk_ids = [c for c in chunk_ids if c < 10**6]
    assert positions == [float(i) for i in range(len(positions))] and len(positions) >= flushed
    assert chunk_ids == list(range(len(chunk_ids))) and len(chunk_ids) >= flushed
    meta = json.loads((bag / "episode.json").read_text())
    assert meta["status"] == "recovered" and meta["bag"]["files"] == [f.name for f in files]


@pytest.mark.ros
def test_split_episode_counts_and_offered_qos(ros, tmp_path):
    from motus_msgs.msg import ActionChunk
    from motus_msgs.srv import StartEpisode, StopEpisode
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from motus_ros.data.bag_repair import bag_files, has_footer, needs_repair

    topics = ["/puppet/joint_states:sensor_msgs/msg/JointState",
              "/motus/action_chunk:motus_msgs/msg/ActionChunk",
              "/motus/instruction:std_msgs/msg/String"]
    recorder = ros.add(make_recorder(tmp_path, topics=topics, max_bag_duration_s=0.1,
                                     discover_period_s=0.05))
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success, start.message
    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    pubs = {"/puppet/joint_states": ros.node.create_publisher(JointState, "/puppet/joint_states", latched),
            "/motus/action_chunk": ros.node.create_publisher(ActionChunk, "/motus/action_chunk", reliable),
            "/motus/instruction": ros.node.create_publisher(String, "/motus/instruction", best_effort)}
    wait_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10,
               "the recorder to subscribe (best effort after a re-subscription)")
    n = 80
    for i in range(n):  # 100 Hz for 0.8 s: files of at most 0.1 s
        pubs["/puppet/joint_states"].publish(JointState(name=["a"], position=[float(i)]))
        pubs["/motus/action_chunk"].publish(ActionChunk(chunk_id=i, horizon=1))
        pubs["/motus/instruction"].publish(String(data=f"s{i}"))
        time.sleep(0.01)
    received = lambda t: recorder.episode_stats()["received"].get(t, 0)  # noqa: E731
    wait_until(lambda: received("/puppet/joint_states") >= n and received("/motus/action_chunk") >= n,
               20, f"{n} reliable messages per topic")
    time.sleep(0.2)  # stragglers of the best-effort topic
    stats = recorder.episode_stats()
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert stop.success, stop.message
    bag = Path(stop.path)

    files = bag_files(bag)
    assert len(files) >= 3 and all(has_footer(f) for f in files) and not needs_repair(bag)
    per_file = [dict.fromkeys(pubs, 0) for _ in files]
    for k, path in enumerate(files):  # every file on its own, with the independent reader
        for topic, _ in _mcap_messages(path):
            per_file[k][topic] += 1
    total = {t: sum(c[t] for c in per_file) for t in pubs}
    assert total["/puppet/joint_states"] == total["/motus/action_chunk"] == n  # = published
    assert total["/motus/instruction"] == stats["received"]["/motus/instruction"] > 0
    info = _metadata(bag)
    assert [f["path"] for f in info["files"]] == [f.name for f in files]
    assert [f["message_count"] for f in info["files"]] == [sum(c.values()) for c in per_file]
    assert {t["topic_metadata"]["name"]: t["message_count"]
            for t in info["topics_with_message_count"]} == total
    assert "motus.state" not in info["custom_data"]
    assert info["custom_data"]["motus.episode_id"] == start.episode_id
    # offered_qos_profiles: the publishers' QoS, as rosbag2 records them
    assert _qos_by_topic(info) == {"/puppet/joint_states": [("reliable", "transient_local")],
                                   "/motus/action_chunk": [("reliable", "volatile")],
                                   "/motus/instruction": [("best_effort", "volatile")]}
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == total
        ids = [c for c, _, _ in reader.messages() if c.topic == "/motus/action_chunk"]
        assert len(ids) == n
    meta = json.loads((bag / "episode.json").read_text())
    assert meta["message_counts"] == total
    assert meta["bag"]["files"] == [f.name for f in files] and meta["bag"]["splits"] == len(files) - 1
    assert meta["topics"]["/puppet/joint_states"]["offered_qos"][0]["durability"] == "transient_local"


def test_max_bag_duration_parameter_is_documented_and_bounded(ros_context, tmp_path):
    from motus_ros.nodes.recorder_node import PARAMS
    from motus_ros.params import ParameterError

    spec = next(p for p in PARAMS if p.name == "max_bag_duration_s")
    assert spec.default == 60.0 and spec.min == 0.0 and "0 = one file" in spec.description
    with pytest.raises(ParameterError, match="max_bag_duration_s"):
        make_recorder(tmp_path, max_bag_duration_s=-1.0)
