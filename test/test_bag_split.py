"""Split bags (BagWriter max_file_duration_s): closed files are complete MCAPs that any reader
opens while the bag is still being written or after a crash; metadata.yaml lists them with the
publishers' QoS; repair touches only the open file; rosbags, the converter and replay read them."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from ruamel.yaml import YAML

from motus_ros.data import types as bag_types

JS = "sensor_msgs/msg/JointState"
STR = "std_msgs/msg/String"
INF = QosTime(9223372036, 854775807)
RELIABLE_TL = Qos(QosHistory.UNKNOWN, 0, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                  INF, INF, QosLiveliness.AUTOMATIC, INF, False)
BEST_EFFORT = Qos(QosHistory.UNKNOWN, 0, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                  INF, INF, QosLiveliness.AUTOMATIC, INF, False)
T0_NS = 1_700_000_000 * 10**9


def _js(i: int) -> bytes:
    store = bag_types.typestore()
    msg = store.types[JS](header=store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id=""),
        name=["j"], position=np.array([float(i)]), velocity=np.zeros(0), effort=np.zeros(0))
    return store.serialize_cdr(msg, JS)


def _str(i: int) -> bytes:
    store = bag_types.typestore()
    return store.serialize_cdr(store.types[STR](data=f"m{i}"), STR)


def _metadata(bag: Path) -> dict:
    return YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _mcap_count(path: Path) -> int:
    """Messages of one file through the independent mcap reader (summary + index)."""
    from mcap.reader import make_reader
    with path.open("rb") as f:
        return sum(1 for _ in make_reader(f).iter_messages())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(bag: Path, n: int = 100, period_ns: int = 50_000_000, max_s: float = 1.0,
           close: bool = True, **kwargs):
    """n messages per topic at 1/period_ns; returns the (open or closed) writer."""
    from motus_ros.data.bag_writer import BagWriter
    w = BagWriter(bag, fsync=False, max_file_duration_s=max_s, **kwargs).open()
    w.add_topic("/js", JS, [RELIABLE_TL])
    w.add_topic("/text", STR, [BEST_EFFORT, RELIABLE_TL])
    for i in range(n):
        w.write("/js", T0_NS + i * period_ns, _js(i))
        w.write("/text", T0_NS + i * period_ns + 1000, _str(i))
    if close:
        w.close({"motus.task": "t"})
    return w


def test_split_files_are_closed_readable_and_listed_while_recording(tmp_path):
    from rosbags.rosbag2 import Reader

    from motus_ros.data.bag_repair import bag_files, has_footer, needs_repair
    from motus_ros.data.bag_writer import mcap_name

    bag = tmp_path / "ep"
    w = _write(bag, n=100, period_ns=50_000_000, max_s=1.0, close=False)  # 5 s of bag time
    names = [mcap_name(bag, i) for i in range(5)]
    assert w.file_names == names and w.splits == 4
    # while recording: every closed file opens with the independent reader, no repair needed
    info = _metadata(bag)
    assert info["relative_file_paths"] == names  # closed files and the open one
    assert info["custom_data"] == {"motus.state": "recording"}
    assert needs_repair(bag)
    for entry in info["files"][:-1]:
        path = bag / entry["path"]
        assert has_footer(path)
        assert _mcap_count(path) == entry["message_count"] >= 40  # ~20 per topic in 1 s
        assert entry["duration"]["nanoseconds"] <= 1_000_000_000
    assert info["files"][-1]["message_count"] == 0 and not has_footer(bag / names[-1])
    assert info["message_count"] == sum(f["message_count"] for f in info["files"][:-1])
    w.close({"motus.task": "t"})

    info = _metadata(bag)
    assert not needs_repair(bag) and [p.name for p in bag_files(bag)] == names
    assert info["custom_data"] == {"motus.task": "t"}
    assert info["message_count"] == 200 and sum(f["message_count"] for f in info["files"]) == 200
    assert {t["topic_metadata"]["name"]: t["message_count"]
            for t in info["topics_with_message_count"]} == {"/js": 100, "/text": 100}
    assert [_mcap_count(bag / n) for n in names] == [f["message_count"] for f in info["files"]]
    store = bag_types.typestore()
    with Reader(bag) as reader:  # all files, in order, nothing lost or repeated at the splits
        assert {c.topic: c.msgcount for c in reader.connections} == {"/js": 100, "/text": 100}
        positions = [store.deserialize_cdr(raw, c.msgtype).position[0]
                     for c, _, raw in reader.messages() if c.topic == "/js"]
        texts = [store.deserialize_cdr(raw, c.msgtype).data
                 for c, _, raw in reader.messages() if c.topic == "/text"]
    assert positions == [float(i) for i in range(100)]
    assert texts == [f"m{i}" for i in range(100)]


def test_offered_qos_profiles_in_metadata_and_mcap_channels(tmp_path):
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "ep"
    _write(bag, n=30, max_s=0.5)
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]
              for t in _metadata(bag)["topics_with_message_count"]}
    js_qos = topics["/js"]["offered_qos_profiles"]
    # rosbag2 version-9 format: a YAML list of profiles with lower-case policy names
    assert js_qos == [{
        "history": "unknown", "depth": 0, "reliability": "reliable",
        "durability": "transient_local", "deadline": {"sec": 9223372036, "nsec": 854775807},
        "lifespan": {"sec": 9223372036, "nsec": 854775807}, "liveliness": "automatic",
        "liveliness_lease_duration": {"sec": 9223372036, "nsec": 854775807},
        "avoid_ros_namespace_conventions": False}]
    assert [(q["reliability"], q["durability"]) for q in topics["/text"]["offered_qos_profiles"]] \
        == [("best_effort", "volatile"), ("reliable", "transient_local")]
    for path in sorted(bag.glob("*.mcap")):  # every split file's channels carry the same QoS
        with path.open("rb") as f:
            channels = {c.topic: c for c in make_reader(f).get_summary().channels.values()}
        assert YAML(typ="safe").load(channels["/js"].metadata["offered_qos_profiles"]) == js_qos
    with Reader(bag) as reader:  # rosbags matches metadata.yaml and channel QoS across files
        conns = {c.topic: c for c in reader.connections}
        assert conns["/text"].ext.offered_qos_profiles == [BEST_EFFORT, RELIABLE_TL]
        assert sum(1 for _ in reader.messages()) == 60


def test_crash_needs_repair_of_the_open_file_only(tmp_path):
    from rosbags.rosbag2 import Reader

    from motus_ros.data.bag_repair import has_footer, needs_repair, repair_bag

    bag = tmp_path / "ep"
    w = _write(bag, n=70, period_ns=50_000_000, max_s=1.0, close=False)
    w.flush()
    w.abandon()  # what a SIGKILL after the last flush leaves
    files = sorted(bag.glob("*.mcap"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    assert len(files) == 4 and [has_footer(f) for f in files] == [True, True, True, False]
    closed = {f.name: _sha(f) for f in files[:-1]}
    assert needs_repair(bag)
    report = repair_bag(bag)
    assert report.repaired and report.repaired_files == [files[-1].name]
    assert report.counts == {"/js": 70, "/text": 70}
    assert {f.name: _sha(f) for f in files[:-1]} == closed  # closed files untouched
    assert not needs_repair(bag)
    assert sum(_mcap_count(f) for f in files) == 140  # the open file's flushed messages are back
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {"/js": 70, "/text": 70}
        assert sum(1 for _ in reader.messages()) == 140
        assert reader.connections[0].ext.offered_qos_profiles == [RELIABLE_TL]  # kept by repair
    assert not repair_bag(bag).repaired  # idempotent


@pytest.mark.parametrize("leftover", [b"", b"\x89MC", b"\x89MCAP0\r\n\x01\x20"])
def test_crash_between_split_and_header_is_repaired(tmp_path, leftover):
    """Killed right after the next file was created: 0 bytes, part of the magic, or a torn header."""
    from rosbags.rosbag2 import Reader

    from motus_ros.data.bag_repair import needs_repair, repair_bag
    from motus_ros.data.bag_writer import mcap_path

    bag = tmp_path / "ep"
    w = _write(bag, n=30, period_ns=50_000_000, max_s=1.0, close=False)
    w.split()
    w.abandon()
    last = mcap_path(bag, 2)
    last.write_bytes(leftover)
    assert needs_repair(bag)
    report = repair_bag(bag)
    assert report.repaired and report.counts == {"/js": 30, "/text": 30}
    assert _mcap_count(last) == 0
    with Reader(bag) as reader:
        assert sum(1 for _ in reader.messages()) == 60


def test_legacy_single_file_bag_still_repairs(tmp_path):
    """Bags recorded before the split naming: <bag>/<bag>.mcap and no metadata.yaml after a crash."""
    from motus_ros.data.bag_repair import needs_repair, recover_episode

    bag = tmp_path / "old"
    w = _write(bag, n=10, max_s=0.0, close=False)
    w.flush()
    w.abandon()
    (bag / "metadata.yaml").unlink()
    (bag / "old_0.mcap").rename(bag / "old.mcap")
    assert needs_repair(bag)
    report = recover_episode(bag)
    assert report.repaired and report.files == ["old.mcap"] and report.messages == 20
    assert not needs_repair(bag)


def test_bag_cli_info_and_repair_on_split_bag(tmp_path, capsys):
    import json

    from motus_ros.commands.bag import main

    bag = tmp_path / "ep"
    w = _write(bag, n=50, max_s=1.0, close=False)
    w.flush()
    w.abandon()
    assert main(["info", str(bag)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["needs_repair"] and info["messages"] == 100
    assert [f["closed"] for f in info["files"]] == [True, True, False]
    assert main(["repair", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "repaired, 100 messages in 3 file(s), fixed ep_2.mcap" in out
    assert main(["repair", str(bag)]) == 0 and "already complete" in capsys.readouterr().out


def test_converter_reads_split_bags_like_single_file_ones(tmp_path, monkeypatch):
    """motus-ros convert reads every file of a split bag (rosbags follows metadata.yaml)."""
    import test_convert

    from motus_ros.data.bag_writer import BagWriter
    from motus_ros.data.convert import ConvertConfig, convert

    single = test_convert.write_bag(tmp_path / "single" / "ep_a")
    monkeypatch.setattr(test_convert, "BagWriter",
                        functools.partial(BagWriter, max_file_duration_s=0.3))
    split = test_convert.write_bag(tmp_path / "split" / "ep_a")
    assert len(list(split.glob("*.mcap"))) >= 6 and len(list(single.glob("*.mcap"))) == 1
    outputs = {}
    for name, bag in (("single", single), ("split", split)):
        report = convert([bag], tmp_path / f"out_{name}", ConvertConfig(val_fraction=0.0),
                         progress=False)
        assert not report.failures, report.failures
        outputs[name] = np.load(tmp_path / f"out_{name}" / "episodes" / "ep_a" / "data.npz")
    for key in ("state", "action", "timestamps", "frames", "frame_steps"):
        np.testing.assert_array_equal(outputs["split"][key], outputs["single"][key], err_msg=key)


def test_replay_camera_reads_across_split_files(tmp_path):
    from motus_ros.cameras.base import EndOfStream
    from motus_ros.cameras.replay import ReplayBackend
    from motus_ros.data.bag_writer import BagWriter

    store = bag_types.typestore()
    img_t = "sensor_msgs/msg/Image"
    bag = tmp_path / "cams"
    w = BagWriter(bag, fsync=False, max_file_duration_s=0.1).open()
    w.add_topic("/cam", img_t)
    for i in range(10):  # 20 Hz: 3 frames per file (a file spans at most 0.1 s), 4 files
        img = np.full((4, 6, 3), 20 * i, np.uint8)
        msg = store.types[img_t](header=store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=0), frame_id="c"),
            height=4, width=6, encoding="rgb8", is_bigendian=0, step=18, data=img.reshape(-1))
        w.write("/cam", T0_NS + i * 50_000_000, store.serialize_cdr(msg, img_t))
    w.close()
    assert len(w.file_names) == 4
    cam = ReplayBackend(str(bag), "/cam", loop=False, restamp=False)
    with cam:
        frames = [cam.read() for _ in range(10)]
        with pytest.raises(EndOfStream):
            cam.read()
    assert [f.stamp for f in frames] == [100.0 + i for i in range(10)]
    assert [int(f.image[0, 0, 0]) for f in frames] == [20 * i for i in range(10)]
