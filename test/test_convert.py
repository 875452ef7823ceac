"""`motus-ros convert`: bags -> episodes whose arrays match the bag; bad bags reported, skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motus_ros import layout
from motus_ros.data import types as bag_types
from motus_ros.data.bag_writer import BagWriter, mcap_path
from motus_ros.data.episode import write_json_atomic
from motus_ros.stamps import seconds_to_ns

T0 = 1000.0
DURATION = 2.0
JS_RATE, LEADER_RATE, CAM_RATE = 50.0, 100.0, 30.0
SLOPE = np.linspace(0.1, 1.4, layout.DOF)  # rad/s per joint


def follower(t):
    return 0.5 + SLOPE * (t - T0)


def leader(t):
    return -0.2 + 2 * SLOPE * (t - T0)


def cam_image(cam_i: int, k: int, h=48, w=64) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = k % 256            # frame index in red
    img[..., 1] = 40 * cam_i          # camera in green
    img[: h // 2, :, 2] = 200         # a feature so tiling/orientation is visible
    return img


def _msg(msgtype, **fields):
    return bag_types.typestore().types[msgtype](**fields)


def _header(t: float):
    sec, nanosec = divmod(seconds_to_ns(t), 1_000_000_000)   # carries into sec, never nanosec = 1e9
    return _msg("std_msgs/msg/Header",
                stamp=_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec), frame_id="")


def write_bag(folder: Path, *, leader_topic=True, robot="sim", task="transfer the cube",
              duration=DURATION, close=True, shuffled_names=False, joints=True) -> Path:
    """A synthetic episode bag: linear joint ramps, frame-indexed camera images (joints False:
    cameras only, no joint topic at all)."""
    w = BagWriter(folder, fsync=False).open()
    js_type, img_type = "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image"
    topics = [layout.TOPICS["joint_states"]] + ([layout.TOPICS["leader_joint_states"]] if leader_topic else [])
    topics = topics if joints else []
    for t in topics:
        w.add_topic(t, js_type)
    cams = [layout.camera_image_topic(c) for c in layout.CAMERAS]
    for c in cams:
        w.add_topic(c, img_type)
    events = []
    for k in range(int(duration * JS_RATE) + 1 if joints else 0):
        events.append((T0 + k / JS_RATE, "f", k))
    if leader_topic and joints:
        for k in range(int(duration * LEADER_RATE) + 1):
            events.append((T0 + k / LEADER_RATE, "l", k))
    for k in range(int(duration * CAM_RATE) + 1):
        events.append((T0 + k / CAM_RATE, "c", k))
    names = list(layout.JOINT_NAMES)
    order = np.arange(layout.DOF)
    if shuffled_names:
        order = np.random.default_rng(0).permutation(layout.DOF)
        names = [names[i] for i in order]
    store = bag_types.typestore()
    for t, kind, k in sorted(events):
        log_ns = int(t * 1e9) + 5_000_000  # received 5 ms after the stamp
        if kind in "fl":
            pos = (follower if kind == "f" else leader)(t)
            msg = _msg(js_type, header=_header(t), name=names, position=pos[order],
                       velocity=np.zeros(0), effort=np.zeros(0))
            topic = topics[0] if kind == "f" else topics[1]
            w.write(topic, log_ns, store.serialize_cdr(msg, js_type))
        else:
            for ci, topic in enumerate(cams):
                img = cam_image(ci, k)
                msg = _msg(img_type, header=_header(t), height=48, width=64, encoding="rgb8",
                           is_bigendian=0, step=64 * 3, data=img.reshape(-1))
                w.write(topic, log_ns, store.serialize_cdr(msg, img_type))
    if close:
        w.close()
        write_json_atomic(folder / "episode.json", {"task": task, "robot_profile": robot})
    else:
        w.flush()
        w.abandon()
    return folder


@pytest.fixture(scope="module")
def good_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return [write_bag(root / "ep_a"), write_bag(root / "ep_b", shuffled_names=True),
            write_bag(root / "ep_c", robot="agilex_aloha2", task="insert the peg")]


def test_arrays_match_bag_contents(good_bags, tmp_path):
    from motus_ros.data.convert import ConvertConfig, convert
    from motus_ros.data.tiling import resolve_tiler
    tile = resolve_tiler()

    report = convert(good_bags, tmp_path / "out", ConvertConfig(val_fraction=0.34), progress=False)
    assert not report.failures and len(report.episodes) == 3
    ep_dir = tmp_path / "out" / "episodes" / "ep_b"  # joint names shuffled in the bag
    data = np.load(ep_dir / "data.npz")
    n = int(DURATION * 30) + 1
    assert data["state"].shape == (n, 14) and data["action"].shape == (n, 14)
    t = T0 + data["timestamps"]
    np.testing.assert_allclose(data["timestamps"], np.arange(n) / 30.0)
    np.testing.assert_allclose(data["state"], np.stack([follower(x) for x in t]), atol=1e-5)
    np.testing.assert_allclose(data["action"], np.stack([leader(x) for x in t]), atol=1e-5)
    # frames at 5 Hz: every 6th control step; camera images are at 30 Hz so step s -> image s
    np.testing.assert_array_equal(data["frame_steps"], np.arange(0, n, 6))
    np.testing.assert_allclose(data["frame_times"], data["frame_steps"] / 30.0)
    assert data["frames"].shape == (len(data["frame_steps"]), 384, 320, 3)
    for f, step in enumerate(data["frame_steps"]):
        expected = tile(*(cam_image(ci, int(step)) for ci in range(3)), height=384, width=320)
        np.testing.assert_array_equal(data["frames"][f], expected)
    meta = json.loads((ep_dir / "episode.json").read_text())
    assert meta["task"] == "transfer the cube" and meta["robot"] == "sim"
    assert meta["time_source"] == "header" and meta["steps"] == n
    assert max(meta["sync_error_s"].values()) < 1e-6

    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert sorted(dataset["splits"]["train"] + dataset["splits"]["val"]) == ["ep_a", "ep_b", "ep_c"]
    assert len(dataset["splits"]["val"]) == 1
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert set(stats) == {"sim", "agilex_aloha2"}  # per robot
    train_sim = [e for e in report.episodes if e.robot == "sim" and e.split == "train"] or \
        [e for e in report.episodes if e.robot == "sim"]
    all_actions = np.concatenate([e.action for e in train_sim])
    np.testing.assert_allclose(stats["sim"]["action"]["min"], all_actions.min(0), rtol=1e-6)
    np.testing.assert_allclose(stats["sim"]["action"]["max"], all_actions.max(0), rtol=1e-6)
    try:  # the per-robot file loads with the policy's loader
        from motus_ros.policy.transforms import load_stats
    except ImportError:
        return
    loaded = load_stats(tmp_path / "out" / "stats" / "agilex_aloha2.json")
    np.testing.assert_allclose(loaded.state.min, stats["agilex_aloha2"]["state"]["min"])


def test_broken_bags_reported_by_name_and_skipped(good_bags, tmp_path, capsys):
    from motus_ros.commands.convert import main

    bad = tmp_path / "bad"
    empty = bad / "empty_bag"
    w = BagWriter(empty, fsync=False).open()
    w.add_topic(layout.TOPICS["joint_states"], "sensor_msgs/msg/JointState")
    w.close()
    crashed = write_bag(bad / "crashed_bag", close=False)
    garbage = bad / "garbage_bag"
    garbage.mkdir(parents=True)
    (garbage / "garbage_bag.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 100)
    (garbage / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    no_leader = write_bag(bad / "no_leader_bag", leader_topic=False)
    truncated = write_bag(bad / "truncated_bag")
    mcap = mcap_path(truncated)
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2] + mcap.read_bytes()[-37:])

    bags = [good_bags[0], empty, crashed, garbage, no_leader, truncated, bad / "missing_bag"]
    rc = main([*map(str, bags), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0  # one bag converted
    assert "empty_bag" in err and "empty bag" in err
    assert "crashed_bag" in err and "motus-ros bag repair" in err
    assert "garbage_bag" in err
    assert "no_leader_bag" in err and "no actions" in err
    assert "truncated_bag" in err
    assert "missing_bag" in err and "no such bag folder" in err
    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [e["name"] for e in dataset["episodes"]] == ["ep_a"]
    assert {Path(f["bag"]).name for f in dataset["failures"]} == {
        "empty_bag", "crashed_bag", "garbage_bag", "no_leader_bag", "truncated_bag", "missing_bag"}
    # all failing -> non-zero exit
    assert main([str(empty), str(crashed), "--out", str(tmp_path / "out2"), "--no-progress"]) != 0


def test_folder_of_bags_is_expanded(good_bags):
    from motus_ros.data.convert import expand_bag_paths
    assert expand_bag_paths([good_bags[0].parent]) == sorted(good_bags)
    assert expand_bag_paths([good_bags[1]]) == [good_bags[1]]


def test_split_is_deterministic_and_keeps_a_train_episode():
    from motus_ros.data.convert import assign_splits
    names = [f"e{i}" for i in range(10)]
    a = assign_splits(names, 0.2, seed=3)
    assert a == assign_splits(list(reversed(names)), 0.2, seed=3)
    assert sum(v == "val" for v in a.values()) == 2
    assert assign_splits(["only"], 0.5, 0) == {"only": "train"}
    with pytest.raises(ValueError, match="val_fraction"):
        assign_splits(names, 1.0, 0)


def test_tile_layout_matches_the_policy():
    from motus_ros.data.tiling import resolve_tiler, tile_cameras
    high = np.full((480, 640, 3), 10, np.uint8)
    left = np.full((480, 640, 3), 20, np.uint8)
    right = np.full((480, 640, 3), 30, np.uint8)
    tiled = tile_cameras(high, left, right)
    assert tiled.shape == (384, 320, 3)
    assert (tiled[:192, 32:288] == 10).all() and (tiled[:192, :32] == 0).all()  # letterboxed head
    assert (tiled[192 + 36:192 + 156, :160] == 20).all() and (tiled[192 + 36:192 + 156, 160:] == 30).all()
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_array_equal(resolve_tiler()(*views), tile_cameras(*views))  # policy == fallback


def _fake_parquet(tables):
    """Stand-in table writer (pyarrow may be absent): keeps the columns, writes a marker file."""
    def write(path, columns, index_column=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("fake parquet")
        tables[path] = (columns, index_column)
    return write


def test_lerobot_v3_layout(good_bags, tmp_path):
    import cv2

    from motus_ros.data.convert import ConvertConfig, convert
    from motus_ros.data.lerobot import export_lerobot

    out = tmp_path / "lerobot"
    tables = {}
    bad = tmp_path / "not_a_bag"
    bad.mkdir()
    report = export_lerobot([good_bags[0], bad, good_bags[1]], out, ConvertConfig(val_fraction=0.5),
                            progress=False, table_writer=_fake_parquet(tables))
    assert [Path(b).name for b, _ in report.failures] == ["not_a_bag"]
    info = json.loads((out / "meta" / "info.json").read_text())
    n = int(DURATION * 30) + 1
    assert info["codebase_version"] == "v3.0" and info["fps"] == 30.0
    assert info["total_episodes"] == 2 and info["total_frames"] == 2 * n and info["total_tasks"] == 1
    assert info["splits"] == {"train": "0:1", "val": "1:2"}
    assert info["features"]["action"]["shape"] == [14]
    assert info["features"]["observation.images.cam_high"]["shape"] == [48, 64, 3]
    data, _ = tables[out / "data/chunk-000/file-000.parquet"]
    episodes, _ = tables[out / "meta/episodes/chunk-000/file-000.parquet"]
    tasks, index = tables[out / "meta/tasks.parquet"]
    assert tasks == {"task_index": [0], "task": ["transfer the cube"]} and index == "task"
    assert data["action"].shape == (2 * n, 14) and list(data["index"]) == list(range(2 * n))
    assert list(episodes["dataset_to_index"]) == [n, 2 * n] and episodes["length"] == [n, n]
    # the same arrays as the motus format for the same bag
    first = report.episodes[0]
    motus = convert([Path(first.source)], tmp_path / "motus", progress=False)
    np.testing.assert_allclose(data["action"][:n], motus.episodes[0].action)
    np.testing.assert_allclose(data["observation.state"][:n], motus.episodes[0].state)
    stats = json.loads((out / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["max"], data["action"].max(0), rtol=1e-6)
    assert np.asarray(stats["observation.images.cam_high"]["mean"]).shape == (3, 1, 1)
    for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist"):
        for file in ("file-000", "file-001"):
            video = out / f"videos/observation.images.{cam}/chunk-000/{file}.mp4"
            cap = cv2.VideoCapture(str(video))
            count = 0
            ok, frame = cap.read()
            first_frame = frame
            while ok:
                count += 1
                ok, frame = cap.read()
            cap.release()
            assert count == n, (video, count)
    # first frame of the last video: red = frame index 0, blue feature in the top half only
    rgb = cv2.cvtColor(first_frame, cv2.COLOR_BGR2RGB).astype(int)
    assert abs(rgb[5, 5, 2] - 200) < 20 and abs(rgb[40, 5, 2]) < 20


def test_lerobot_needs_pyarrow_or_parquet(good_bags, tmp_path):
    from motus_ros.commands.convert import main
    try:
        import pyarrow.parquet as pq
    except ImportError:
        rc = main([str(good_bags[0]), "--out", str(tmp_path / "lr"), "--format", "lerobot",
                   "--no-progress"])
        assert rc == 2 and not (tmp_path / "lr").exists()  # refused before writing anything
        return
    assert main([str(good_bags[0]), "--out", str(tmp_path / "lr"), "--format", "lerobot",
                 "--no-progress"]) == 0
    table = pq.read_table(tmp_path / "lr" / "data/chunk-000/file-000.parquet")
    assert table.num_rows == int(DURATION * 30) + 1
    # the real Parquet file holds the same actions as the motus format of the same bag
    from motus_ros.data.convert import convert
    motus = convert([Path(good_bags[0])], tmp_path / "motus", progress=False)
    np.testing.assert_allclose(np.stack(table.column("action").to_pylist()),
                               motus.episodes[0].action, rtol=1e-6)


def test_time_source_falls_back_to_receive_times_when_stamps_disagree():
    from motus_ros.data.convert import ConvertError, choose_time_source
    log = [0.1 * i for i in range(50)]
    good = {"/a": ([t + 0.01 for t in log], log), "/b": ([t - 0.02 for t in log], log)}
    assert choose_time_source(good, "auto")[0] == "header"
    wall = dict(good, **{"/c": ([1.7e9 + t for t in log], log)})  # a node stamping wall time
    source, reason = choose_time_source(wall, "auto")
    assert source == "log" and "/c" in reason and "disagrees" in reason
    stale = dict(good, **{"/d": ([min(t, 1.0) for t in log], log)})  # republished last stamp
    source, reason = choose_time_source(stale, "auto")
    assert source == "log" and reason.startswith("/d repeats stamps")
    unset = dict(good, **{"/e": ([None] * 50, log)})
    assert choose_time_source(unset, "auto")[0] == "log"
    with pytest.raises(ConvertError, match="/e has zero stamps"):
        choose_time_source(unset, "header")
    assert choose_time_source(good, "log") == ("log", "requested")


# --- a demo-like bag: the recorder started before a sim reset --------------------------------
T_RESET = T0 + 1.0
OLD_POSE = np.full(layout.DOF, 1.5)   # the arms before the reset, far from the new episode's ramps


def post_follower(t):
    return 0.5 + SLOPE * (t - T_RESET)


def post_leader(t):
    return -0.2 + 2 * SLOPE * (t - T_RESET)


def write_reset_bag(folder: Path, *, js_delay=0.5, cam_delay=0.1, republish=3,
                    camera_stamps=True, marker=True) -> Path:
    """Recording from T0, sim reset at T_RESET, episode until T_RESET + DURATION, as the demo bags:
    the driver republished each joint state `republish` times (byte-identical, the old driver at
    50 Hz of wall time against a slower sim), the recorder received joint states `js_delay` s and
    images `cam_delay` s late (its backlog), /sim/episode_start (std_msgs/Header) marks the reset.
    Images before the reset are white; after it, cam_image(camera, frames since the reset)."""
    w = BagWriter(folder, fsync=False).open()
    js_type, img_type, hdr_type = ("sensor_msgs/msg/JointState", "sensor_msgs/msg/Image",
                                   "std_msgs/msg/Header")
    follower_topic, leader_topic = layout.TOPICS["joint_states"], layout.TOPICS["leader_joint_states"]
    cams = [layout.camera_image_topic(c) for c in layout.CAMERAS]
    for topic, msgtype in ((follower_topic, js_type), (leader_topic, js_type),
                           *((c, img_type) for c in cams), ("/sim/episode_start", hdr_type)):
        w.add_topic(topic, msgtype)
    store = bag_types.typestore()
    events = []   # (receive s, topic, raw)
    end = T_RESET + DURATION
    for rate, topic, old, new, delay in ((JS_RATE, follower_topic, OLD_POSE, post_follower, js_delay),
                                         (LEADER_RATE, leader_topic, -OLD_POSE, post_leader, 0.01)):
        for k in range(int(round((end - T0) * rate)) + 1):
            t = T0 + k / rate
            pos = old if t < T_RESET else new(t)
            raw = store.serialize_cdr(_msg(js_type, header=_header(t), name=list(layout.JOINT_NAMES),
                                           position=pos, velocity=np.zeros(0), effort=np.zeros(0)),
                                      js_type)
            copies = republish if topic == follower_topic else 1
            events += [(t + delay + i * 0.004, topic, raw) for i in range(copies)]
    for k in range(int(round((end - T0) * CAM_RATE)) + 1):
        t = T0 + k / CAM_RATE
        after = int(round((t - T_RESET) * CAM_RATE))
        for ci, topic in enumerate(cams):
            img = cam_image(ci, after) if after >= 0 else np.full((48, 64, 3), 255, np.uint8)
            msg = _msg(img_type, header=_header(t if camera_stamps else 0.0), height=48, width=64,
                       encoding="rgb8", is_bigendian=0, step=64 * 3, data=img.reshape(-1))
            events.append((t + cam_delay, topic, store.serialize_cdr(msg, img_type)))
    if marker:
        events.append((T_RESET + 0.05, "/sim/episode_start",
                       store.serialize_cdr(_header(T_RESET), hdr_type)))
    for log_t, topic, raw in sorted(events, key=lambda e: e[0]):
        w.write(topic, int(round(log_t * 1e9)), raw)
    w.close()
    write_json_atomic(folder / "episode.json", {"task": "transfer the cube", "robot_profile": "sim"})
    return folder


def test_reset_mid_bag_exports_only_the_new_episode_on_header_stamps(tmp_path):
    """Stamps sane (republished duplicates aside): header times, nothing from before the reset in
    states, actions or frames, however late the recorder received each topic."""
    from motus_ros.data.convert import ConvertConfig, convert
    from motus_ros.data.lerobot import export_lerobot
    from motus_ros.data.tiling import resolve_tiler

    bag = write_reset_bag(tmp_path / "demo_bag")
    logs = []
    report = convert([bag], tmp_path / "out", ConvertConfig(val_fraction=0.0), progress=False,
                     log=logs.append)
    assert not report.failures and not logs, logs
    episode = report.episodes[0]
    assert episode.time_source == "header", episode.time_source_reason
    states_written = int(round((T_RESET + DURATION - T0) * JS_RATE)) + 1
    assert (f"dropped byte-identical republications: /puppet/joint_states {2 * states_written}"
            in episode.time_source_reason)
    assert episode.episode_start_s == pytest.approx(T_RESET, abs=1e-9)
    assert set(episode.dropped["before_reset"]) == {
        layout.TOPICS["joint_states"], layout.TOPICS["leader_joint_states"],
        *(layout.camera_image_topic(c) for c in layout.CAMERAS)}
    data = np.load(tmp_path / "out" / "episodes" / "demo_bag" / "data.npz")
    n = int(DURATION * 30) + 1
    t = T_RESET + data["timestamps"]
    assert len(t) == n
    np.testing.assert_allclose(data["state"], np.stack([post_follower(x) for x in t]), atol=1e-5)
    np.testing.assert_allclose(data["action"], np.stack([post_leader(x) for x in t]), atol=1e-5)
    tile = resolve_tiler()
    for f, step in enumerate(data["frame_steps"]):  # the new episode's frames, none white
        expected = tile(*(cam_image(ci, int(step)) for ci in range(3)), height=384, width=320)
        np.testing.assert_array_equal(data["frames"][f], expected)
    meta = json.loads((tmp_path / "out" / "episodes" / "demo_bag" / "episode.json").read_text())
    assert meta["episode_start_s"] == pytest.approx(T_RESET) and meta["dropped"] == episode.dropped

    tables = {}
    export_lerobot([bag], tmp_path / "lerobot", ConvertConfig(val_fraction=0.0), progress=False,
                   table_writer=_fake_parquet(tables), log=logs.append)
    rows, _ = tables[tmp_path / "lerobot" / "data/chunk-000/file-000.parquet"]
    state = rows["observation.state"]
    np.testing.assert_allclose(state[0], post_follower(T_RESET), atol=1e-5)
    assert np.abs(np.diff(state, axis=0)).max() <= SLOPE.max() / 30 + 1e-5  # no jump between steps


def test_reset_mid_bag_on_receive_times_when_stamps_are_not_sane(tmp_path):
    """Unstamped images: receive times for all (said in the log and episode.json); the bag is cut
    at the marker's receive time, and topics whose own stamps are sane at its stamp too, so the
    old episode's joint states that the recorder got after the reset stay out."""
    from motus_ros.data.convert import ConvertConfig, convert

    bag = write_reset_bag(tmp_path / "unstamped_bag", camera_stamps=False)
    logs = []
    report = convert([bag], tmp_path / "out", ConvertConfig(val_fraction=0.0), progress=False,
                     log=logs.append)
    episode = report.episodes[0]
    assert episode.time_source == "log"
    assert "/camera_high/color/image_raw has zero stamps" in episode.time_source_reason
    assert len(logs) == 1 and "receive times" in logs[0] and "zero stamps" in logs[0]
    assert episode.episode_start_s == pytest.approx(T_RESET + 0.05, abs=1e-6)
    assert episode.dropped["before_reset"][layout.TOPICS["joint_states"]] == 50  # all 1 s of them
    assert not np.isclose(episode.state, OLD_POSE).all(axis=1).any(), "a pre-reset pose was exported"
    # the episode starts when the first new state was received, 0.5 s after it was the state:
    # receive times skew states against images by the recorder's lag (why headers are preferred)
    np.testing.assert_allclose(episode.state[0], post_follower(T_RESET), atol=1e-5)
    data = np.load(tmp_path / "out" / "episodes" / "unstamped_bag" / "data.npz")
    assert not (data["frames"] == 255).all(axis=-1).any(), "a pre-reset (white) image was exported"


def test_time_source_tolerates_a_lagging_recorder_but_not_another_clock():
    from motus_ros.data.convert import choose_time_source
    log = [0.02 * i for i in range(100)]
    backlog = {"/joints": ([t - 2.0 for t in log], log),        # recorder 2 s behind its history
               "/camera": ([t - 0.1 for t in log], log)}
    assert choose_time_source(backlog, "auto") == ("header", "header stamps consistent")
    ahead = dict(backlog, **{"/camera": ([t + 1.0 for t in log], log)})  # stamps from the future
    source, reason = choose_time_source(ahead, "auto")
    assert source == "log" and "/camera stamps a clock that disagrees" in reason
    sim_on_wall = dict(backlog, **{"/joints": ([t - 1.7e9 for t in log], log)})
    assert choose_time_source(sim_on_wall, "auto")[0] == "log"


# --- episodes without joint data (label-free, for stage 2) -------------------------------------
@pytest.fixture(scope="module")
def camera_only_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("camera_only")
    return [write_bag(root / "video_a", joints=False), write_bag(root / "video_b", joints=False)]


def _tiled_frames(steps) -> np.ndarray:
    from motus_ros.data.tiling import resolve_tiler
    tile = resolve_tiler()
    return np.stack([tile(*(cam_image(ci, int(s)) for ci in range(3)), height=384, width=320) for s in steps])


def test_camera_only_bags_become_label_free_episodes(good_bags, camera_only_bags, tmp_path):
    """No joint topic: frames and timelines, no state/action, "has_actions": false; statistics and
    each kind's split from the episodes with joint data alone."""
    from motus_ros.data.convert import ConvertConfig, convert

    labeled = good_bags[:2]                          # both robot "sim"
    logs = []
    report = convert([*labeled, *camera_only_bags], tmp_path / "out", ConvertConfig(val_fraction=0.5),
                     progress=False, log=logs.append)
    assert not report.failures and len(report.episodes) == 4
    assert sum("video_a" in line and "label-free" in line for line in logs) == 1
    n = int(DURATION * 30) + 1
    data = np.load(tmp_path / "out" / "episodes" / "video_a" / "data.npz")
    assert sorted(data.files) == ["frame_steps", "frame_times", "frames", "timestamps"]
    np.testing.assert_allclose(data["timestamps"], np.arange(n) / 30.0)
    np.testing.assert_array_equal(data["frame_steps"], np.arange(0, n, 6))
    np.testing.assert_array_equal(data["frames"], _tiled_frames(data["frame_steps"]))
    meta = json.loads((tmp_path / "out" / "episodes" / "video_a" / "episode.json").read_text())
    assert meta["has_actions"] is False and meta["steps"] == n and "state" not in meta
    assert "has_actions" not in json.loads((tmp_path / "out" / "episodes" / "ep_a" / "episode.json").read_text())
    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    flags = {e["name"]: e.get("has_actions", True) for e in dataset["episodes"]}
    assert flags == {"ep_a": True, "ep_b": True, "video_a": False, "video_b": False}
    assert "has_actions" not in next(e for e in dataset["episodes"] if e["name"] == "ep_a")
    splits = {e["name"]: e["split"] for e in dataset["episodes"]}
    assert sorted(splits[k] for k in ("ep_a", "ep_b")) == ["train", "val"]          # split per kind
    assert sorted(splits[k] for k in ("video_a", "video_b")) == ["train", "val"]
    # Statistics: the labeled train episode only, exactly as when the camera-only bags are absent.
    alone = convert(labeled, tmp_path / "alone", ConvertConfig(val_fraction=0.5), progress=False)
    assert {e.name: e.split for e in alone.episodes} == {k: v for k, v in splits.items() if k.startswith("ep_")}
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == \
        json.loads((tmp_path / "alone" / "stats.json").read_text())
    train = next(e for e in report.episodes if e.has_actions and e.split == "train")
    stats = json.loads((tmp_path / "out" / "stats" / "sim.json").read_text())
    np.testing.assert_allclose(stats["action"]["max"], train.action.max(0), rtol=1e-6)


def test_no_actions_withholds_joint_data(good_bags, tmp_path, capsys):
    from motus_ros.commands.convert import main

    rc = main([str(good_bags[0]), str(good_bags[2]), "--out", str(tmp_path / "out"), "--no-actions",
               "--no-progress"])
    assert rc == 0
    for name in ("ep_a", "ep_c"):
        data = np.load(tmp_path / "out" / "episodes" / name / "data.npz")
        assert "state" not in data.files and "action" not in data.files
        np.testing.assert_array_equal(data["frames"], _tiled_frames(data["frame_steps"]))
    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [e.get("has_actions") for e in dataset["episodes"]] == [False, False]
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == {}     # no labeled episode: no stats
    assert not (tmp_path / "out" / "stats").exists()
    # LeRobot datasets need joint data: refused before anything is written.
    assert main([str(good_bags[0]), "--out", str(tmp_path / "lr"), "--format", "lerobot", "--no-actions",
                 "--no-progress"]) == 2
    assert "needs joint data" in capsys.readouterr().err and not (tmp_path / "lr").exists()


def test_half_of_the_joint_data_is_still_refused(tmp_path):
    """Follower states without an action topic is a broken recording, not a label-free one."""
    from motus_ros.data.convert import ConvertConfig, convert

    bag = write_bag(tmp_path / "bags" / "no_leader", leader_topic=False)
    report = convert([bag], tmp_path / "out", progress=False, log=lambda s: None)
    assert not report.episodes and "no actions" in report.failures[0][1] and "--no-actions" in report.failures[0][1]
    withheld = convert([bag], tmp_path / "out2", ConvertConfig(actions=False), progress=False, log=lambda s: None)
    assert [e.has_actions for e in withheld.episodes] == [False]


def test_lerobot_refuses_a_camera_only_bag(good_bags, camera_only_bags, tmp_path):
    from motus_ros.data.lerobot import export_lerobot

    tables = {}
    report = export_lerobot([good_bags[0], camera_only_bags[0]], tmp_path / "lerobot", progress=False,
                            table_writer=_fake_parquet(tables), log=lambda s: None)
    assert [Path(b).name for b, _ in report.failures] == ["video_a"]
    assert "no joint data" in report.failures[0][1] and len(report.episodes) == 1
