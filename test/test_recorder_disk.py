"""Recorder: low free disk refuses to start / stops a running episode cleanly; discard deletes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ros_harness import wait_until
from test_recorder_node import make_recorder, publish_episode

from motus_ros import layout


class FakeDisk:
    """Injected free-space function (MiB)."""

    def __init__(self, free_mb: float):
        self.free_mb = free_mb

    def __call__(self) -> float:
        return self.free_mb


@pytest.mark.ros
def test_low_disk_refuses_start_and_stops_running_episode(ros, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from motus_msgs.srv import StartEpisode
    from rosbags.rosbag2 import Reader

    disk = FakeDisk(50.0)
    recorder = ros.add(make_recorder(tmp_path, min_free_mb=100.0, free_space_fn=disk,
                                     diagnostics_period_s=0.1))
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    refused = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert not refused.success
    assert "50 MiB" in refused.message and "min_free_mb is 100" in refused.message
    assert not (tmp_path / "episodes").exists() or not any((tmp_path / "episodes").iterdir())

    disk.free_mb = 5000.0
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success, start.message
    publish_episode(ros, recorder, n=5)
    disk.free_mb = 20.0  # the disk fills up during the episode
    wait_until(lambda: recorder.episode_stats() is None, 10, "the recorder to stop on low disk")

    bag = tmp_path / "episodes" / start.episode_id
    meta = json.loads((bag / "episode.json").read_text())
    assert meta["stop_reason"] == "low_disk" and meta["status"] == "stopped"
    with Reader(bag) as reader:  # closed cleanly: metadata.yaml and a complete MCAP
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/motus/action_chunk"] == 5 and counts["/puppet/joint_states"] == 5
    diags.wait_for(1, 10, predicate=lambda m: any(
        s.level == DiagnosticStatus.ERROR and "low disk" in s.message for s in m.status))


@pytest.mark.ros
def test_discard_removes_the_episode(ros, tmp_path):
    from motus_msgs.srv import StartEpisode, StopEpisode

    recorder = ros.add(make_recorder(tmp_path))
    nothing = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert not nothing.success and "no episode" in nothing.message
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success
    bag = tmp_path / "episodes" / start.episode_id
    assert bag.is_dir()
    publish_episode(ros, recorder, n=3)
    stop = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=False))
    assert stop.success and stop.path == "" and "discarded" in stop.message
    assert not bag.exists()
    # the next episode works normally
    start2 = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start2.success
    stop2 = ros.call(StopEpisode, layout.SERVICES["stop_episode"], StopEpisode.Request(keep=True))
    assert Path(stop2.path).is_dir()


def test_queue_overflow_is_counted_and_reported(tmp_path):
    """A full writer queue refuses messages, counts them per topic and calls on_drop."""
    from motus_ros.data.recording import RecordingSession

    drops = []
    session = RecordingSession(tmp_path / "bag", max_queue=3, fsync=False,
                               on_drop=lambda topic, n: drops.append((topic, n)))
    session.add_topic("/js", "sensor_msgs/msg/JointState")
    with session._cond:  # hold the writer thread so the queue cannot drain
        accepted = [session.submit("/js", i, b"\x00\x01\x00\x00" + bytes(40)) for i in range(6)]
    assert accepted.count(False) == len(drops) > 0
    assert session.dropped["/js"] == len(drops) and drops[-1] == ("/js", len(drops))
    session.stop(keep=False)


def test_write_error_keeps_what_reached_the_disk(tmp_path):
    """ENOSPC from the file system mid-episode: the session stops, the bag stays readable."""
    import errno

    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import JointState

    from motus_ros.data.recording import RecordingSession
    from ros_harness import wait_until

    session = RecordingSession(tmp_path / "bag", fsync=False, flush_period_s=0.01)
    session.add_topic("/js", "sensor_msgs/msg/JointState")
    for i in range(5):
        assert session.submit("/js", i, serialize_message(JointState(position=[float(i)])))
    wait_until(lambda: session.written["/js"] == 5, 5, "5 messages written")
    session.writer.flush()

    def disk_full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")
    session.writer.write = disk_full
    session.submit("/js", 5, serialize_message(JointState(position=[5.0])))
    wait_until(lambda: session.error is not None, 5, "the writer to report the error")
    assert "No space left" in session.error
    assert not session.submit("/js", 6, b"\x00\x01\x00\x00")  # refused once failed
    path = session.stop(keep=True)
    with Reader(path) as reader:
        assert [c.msgcount for c in reader.connections] == [5]


@pytest.mark.ros
def test_min_free_mb_is_live_and_output_dir_is_read_only(ros, tmp_path):
    from rclpy.parameter import Parameter

    from motus_msgs.srv import StartEpisode

    disk = FakeDisk(500.0)
    recorder = ros.add(make_recorder(tmp_path, min_free_mb=100.0, free_space_fn=disk))
    assert recorder.set_parameters([Parameter("min_free_mb", value=1000.0)])[0].successful
    refused = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert not refused.success and "min_free_mb is 1000" in refused.message     # the new limit
    bad = recorder.set_parameters([Parameter("min_free_mb", value=-1.0)])[0]
    assert not bad.successful and "min_free_mb" in bad.reason and recorder.p["min_free_mb"] == 1000.0
    fixed = recorder.set_parameters([Parameter("output_dir", value=str(tmp_path / "other"))])[0]
    assert not fixed.successful and recorder.p["output_dir"] == str(tmp_path / "episodes")
    assert recorder.set_parameters([Parameter("min_free_mb", value=100.0)])[0].successful
    start = ros.call(StartEpisode, layout.SERVICES["start_episode"], StartEpisode.Request(task="t"))
    assert start.success and (tmp_path / "episodes" / start.episode_id).is_dir()
    recorder.close()
