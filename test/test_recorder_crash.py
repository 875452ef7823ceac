"""SIGKILL of a recorder process mid-episode leaves a bag readable up to the last flush."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import wait_until
from ruamel.yaml import YAML

from motus_ros import layout

ROOT = Path(__file__).resolve().parent.parent
FIRST = 40  # messages known flushed before the kill


def _start_recorder(out: Path, *params: str) -> subprocess.Popen:
    """A recorder process; params: extra 'name:=value' ROS parameters."""
    cmd = [sys.executable, "-m", "motus_ros.nodes.recorder_node", "--ros-args",
           "-p", f"output_dir:={out}", "-p", "topics:=['/puppet/joint_states:sensor_msgs/msg/JointState',"
           "'/motus/action_chunk:motus_msgs/msg/ActionChunk']",
           "-p", "autostart_task:=crash test", "-p", "flush_period_s:=0.05", "-p", "min_free_mb:=0.0",
           "-p", "fsync:=false"]
    for param in params:
        cmd += ["-p", param]
    # Output to a file beside the bags, not a pipe nobody reads: a full pipe blocks the node.
    log = open(out.parent / f"recorder_{out.name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)


def _recorded_publishers(ros, out: Path):
    """publish(i): joint state i and chunk i on the two recorded topics, once the recorder
    process under `out` subscribed to both and started its episode."""
    from motus_msgs.msg import ActionChunk
    from sensor_msgs.msg import JointState

    # Deep enough that a recorder process starved for seconds on a loaded machine still gets every
    # message (a reliable keep-last writer overwrites what its reader has not acknowledged).
    qos = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
    js_pub = ros.node.create_publisher(JointState, "/puppet/joint_states", qos)
    ch_pub = ros.node.create_publisher(ActionChunk, "/motus/action_chunk", qos)
    wait_until(lambda: js_pub.get_subscription_count() >= 1 and ch_pub.get_subscription_count() >= 1
               and list(out.glob("*/episode.json")), 30, "the recorder process to subscribe")

    def publish(i):
        js_pub.publish(JointState(name=list(layout.JOINT_NAMES),
                                  position=[i + 0.001 * j for j in range(layout.DOF)]))
        ch_pub.publish(ActionChunk(chunk_id=i, horizon=1, positions=[float(i)] * layout.DOF))
    return publish


def _scan_counts(out: Path) -> dict[str, int]:
    """Messages on disk per topic, over every file of the (only) bag under out."""
    from motus_ros.data.bag_repair import BagError, bag_files, scan_file
    bags = list(out.glob("*/*.mcap"))
    if not bags:
        return {}
    counts: dict[str, int] = {}
    try:
        for path in bag_files(bags[0].parent):
            scan = scan_file(path)
            for c, n in scan.counts.items():
                if c in scan.channels:
                    counts[scan.channels[c][0]] = counts.get(scan.channels[c][0], 0) + n
    except (BagError, OSError):
        return {}
    return counts


@pytest.mark.ros
def test_sigkill_mid_episode_leaves_readable_bag(ros, tmp_path):
    from mcap_ros2.reader import read_ros2_messages
    from rosbags.rosbag2 import Reader

    from motus_ros.data import types as bag_types
    from motus_ros.data.bag_repair import needs_repair, recover_episode
    from motus_ros.data.bag_writer import mcap_path

    out = tmp_path / "episodes"
    proc = _start_recorder(out)
    try:
        publish = _recorded_publishers(ros, out)

        for i in range(FIRST):
            publish(i)
        # wait until the first messages are on disk (the recorder flushes every 0.05 s)
        wait_until(lambda: min(_scan_counts(out).values() or [0]) >= FIRST
                   and len(_scan_counts(out)) == 2, 20, f"{FIRST} flushed messages per topic")
        for i in range(FIRST, FIRST + 30):  # in flight or in the unflushed chunk when killed
            publish(i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    bag = next(out.iterdir())
    assert needs_repair(bag)
    # metadata.yaml exists from the start, marked as still recording, listing the open file
    info = YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"]["motus.state"] == "recording"
    assert info["relative_file_paths"] == [mcap_path(bag).name]
    report = recover_episode(bag)
    assert report.repaired and not needs_repair(bag)
    assert report.counts["/puppet/joint_states"] >= FIRST

    store = bag_types.typestore()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        chunk_ids = [store.deserialize_cdr(raw, c.msgtype).chunk_id
                     for c, _, raw in reader.messages() if c.topic == "/motus/action_chunk"]
        positions = [store.deserialize_cdr(raw, c.msgtype).position[0]
                     for c, _, raw in reader.messages() if c.topic == "/puppet/joint_states"]
    assert counts == report.counts
    assert chunk_ids == list(range(len(chunk_ids))) and len(chunk_ids) >= FIRST  # a prefix, in order
    assert positions == [float(i) for i in range(len(positions))]
    mcap_topics = [m.channel.topic for m in read_ros2_messages(str(mcap_path(bag)))]
    assert mcap_topics.count("/puppet/joint_states") == counts["/puppet/joint_states"]

    meta = json.loads((bag / "episode.json").read_text())
    assert meta["task"] == "crash test" and meta["status"] == "recovered"
    assert meta["message_counts"] == counts and meta["stop_reason"] == "crash"

    from motus_ros.commands.bag import main as bag_main
    assert bag_main(["repair", str(bag)]) == 0  # idempotent: already complete
    assert bag_main(["info", str(bag)]) == 0


@pytest.mark.ros
def test_sigterm_closes_the_episode_cleanly(ros, tmp_path):
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import JointState

    from motus_ros.data.bag_repair import needs_repair

    out = tmp_path / "episodes"
    proc = _start_recorder(out)
    try:
        pub = ros.node.create_publisher(JointState, "/puppet/joint_states",
                                        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        wait_until(lambda: pub.get_subscription_count() >= 1 and list(out.glob("*/episode.json")),
                   30, "the recorder process to subscribe")
        # The publisher can see the match before the recorder's reader has matched it (a loaded
        # machine): a batch sent then is dropped whole by DDS, before the recorder sees anything.
        # Send again only in that case; a batch that arrives in part is a real loss and fails.
        for attempt in range(3):
            for i in range(10):
                pub.publish(JointState(name=list(layout.JOINT_NAMES), position=[float(i)] * layout.DOF))
            try:
                wait_until(lambda: _scan_counts(out).get("/puppet/joint_states", 0) >= 10, 10,
                           "10 flushed messages")
                break
            except AssertionError:
                if _scan_counts(out).get("/puppet/joint_states", 0) or attempt == 2:
                    raise
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)  # exit status: see the report (run_node races SIGTERM vs spin)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    bag = next(out.iterdir())
    assert not needs_repair(bag)  # closed by the node, not by a repair
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections}["/puppet/joint_states"] == 10
    meta = json.loads((bag / "episode.json").read_text())
    assert meta["status"] == "stopped" and meta["stop_reason"] == "shutdown"
