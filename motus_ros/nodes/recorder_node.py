"""Recorder node: teleoperation / policy episodes to rosbag2 MCAP bags, one bag per episode.

Subscriptions are raw (`raw=True`): the serialized CDR received is what the bag stores (images
re-encoded only when image_compression is jpeg/png). With image_transport compressed, the topics
listed as sensor_msgs/msg/Image are recorded from their image_transport `<topic>/compressed`
instead: the cameras' own JPEG sensor_msgs/CompressedImage, stored byte for byte as received.
Services start and stop episodes; the episode.json sidecar in each bag folder holds the metadata
(robot, task, operator, times, counts, calibration files with hashes). Free disk is checked
before and during recording.
Each bag is split into MCAP files of at most `max_bag_duration_s` (closed files survive a crash
intact), and its topics carry the publishers' offered_qos_profiles (see data/bag_writer.py).

Live parameters: the disk limit and the check periods apply at once, exclude_topics at the next
graph scan, and the per-episode settings (robot_profile, image_compression, jpeg_quality, png_level,
queue bounds, flush_period_s, fsync, max_bag_duration_s, calibration_files, stop_timeout_s) from
the next episode: a running bag keeps the settings it was opened with. output_dir, topics,
image_transport, the QoS choices and autostart_task are read-only.
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from motus_msgs.srv import StartEpisode, StopEpisode
from motus_ros import layout, paths
from motus_ros.ros import diagnostics
from motus_ros.data import episode as ep
from motus_ros.data import types as bag_types
from motus_ros.data.bag_writer import dump_qos, qos_from_rclpy
from motus_ros.data.image_codec import COMPRESSIONS
from motus_ros.data.recording import RecordingSession
from motus_ros.data.topics import (ALL_TOPICS, adapt_qos, apply_image_transport, default_topic_specs,
                                   parse_topic_specs)
from motus_ros.ros.run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters

PARAMS = [
    Param("output_dir", "data/episodes", "folder receiving one bag folder per episode (relative "
          "paths are relative to the working directory)"),
    Param("robot_profile", "sim", "robot name stored with each episode (sim, agilex_aloha2, "
          "ac_one, ...)", live=True),
    Param("topics", default_topic_specs(), "topics to record: '/topic:package/msg/Type', '/topic' "
          "(type taken from the graph) or '*' (every topic in the graph)"),
    Param("exclude_topics", ["/rosout", "/parameter_events", "/diagnostics"],
          "topics never recorded when 'topics' contains '*'", live=True),
    Param("image_transport", "raw", "how the cameras are read: raw (the topics as listed) or "
          "compressed (each sensor_msgs/msg/Image entry of 'topics' recorded from <topic>/compressed "
          "as the sensor_msgs/CompressedImage the camera publishes, stored as received)",
          choices=list(layout.IMAGE_TRANSPORTS)),
    Param("image_compression", "none", "how sensor_msgs/Image topics are stored: raw, or "
          "re-encoded to sensor_msgs/CompressedImage on <topic>/compressed (CompressedImage "
          "topics are always stored as received)",
          choices=list(COMPRESSIONS), live=True),
    Param("jpeg_quality", 90, "JPEG quality (1-100) when image_compression is jpeg", min=1, max=100,
          live=True),
    Param("png_level", 3, "PNG compression level (0-9) when image_compression is png", min=0, max=9,
          live=True),
    Param("qos_reliability", "auto", "subscription reliability: auto matches the publishers "
          "(reliable when all are, re-subscribing when an incompatible one appears)",
          choices=["auto", "reliable", "best_effort"]),
    Param("qos_depth", 100, "subscription history depth in messages", min=1, max=100000),
    Param("queue_size", 3000, "writer queue bound in messages; overflow is counted and reported "
          "as an ERROR on /diagnostics", min=1, max=10_000_000, live=True),
    Param("queue_max_mb", 1024.0, "writer queue bound in MiB of queued message data",
          min=1.0, max=1e6, live=True),
    Param("flush_period_s", 0.5, "seconds between MCAP chunk flushes: at most this much data "
          "is lost if the recorder is killed", min=0.01, max=600.0, live=True),
    Param("fsync", True, "fsync the bag at every flush (survives power loss, not just crashes)",
          live=True),
    Param("max_bag_duration_s", 60.0, "seconds of bag time (message receive stamps) per MCAP file "
          "of an episode, as rosbag2's --max-bag-duration: a full file is closed (summary and "
          "footer written, readable by any MCAP reader even after a crash) and <episode>_<n+1>.mcap "
          "opens; 0 = one file per episode", min=0.0, max=86400.0, live=True),
    Param("min_free_mb", 1024.0, "MiB of free disk required to start, and below which a running "
          "episode is stopped and kept", min=0.0, max=1e9, live=True),
    Param("disk_check_period_s", 1.0, "seconds between free-disk checks while recording",
          min=0.01, max=600.0, live=True),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics reports", min=0.05, max=600.0,
          live=True),
    Param("discover_period_s", 1.0, "seconds between graph scans for topics whose type is not "
          "given", min=0.05, max=600.0, live=True),
    Param("calibration_files", ["auto"], "calibration files/folders whose path and sha256 are "
          "stored with each episode; 'auto' = calibration/<robot_profile>/", live=True),
    Param("autostart_task", "", "when not empty, start an episode with this task at start-up"),
    Param("stop_timeout_s", 120.0, "seconds allowed to drain the writer queue when an episode "
          "stops", min=0.1, max=3600.0, live=True),
]


def _message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, sub, name = bag_types.normalize_type(msgtype).split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


class RecorderNode(Node):
    """Records configured topics into one rosbag2 MCAP bag per episode."""

    def __init__(self, free_space_fn: Callable[[], float] | None = None, **kwargs):
        super().__init__("recorder", **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._on_params)
        try:
            self.specs = parse_topic_specs(list(self.p["topics"]))
        except ValueError as exc:
            raise ParameterError(f"parameter 'topics': {exc}") from None
        try:
            self.specs = apply_image_transport(self.specs, self.p["image_transport"],
                                               field="parameter 'image_transport'")
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        for spec in self.specs:
            if spec.msgtype is None:
                continue
            try:
                _message_class(spec.msgtype)
                bag_types.msgdef_and_hash(spec.msgtype)
            except (ImportError, AttributeError, KeyError) as exc:
                raise ParameterError(f"parameter 'topics': {spec.topic}:{spec.msgtype}: type not "
                                     f"importable or unknown to the bag typestore ({exc})") from None
        self.output_dir = Path(self.p["output_dir"]).expanduser()
        self._free_mb = free_space_fn or (lambda: ep.free_mb(self.output_dir))
        self._lock = threading.RLock()
        self._subs: dict[str, tuple[object, str]] = {}  # topic -> (subscription, type)
        # topic -> QoS profiles its publishers offered (rosbags Qos), read from the graph when the
        # topic is subscribed and again when it is added to an episode's bag
        self._offered: dict[str, tuple] = {}
        self._unknown_warned: set[str] = set()
        self._resubscribe: set[str] = set()
        self._lost: dict[str, int] = {}  # topic -> messages DDS reported lost (best effort)
        self._lost_at_start: dict[str, int] = {}
        self._session: RecordingSession | None = None
        self._meta: dict | None = None
        self._last_episode: dict = {}
        self._drop_reported = 0.0
        self._sub_group = ReentrantCallbackGroup()
        self._ctl_group = MutuallyExclusiveCallbackGroup()
        self._diag = diagnostics.DiagnosticsPublisher(self)
        self.create_service(StartEpisode, layout.SERVICES["start_episode"], self._on_start,
                            callback_group=self._ctl_group)
        self.create_service(StopEpisode, layout.SERVICES["stop_episode"], self._on_stop,
                            callback_group=self._ctl_group)
        self._discover()
        # Wall-clock timers: disk and diagnostics must not slow down with simulated time.
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self._period_timers = {
            "discover_period_s": self.create_timer(self.p["discover_period_s"], self._discover,
                                                   callback_group=self._ctl_group, clock=wall),
            "disk_check_period_s": self.create_timer(self.p["disk_check_period_s"], self._check_disk,
                                                     callback_group=self._ctl_group, clock=wall),
            "diagnostics_period_s": self.create_timer(self.p["diagnostics_period_s"],
                                                      self._publish_diagnostics,
                                                      callback_group=self._ctl_group, clock=wall)}
        if self.p["autostart_task"]:
            ok, message = self.start_episode(self.p["autostart_task"], "")
            if not ok:
                self.get_logger().error(f"autostart: {message}")
        self.get_logger().info(f"recording {len(self.specs)} topic entries into {self.output_dir}")

    def _on_params(self, changed: dict) -> None:
        # The other live values are read where they are used (disk checks, scans, episode start).
        for name, timer in self._period_timers.items():
            if name in changed:
                timer.timer_period_ns = int(changed[name] * 1e9)

    # --- subscriptions ---
    def _discover(self) -> None:
        """Subscribe to every configured topic whose type is known (given or found in the graph);
        re-subscribe topics whose publishers offered an incompatible QoS."""
        for topic in list(self._resubscribe):
            self._resubscribe.discard(topic)
            with self._lock:
                sub, msgtype = self._subs.pop(topic)
            self.destroy_subscription(sub)
            self._subscribe(topic, msgtype)
            self.get_logger().info(f"{topic}: re-subscribed with {self._qos_name(topic)} QoS to "
                                   "match its publishers")
        if all(s.msgtype is not None for s in self.specs) and len(self._subs) >= len(self.specs):
            return
        graph = dict(self.get_topic_names_and_types())
        wanted: dict[str, str | None] = {s.topic: s.msgtype for s in self.specs if s.topic != ALL_TOPICS}
        if any(s.topic == ALL_TOPICS for s in self.specs):
            excluded = set(self.p["exclude_topics"])
            for topic in graph:
                if topic not in excluded and topic not in wanted and not topic.startswith("/_"):
                    wanted[topic] = None
        for topic, msgtype in wanted.items():
            if topic in self._subs:
                continue
            if msgtype is None:
                types = graph.get(topic, [])
                if not types:
                    continue
                msgtype = types[0]
                if len(types) > 1:
                    self.get_logger().warning(f"{topic} has several types {types}; recording {msgtype}")
                try:
                    bag_types.msgdef_and_hash(msgtype)
                    _message_class(msgtype)
                except (ImportError, AttributeError, KeyError, ValueError) as exc:
                    if topic not in self._unknown_warned:
                        self._unknown_warned.add(topic)
                        self.get_logger().error(f"not recording {topic}: type {msgtype} cannot be "
                                                f"stored ({exc})")
                    continue
            self._subscribe(topic, msgtype)

    def _offered_qos(self, topic: str, infos=None, query: bool = True) -> tuple:
        """The QoS profiles the topic's publishers offer now (rosbag2 records them per topic);
        the last non-empty answer when no publisher is visible (or query is False, e.g. after
        rclpy shut down)."""
        if infos is None:
            try:
                infos = self.get_publishers_info_by_topic(topic) if query else []
            except Exception:  # noqa: BLE001 - context already shut down: use what is known
                infos = []
        profiles = tuple(qos_from_rclpy(info.qos_profile) for info in infos)
        if profiles:
            self._offered[topic] = profiles
        return self._offered.get(topic, ())

    def _qos_for(self, topic: str) -> QoSProfile:
        offered = []
        infos = self.get_publishers_info_by_topic(topic)
        self._offered_qos(topic, infos)
        for info in infos:
            qos = info.qos_profile
            offered.append((qos.reliability == ReliabilityPolicy.RELIABLE,
                            qos.durability == DurabilityPolicy.TRANSIENT_LOCAL))
        reliable, latched = adapt_qos(offered)
        if self.p["qos_reliability"] != "auto":
            reliable = self.p["qos_reliability"] == "reliable"
        return QoSProfile(
            depth=self.p["qos_depth"],
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _qos_name(self, topic: str) -> str:
        sub = self._subs.get(topic)
        if sub is None:
            return "no"
        return "reliable" if sub[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best-effort"

    def _on_incompatible_qos(self, topic: str) -> None:
        if self.p["qos_reliability"] == "auto":
            self._resubscribe.add(topic)  # done by the discovery timer, outside this callback
        else:
            self.get_logger().error(f"{topic}: a publisher's QoS is incompatible with "
                                    f"qos_reliability={self.p['qos_reliability']}: not recorded",
                                    throttle_duration_sec=5.0)

    def _on_message_lost(self, topic: str, info) -> None:
        self._lost[topic] = self._lost.get(topic, 0) + int(info.total_count_change)
        # Counted per topic in /diagnostics (WARN); logged at most every 10 s so a CPU-starved
        # machine does not drown the console.
        self.get_logger().warning(f"{topic}: DDS lost {self._lost[topic]} message(s) before they "
                                  "reached the recorder (a best-effort publisher, or a reliable "
                                  "one whose keep-last history overflowed while the recorder "
                                  "lagged: give it a deeper history)", throttle_duration_sec=10.0)

    def _subscribe(self, topic: str, msgtype: str) -> None:
        msgtype = bag_types.normalize_type(msgtype)
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda _info, t=topic: self._on_incompatible_qos(t),
            message_lost=lambda info, t=topic: self._on_message_lost(t, info))
        sub = self.create_subscription(
            _message_class(msgtype), topic, lambda data, t=topic: self._on_message(t, data),
            self._qos_for(topic), raw=True, callback_group=self._sub_group,
            event_callbacks=events)
        with self._lock:
            self._subs[topic] = (sub, msgtype)
            if self._session is not None:
                self._add_to_session(topic, msgtype)

    def _add_to_session(self, topic: str, msgtype: str, force: bool = False,
                        query: bool = True) -> bool:
        """Add a subscribed topic to the episode's bag with its publishers' QoS. With no publisher
        visible yet the topic waits for its first message (or the end of the episode: force), so
        that the bag's offered_qos_profiles are those of the publishers actually recorded."""
        offered = self._offered_qos(topic, query=query)
        if not offered and not force:
            return False
        out = self._session.add_topic(topic, msgtype, offered)
        self._meta["topics"][topic] = {
            "type": msgtype, "bag_topic": out,
            "offered_qos": [{k: q[k] for k in ("reliability", "durability", "history", "depth")}
                            for q in dump_qos(offered)]}
        return True

    def _on_message(self, topic: str, data: bytes) -> None:
        session = self._session
        if session is None:
            return
        stamp = self.get_clock().now().nanoseconds
        if topic not in session.outputs:  # first message of a topic without publisher at start
            with self._lock:
                if self._session is not session or topic not in self._subs:
                    return
                if topic not in session.outputs:
                    self._add_to_session(topic, self._subs[topic][1], force=True)
        session.submit(topic, stamp, data)

    def _on_drop(self, topic: str, dropped: int) -> None:
        self.get_logger().error(f"writer queue full: dropped {dropped} message(s) of {topic} so "
                                f"far in this episode (disk too slow?)",
                                throttle_duration_sec=1.0)
        now = time.monotonic()
        if now - self._drop_reported > 0.2:
            self._drop_reported = now
            self._publish_diagnostics()

    # --- episodes ---
    def _calibration_paths(self) -> list[Path]:
        entries = list(self.p["calibration_files"])
        result = []
        for entry in entries:
            if entry == "auto":
                folder = paths.calibration_dir() / self.p["robot_profile"]
                if folder.is_dir():
                    result.append(folder)
            elif entry:
                result.append(paths.resolve(entry))
        return result

    def start_episode(self, task: str, operator: str) -> tuple[bool, str]:
        """Open a new bag; returns (ok, episode id or the reason of a refusal)."""
        with self._lock:
            if self._session is not None:
                return False, f"episode {self._meta['episode_id']} is already recording"
            free = self._free_mb()
            if free < self.p["min_free_mb"]:
                return False, (f"not enough free disk in {self.output_dir}: {free:.0f} MiB, "
                               f"min_free_mb is {self.p['min_free_mb']:.0f}")
            self.output_dir.mkdir(parents=True, exist_ok=True)
            episode_id = ep.new_episode_id(self.output_dir, self.p["robot_profile"])
            bag_dir = self.output_dir / episode_id
            try:
                session = RecordingSession(
                    bag_dir, compression=self.p["image_compression"],
                    jpeg_quality=self.p["jpeg_quality"], png_level=self.p["png_level"],
                    flush_period_s=self.p["flush_period_s"], fsync=self.p["fsync"],
                    max_queue=self.p["queue_size"], max_queue_mb=self.p["queue_max_mb"],
                    on_drop=self._on_drop, max_file_duration_s=self.p["max_bag_duration_s"])
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                return False, f"cannot open bag {bag_dir}: {exc}"
            now = time.time()
            self._meta = {
                "schema_version": ep.SCHEMA_VERSION, "episode_id": episode_id,
                "status": "recording", "robot_profile": self.p["robot_profile"],
                "task": task, "operator": operator,
                "start_time": ep.utc_iso(now), "start_time_unix": now,
                "end_time": None, "end_time_unix": None, "duration_s": None,
                "bag": {"storage": "mcap", "files": session.writer.file_names,
                        "rosbag2_version": 9, "max_bag_duration_s": self.p["max_bag_duration_s"]},
                "image_compression": self.p["image_compression"],
                "image_transport": self.p["image_transport"],
                "topics": {}, "message_counts": {}, "dropped": {},
                "calibration": ep.calibration_entries(self._calibration_paths()),
                "stop_reason": None,
            }
            self._session = session
            self._lost_at_start = dict(self._lost)
            for topic, (_, msgtype) in self._subs.items():
                self._add_to_session(topic, msgtype)
            ep.write_json_atomic(bag_dir / ep.SIDECAR, self._meta)
            self.get_logger().info(f"episode {episode_id} started: task {task!r}")
            return True, episode_id

    def stop_episode(self, keep: bool, reason: str = "requested") -> tuple[bool, str, str]:
        """Close (keep) or delete (discard) the current bag; returns (ok, path, message)."""
        with self._lock:
            session, meta = self._session, self._meta
            if session is None:
                return False, "", "no episode is recording"
            try:
                return self._finish(session, meta, keep, reason)
            finally:
                self._session = None  # only now: episode_stats() is None once the bag is final

    def _finish(self, session: RecordingSession, meta: dict, keep: bool,
            reason: str) -> tuple[bool, str, str]:
        if keep:  # topics that never had a publisher: in the bag with 0 messages, as before
            for topic, (_, msgtype) in self._subs.items():
                if topic not in session.outputs:  # no graph query: rclpy may be shut down
                    self._add_to_session(topic, msgtype, force=True, query=False)
        try:
            path = session.stop(keep, custom_data={
                "motus.episode_id": meta["episode_id"], "motus.task": meta["task"],
                "motus.robot_profile": meta["robot_profile"]},
                timeout=self.p["stop_timeout_s"])
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"episode {meta['episode_id']}: stop failed: {exc}")
            return False, "", f"stop failed: {exc}"
        now = time.time()
        stats = session.stats()
        meta.update({
            "end_time": ep.utc_iso(now), "end_time_unix": now,
            "duration_s": now - meta["start_time_unix"], "stop_reason": reason,
            "message_counts": {meta["topics"][t]["bag_topic"]: n for t, n in stats["written"].items()},
            "dropped": stats["dropped"], "writer_error": stats["error"],
            "bytes_written": stats["bytes_written"],
            "bag": {**meta["bag"], "files": stats["files"], "splits": stats["splits"]},
            # lost in transport before reaching the recorder (best-effort publishers), per topic
            "dds_lost": {t: n - self._lost_at_start.get(t, 0) for t, n in self._lost.items()
                         if n > self._lost_at_start.get(t, 0)},
        })
        for info in meta["topics"].values():
            meta["message_counts"].setdefault(info["bag_topic"], 0)
        self._last_episode = {**meta, "status": "kept" if keep else "discarded"}
        if not keep:
            self.get_logger().info(f"episode {meta['episode_id']} discarded")
            return True, "", f"episode {meta['episode_id']} discarded"
        meta["status"] = "complete" if reason == "requested" and not stats["error"] else "stopped"
        ep.write_json_atomic(path / ep.SIDECAR, meta)
        total = sum(meta["message_counts"].values())
        dropped = sum(stats["dropped"].values())
        level = self.get_logger().error if dropped or stats["error"] else self.get_logger().info
        lost = sum(meta["dds_lost"].values())
        level(f"episode {meta['episode_id']} kept: {total} messages, {dropped} dropped, "
              f"{lost} lost in transport, reason {reason} -> {path}")
        return True, str(path), f"{total} messages written, {dropped} dropped ({reason})"

    def episode_stats(self) -> dict | None:
        """Counters of the running episode (received/written/dropped per topic), None when idle."""
        session = self._session
        return None if session is None else session.stats()

    def _on_start(self, request, response):
        response.success, message = self.start_episode(request.task, request.operator_name)
        response.episode_id = message if response.success else ""
        response.message = f"recording episode {message}" if response.success else message
        return response

    def _on_stop(self, request, response):
        response.success, response.path, response.message = self.stop_episode(request.keep)
        return response

    # --- periodic checks ---
    def _check_disk(self) -> None:
        session = self._session
        if session is None:
            return
        if session.error is not None:
            self.get_logger().error(f"bag writer failed: {session.error}; stopping the episode")
            self.stop_episode(True, reason=f"writer error: {session.error}")
            return
        free = self._free_mb()
        if free < self.p["min_free_mb"]:
            self.get_logger().error(f"free disk {free:.0f} MiB below min_free_mb "
                                    f"{self.p['min_free_mb']:.0f}: stopping and keeping the episode")
            self.stop_episode(True, reason="low_disk")
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        session, meta = self._session, self._meta
        try:
            free = self._free_mb()
        except OSError:
            free = -1.0
        values = {"recording": session is not None, "free_mb": float(free),
                  "min_free_mb": float(self.p["min_free_mb"]), "subscribed_topics": len(self._subs)}
        for topic, n in self._lost.items():
            values[f"dds_lost {topic}"] = n
        level, message = diagnostics.OK, "idle"
        if session is not None:
            stats = session.stats()
            dropped = session.total_dropped
            values.update({"episode_id": meta["episode_id"], "queue_depth": stats["queue_depth"],
                           "max_queue_depth": stats["max_queue_depth"],
                           "written": sum(stats["written"].values()), "dropped": dropped,
                           "bytes_written": stats["bytes_written"],
                           "bag_files": len(stats["files"]),
                           "max_split_s": stats["max_split_s"]})
            for topic, n in stats["dropped"].items():
                values[f"dropped {topic}"] = n
            message = f"recording {meta['episode_id']}"
            if dropped or stats["error"]:
                level = diagnostics.ERROR
                message = (f"DATA LOSS: {dropped} message(s) dropped (writer queue full)"
                           if dropped else f"bag writer failed: {stats['error']}")
        elif self._last_episode:
            last = self._last_episode
            values.update({"last_episode": last["episode_id"],
                           "last_stop_reason": last["stop_reason"],
                           "last_dropped": sum(last["dropped"].values())})
            if last["stop_reason"] == "low_disk":
                level, message = diagnostics.ERROR, "last episode stopped: low disk"
            elif sum(last["dropped"].values()):
                level, message = diagnostics.ERROR, "last episode dropped messages"
        if level == diagnostics.OK and self._lost:
            level, message = diagnostics.WARN, f"{message}; DDS lost {sum(self._lost.values())} message(s)"
        if level == diagnostics.OK and 0 <= free < 2 * self.p["min_free_mb"]:
            level, message = diagnostics.WARN, f"{message}; free disk {free:.0f} MiB is low"
        self._diag.publish(diagnostics.status(f"{self.get_name()}: recorder", level, message, values))

    def close(self) -> None:
        """Keep the running episode when the node shuts down."""
        if self._session is not None:
            self.stop_episode(True, reason="shutdown")


def main(args=None):
    return run_node(lambda: RecorderNode(), args)


if __name__ == "__main__":
    main()
