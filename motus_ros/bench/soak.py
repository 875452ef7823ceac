"""`motus-ros bench soak --minutes N`: the sim graph through episodes while faults are injected.

Brings up config/graphs/sim.yaml (the graph `make demo` runs) on its own ROS domain and runs
episodes (GraphMonitor.start_fresh_episode: disable, /sim/reset, wait for chunks of the new
scene, enable), each recorded by the recorder, for N minutes and at least one round of the fault
schedule. Each episode gets one fault, in this repeating order:

  policy_kill       SIGKILL the policy process, then start a new one (it loads the model again)
                    -> chunk_executor ERROR "no chunk from the policy"
  camera_stop       the policy's `high` camera stops. The sim renders the cameras inside the arm
                    driver process, so there is no camera process to kill: the policy reads that
                    camera through a relay in this process (a remapping of its topic) and the
                    relay pauses -> policy_node ERROR "not publishing: ... stale"
  garbage_commands  NaN, inf, wrong sizes, wrong and duplicate names, far out-of-limit values on
                    /motus/joint_command -> each invalid one counted on the arm driver's
                    /diagnostics (a rejected message is WARN, not ERROR: the arm is fine),
                    out-of-limit ones clipped
  garbage_chunks    future stamps, NaN/inf rows, wrong names, wrong horizon, bad period, a
                    non-control mode on /motus/action_chunk -> each counted by the chunk executor
                    (WARN), which keeps accepting the policy's chunks afterwards
  disk_full         the recorder's disk fills up -> recorder ERROR "low disk", episode stopped
  estop             /arm/emergency_stop, then /arm/release_emergency_stop and /arm/enable
                    -> arm_driver ERROR "emergency stop"

A small disk, without mounting one: the recorder's parameters are read once at start-up, so it
starts with min_free_mb = (free space of its output folder now) - --disk-headroom-mb, i.e. it sees
a disk with that much room left. The disk fault allocates a filler file (posix_fallocate, no
writing) that takes the free space below min_free_mb, waits for the recorder's ERROR, and deletes
it. Bags are read (and deleted, unless --keep-bags) after every episode.

Printed JSON: the four counts that must be 0 --
  driver_restarts          the arm driver process exited or was replaced (bringup never restarts
                           it), or its tick counter went back (node recreated in the process)
  commands_outside_limits  JointState commands the chunk executor published on
                           /motus/joint_command with a value outside the calibration limits (or
                           non-finite / wrong size); the injected garbage is not counted
  joints_beyond_limits     /puppet/joint_states messages with an arm joint beyond its limit by
                           more than --limit-tolerance (gripper readings are reported beside, as
                           gripper_readings_outside_range: the sim measures the gripper on one
                           finger whose slide joint has soft limits, so a squeezed cube pushes the
                           reading past 0 or 1 while every gripper command stays in range)
  unreadable_bags          bag folders with an MCAP file that the independent `mcap` reader
                           cannot read (make_reader + iter_messages), read after the recorder
                           closed them
-- the faults injected per kind, and per kind the wall-clock time from the fault to its report
(median, max, count, never), to recovery, and what else was checked. Times are measured where the
reports arrive (this process), so they include its own delivery lag on a loaded machine; for the
driver's reports (it runs on wall time) the time it published them is given too. A policy process
that publishes no chunk within --policy-restart-timeout is replaced and listed
(silent_policy_starts). The soak runs on a ROS domain where no other node is visible: it kills
nodes and e-stops, so it must never share one with anything else.

The run folder (--out) keeps summary.json (the printed JSON), faults.json (every fault with its
details), timeline.txt (phases, wall seconds from the first episode), diagnostics.jsonl (every
/diagnostics status received), trace.npz (every joint state and executor command: wall time,
header stamp, positions), bringup.log and logs/ (one log per node; logs/policy/<n>/ per policy
process).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from motus_ros.cli import CliError
from motus_ros.graph.monitor import GraphMonitor, GraphMonitorError
from motus_ros.stamps import ns_to_time_msg, to_seconds

HELP = "sim episodes under injected faults: driver restarts, limit violations, unreadable bags, fault-to-ERROR times"

FAULTS = ("policy_kill", "camera_stop", "garbage_commands", "garbage_chunks", "disk_full", "estop")
GARBAGE_FRAME = "motus_soak_garbage"      # header.frame_id of everything this bench injects
RELAY_CAMERA = "high"
RELAY_PREFIX = "/soak_relay"
OPTIONAL_NODES = ("world_model", "visualizer", "recorder")
DRIVER_STATUS = "arm_driver: safety"
EXECUTOR_STATUS = "chunk_executor"
POLICY_STATUS = "policy_node"
RECORDER_STATUS = "recorder: recorder"
ERROR = 2
# What each fault must produce on /diagnostics (the garbage is counted, at WARN or above).
REPORTS = {
    "policy_kill": f"ERROR {EXECUTOR_STATUS}: no chunk from the policy",
    "camera_stop": f"ERROR {POLICY_STATUS}: not publishing (stale / no data)",
    "garbage_commands": f"{DRIVER_STATUS}: every invalid command counted (wrong_size, wrong_names, "
                        "non_finite, out_of_limits; WARN)",
    "garbage_chunks": f"{EXECUTOR_STATUS}: every garbage chunk counted (rejected_<reason>; WARN)",
    "disk_full": f"ERROR {RECORDER_STATUS}: last episode stopped: low disk",
    "estop": f"ERROR {DRIVER_STATUS}: emergency stop",
}
# Statuses whose ERROR a fault explains (from the fault to the end of its episode); any other
# ERROR is reported as unexpected (e.g. the executor's policy timeout when inference is too slow).
EXPECTED_ERRORS = {
    "policy_kill": {EXECUTOR_STATUS, POLICY_STATUS},   # the new policy: no data until cameras arrive
    "camera_stop": {POLICY_STATUS, EXECUTOR_STATUS},   # no observation, so no chunk
    "garbage_commands": set(),
    "garbage_chunks": set(),
    "disk_full": {RECORDER_STATUS},
    "estop": {DRIVER_STATUS},
}
GARBAGE_PERIOD_S = 0.05   # wall seconds between injected garbage messages
SETTLE_S = 1.5          # wall seconds an episode runs before its fault
EPISODE_WAIT_S = 120.0  # wall seconds for the policy's chunks of a new scene
POLICY_STARTS = 3       # policy processes tried in a row until one publishes chunks


class GraphDied(Exception):
    """A required node of the graph exited: the soak cannot go on."""


@dataclass
class DiagEvent:
    t: float                 # wall (monotonic) time the monitor received it
    name: str
    level: int
    message: str
    values: dict
    stamp: float = 0.0       # header stamp: the publishing node's clock (simulated time on sim time)


@dataclass
class FaultRecord:
    kind: str
    episode: int
    t_fault: float
    latency_s: float | None = None
    recovery_s: float | None = None
    skipped: str = ""
    details: dict = field(default_factory=dict)


def _level(raw) -> int:
    return raw[0] if isinstance(raw, (bytes, bytearray)) else int(raw)


def _int(values: dict, key: str) -> int:
    try:
        return int(float(values.get(key, 0)))
    except (TypeError, ValueError):
        return 0


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


class SoakMonitor(GraphMonitor):
    """Watches joint states, commands and /diagnostics, relays the policy's camera and injects
    garbage."""

    def __init__(self, limits, tolerance: float):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool

        from motus_msgs.msg import ActionChunk
        from motus_ros.layout import TOPICS, camera_image_topic
        from motus_ros.ros.qos import LATCHED, image_qos

        # Everything the callbacks touch exists before the base class starts spinning.
        self.lower = np.asarray(limits.lower, dtype=np.float64)
        self.upper = np.asarray(limits.upper, dtype=np.float64)
        self.tolerance = float(tolerance)
        self.diag: list[DiagEvent] = []
        self.latest: dict[str, DiagEvent] = {}
        self.error_onsets: list[DiagEvent] = []            # transitions into ERROR, per status
        self.states: deque[tuple[float, float, np.ndarray]] = deque(maxlen=3000)   # (wall, stamp, q)
        self.beyond_by_joint = np.zeros(len(self.lower), dtype=int)   # states beyond, per joint
        # every joint state and executor command: (wall time received, header stamp s, positions)
        self.state_trace: list[tuple[float, float, np.ndarray]] = []
        self.command_trace: list[tuple[float, float, np.ndarray]] = []
        self.joint_states = 0
        self.joints_beyond = 0
        self.gripper_outside = 0
        self.beyond_events: list[tuple[float, int, float]] = []   # (wall time, joint, value), first 2000
        self.max_excess = np.zeros(len(self.lower))
        self.malformed_states = 0
        self.commands = 0
        self.last_command_wall = 0.0
        self.commands_outside = 0
        self.command_events: list[tuple[float, str]] = []          # (wall time, problem), first 2000
        self.policy_chunks_wall: list[float] = []
        self.relay_on = True
        self.relayed = 0
        self.arm_enabled: list[tuple[float, bool]] = []            # /arm/enabled as received
        super().__init__("soak_monitor")
        n = self.node
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        n.create_subscription(JointState, TOPICS["joint_states"], self._on_state, reliable)
        n.create_subscription(JointState, TOPICS["joint_command"], self._on_command, reliable)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        n.create_subscription(Bool, TOPICS["arm_enabled"], self._on_arm_enabled, LATCHED)
        source = camera_image_topic(RELAY_CAMERA)
        self.relay_pub = n.create_publisher(Image, RELAY_PREFIX + source, image_qos())
        # Its own callback group: a frame is not held up behind the other callbacks (the
        # executor has two threads), so the relay adds as little lag as it can.
        n.create_subscription(Image, source, self._on_relay, image_qos(), raw=True,
                              callback_group=MutuallyExclusiveCallbackGroup())
        self.command_pub = n.create_publisher(JointState, TOPICS["joint_command"], 50)
        self.chunk_pub = n.create_publisher(ActionChunk, TOPICS["action_chunk"], 50)

    # -- callbacks ------------------------------------------------------------------------------
    def _on_chunk(self, msg) -> None:
        if msg.header.frame_id == GARBAGE_FRAME:
            return                       # ours: not a chunk of the policy
        super()._on_chunk(msg)
        with self._lock:
            self.policy_chunks_wall.append(time.monotonic())

    def _on_state(self, msg) -> None:
        from motus_ros.layout import GRIPPER_INDICES, JOINT_NAMES

        q = np.asarray(msg.position, dtype=np.float64)
        with self._lock:
            self.joint_states += 1
            if list(msg.name) != list(JOINT_NAMES) or q.shape != self.lower.shape:
                self.malformed_states += 1
                return
            self.states.append((time.monotonic(), to_seconds(msg.header.stamp), q))
            self.state_trace.append(self.states[-1])
            excess = np.maximum(self.lower - q, q - self.upper)
            excess = np.where(np.isfinite(excess), excess, np.inf)
            self.max_excess = np.maximum(self.max_excess, excess)
            beyond = excess > self.tolerance
            self.beyond_by_joint += beyond                 # every joint, grippers included
            if np.any(beyond[list(GRIPPER_INDICES)]):
                self.gripper_outside += 1
            arm_excess = excess.copy()
            arm_excess[list(GRIPPER_INDICES)] = -np.inf
            if np.any(arm_excess > self.tolerance):
                self.joints_beyond += 1
                if len(self.beyond_events) < 2000:
                    i = int(np.argmax(arm_excess))
                    self.beyond_events.append((self.states[-1][0], i, float(q[i])))

    def _on_command(self, msg) -> None:
        from motus_ros.layout import JOINT_NAMES

        if msg.header.frame_id == GARBAGE_FRAME:
            return
        q = np.asarray(msg.position, dtype=np.float64)
        with self._lock:
            self.commands += 1
            self.last_command_wall = time.monotonic()
            problem = ""
            if q.shape == self.lower.shape:
                self.command_trace.append((self.last_command_wall, to_seconds(msg.header.stamp), q))
            if list(msg.name) != list(JOINT_NAMES) or q.shape != self.lower.shape:
                problem = f"{len(msg.name)} names / {q.shape[0]} positions"
            elif not np.all(np.isfinite(q)):
                problem = "non-finite value"
            elif np.any(q < self.lower) or np.any(q > self.upper):
                i = int(np.argmax(np.maximum(self.lower - q, q - self.upper)))
                problem = f"{JOINT_NAMES[i]}={q[i]:.4f} outside [{self.lower[i]:.4f}, {self.upper[i]:.4f}]"
            if problem:
                self.commands_outside += 1
                if len(self.command_events) < 2000:
                    self.command_events.append((self.last_command_wall, problem))

    def _on_diagnostics(self, msg) -> None:
        t = time.monotonic()
        with self._lock:
            for s in msg.status:
                event = DiagEvent(t, s.name, _level(s.level), s.message,
                                  {kv.key: kv.value for kv in s.values}, to_seconds(msg.header.stamp))
                before = self.latest.get(s.name)
                if event.level == ERROR and (before is None or before.level != ERROR):
                    self.error_onsets.append(event)
                self.latest[s.name] = event
                self.diag.append(event)

    def _on_arm_enabled(self, msg) -> None:
        with self._lock:
            self.arm_enabled.append((time.monotonic(), bool(msg.data)))

    def _on_relay(self, data: bytes) -> None:
        if self.relay_on:
            self.relay_pub.publish(data)
            self.relayed += 1

    # -- queries --------------------------------------------------------------------------------
    def diag_index(self) -> int:
        with self._lock:
            return len(self.diag)

    def find_diag(self, name: str, predicate, since: int) -> DiagEvent | None:
        with self._lock:
            events = self.diag[since:]
        return next((e for e in events if e.name == name and predicate(e)), None)

    def latest_values(self, name: str) -> dict:
        with self._lock:
            event = self.latest.get(name)
        return dict(event.values) if event is not None else {}

    def position(self) -> np.ndarray | None:
        with self._lock:
            return self.states[-1][2].copy() if self.states else None

    def newest_stamp(self) -> float | None:
        with self._lock:
            return self.states[-1][1] if self.states else None

    def motion(self, s0: float, s1: float) -> dict | None:
        """Largest range of an arm joint (rad) and of a gripper over the joint states stamped in
        [s0, s1] (simulated time: messages that reach this process late still count where they
        belong)."""
        from motus_ros.layout import GRIPPER_INDICES, JOINT_NAMES

        with self._lock:
            window = [q for _, stamp, q in self.states if s0 <= stamp <= s1]
        if len(window) < 2:
            return None
        span = np.ptp(np.stack(window), axis=0)
        arm = [i for i in range(len(span)) if i not in GRIPPER_INDICES]
        worst = max(arm, key=lambda i: span[i])
        return {"arm_rad": round(float(span[worst]), 4), "arm_joint": JOINT_NAMES[worst],
                "gripper": round(float(max(span[i] for i in GRIPPER_INDICES)), 4), "states": len(window)}

    def policy_chunks_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for w in self.policy_chunks_wall if w > t)


class PolicyProcess:
    """The policy node in its own GraphRunner, so that it can be killed and started again while
    the rest of the graph keeps running (bringup itself never restarts a node)."""

    def __init__(self, graph, log, log_dir: Path):
        self.graph = graph
        self.log = log
        self.log_dir = log_dir
        self.runner = None
        self.generation = 0
        self.unexpected_exits: list[int] = []
        self.killed = 0

    def start(self) -> None:
        from motus_ros.graph.bringup import GraphRunner

        self.generation += 1
        self.runner = GraphRunner(self.graph, out=self.log, log_dir=self.log_dir / str(self.generation))
        self.runner.start()

    @property
    def popen(self):
        return self.runner.processes[0].popen if self.runner is not None and self.runner.processes else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        popen = self.popen
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.wait(timeout=10)
        self.killed += 1
        self.runner.stop(timeout=1.0)     # nothing alive: joins the log reader

    def reap(self) -> None:
        """Record the exit of a policy process that the soak did not kill."""
        if self.popen is not None and not self.alive():
            self.unexpected_exits.append(self.popen.returncode)
            self.runner.stop(timeout=1.0)
            self.runner = None

    def log_tail(self, lines: int = 2) -> list[str]:
        try:
            text = (self.log_dir / str(self.generation) / "policy.log").read_text()
        except OSError:
            return []
        return [line[:300] for line in text.splitlines()[-lines:]]

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()


class Soak:
    def __init__(self, args, run_dir: Path):
        self.args = args
        self.run_dir = run_dir
        self.bags_dir = (run_dir / "bags").resolve()
        self.filler = run_dir.resolve() / "disk_filler.bin"
        self.monitor: SoakMonitor | None = None
        self.runner = None
        self.policy: PolicyProcess | None = None
        self.records: list[FaultRecord] = []
        self.windows: list[tuple[float, float, str]] = []   # (fault, end of its episode, kind)
        self.episodes = 0
        self.episode_start_failures: list[str] = []
        self.silent_policy_starts: list[dict] = []
        self.fault_epoch = 0.0
        self.recorder_refusals: list[str] = []
        self.recording = False
        self.verified: set[str] = set()
        self.bag = {"folders": 0, "files": 0, "messages": 0, "unreadable": 0, "errors": [],
                    "files_without_summary": 0, "count_mismatches": []}
        self.min_free_mb = 0.0
        self.driver_pid = None
        self.driver_ticks = -1
        self.driver_tick_resets = 0
        self.aborted = ""
        self.timeline: list[tuple[float, str]] = [(time.monotonic(), "start-up")]
        self.t_loop = None
        self.t_end = None

    # -- graph ----------------------------------------------------------------------------------
    def build_graphs(self):
        from motus_ros.data.episode import free_mb
        from motus_ros.graph.spec import GraphError, load_graph, with_parameter_overrides
        from motus_ros.layout import camera_image_topic

        try:
            graph = load_graph("sim")
        except GraphError as exc:
            raise CliError(str(exc)) from None
        unknown = [n for n in self.args.without if n not in OPTIONAL_NODES]
        if unknown:
            raise CliError(f"--without {unknown[0]}: expected one of {', '.join(OPTIONAL_NODES)}")
        graph = replace(graph, nodes=tuple(n for n in graph.nodes if n.name not in self.args.without))
        self.bags_dir.mkdir(parents=True, exist_ok=True)
        free = free_mb(self.bags_dir)
        self.min_free_mb = round(free - self.args.disk_headroom_mb, 1)
        if self.min_free_mb < 256:
            raise CliError(f"{self.bags_dir}: {free:.0f} MiB free, too little to leave "
                           f"--disk-headroom-mb {self.args.disk_headroom_mb:g} and 256 MiB behind")
        overrides = {"sim": {"ros__parameters": {"real_time_factor": self.args.real_time_factor}}}
        if any(n.name == "recorder" for n in graph.nodes):
            overrides["recorder"] = {"ros__parameters": {"output_dir": str(self.bags_dir),
                                                         "min_free_mb": self.min_free_mb}}
        graph = with_parameter_overrides(graph, self.run_dir / "overrides.yaml", overrides)
        policy = graph.node("policy")
        source = camera_image_topic(RELAY_CAMERA)
        policy = replace(policy, remappings=policy.remappings + ((source, RELAY_PREFIX + source),))
        main = replace(graph, nodes=tuple(n for n in graph.nodes if n.name != "policy"))
        return graph, main, replace(graph, nodes=(policy,))

    def mark(self, label: str) -> None:
        self.timeline.append((time.monotonic(), label))

    def phase(self, t: float) -> str:
        """The timeline label in force at wall time t."""
        label = self.timeline[0][1]
        for when, text in self.timeline:
            if when > t:
                break
            label = text
        return label

    def check(self) -> None:
        """A required node of the main graph died: stop (the driver's death is a restart)."""
        failed = self.runner.poll()
        if failed is not None:
            raise GraphDied(f"required node {failed.spec.name} exited with code "
                            f"{self.runner.exit_codes[failed.spec.name]} (see logs/{failed.spec.name}.log)")
        values = self.monitor.latest_values(DRIVER_STATUS)
        if values:
            ticks = _int(values, "ticks")
            if ticks < self.driver_ticks:     # a new driver node counts from 0 again
                self.driver_tick_resets += 1
            self.driver_ticks = ticks

    def wait(self, predicate, timeout: float, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.check()
            time.sleep(interval)
        return bool(predicate())

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        return self.monitor.call(srv_type, name, request, timeout=timeout)

    def trigger(self, name: str):
        from std_srvs.srv import Trigger

        return self.call(Trigger, name, Trigger.Request())

    # -- recorder and bags ----------------------------------------------------------------------
    @property
    def has_recorder(self) -> bool:
        return any(p.spec.name == "recorder" for p in self.runner.processes)

    def start_recording(self) -> None:
        from motus_msgs.srv import StartEpisode
        from motus_ros.layout import SERVICES

        if not self.has_recorder:
            return
        res = self.call(StartEpisode, SERVICES["start_episode"],
                        StartEpisode.Request(task="soak", operator_name="motus-ros bench soak"))
        self.recording = bool(res.success)
        if not res.success:
            self.recorder_refusals.append(res.message)

    def stop_recording(self) -> str:
        from motus_msgs.srv import StopEpisode
        from motus_ros.layout import SERVICES

        if not self.recording:
            return ""
        self.recording = False
        res = self.call(StopEpisode, SERVICES["stop_episode"], StopEpisode.Request(keep=True), timeout=150)
        return res.message

    def verify_bags(self) -> None:
        """Read every MCAP file of every closed bag folder with the `mcap` reader (not ours)."""
        from mcap.reader import make_reader

        for folder in sorted(p for p in self.bags_dir.iterdir() if p.is_dir()):
            if folder.name in self.verified:
                continue
            self.verified.add(folder.name)
            self.bag["folders"] += 1
            unreadable, messages = [], 0
            for path in sorted(folder.glob("*.mcap")):
                self.bag["files"] += 1
                try:
                    with open(path, "rb") as f:
                        reader = make_reader(f)
                        if reader.get_summary() is None:
                            self.bag["files_without_summary"] += 1
                        messages += sum(1 for _ in reader.iter_messages())
                except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                    unreadable.append(f"{path.name}: {type(exc).__name__}: {exc}"[:300])
            self.bag["messages"] += messages
            if unreadable or not list(folder.glob("*.mcap")):
                self.bag["unreadable"] += 1
                self.bag["errors"].append(f"{folder.name}: " + ("; ".join(unreadable) or "no .mcap file"))
            sidecar = folder / "episode.json"
            if sidecar.is_file() and not unreadable:
                try:
                    expected = sum(json.loads(sidecar.read_text()).get("message_counts", {}).values())
                    if expected != messages:
                        self.bag["count_mismatches"].append(f"{folder.name}: episode.json {expected}, read {messages}")
                except (ValueError, AttributeError) as exc:
                    self.bag["count_mismatches"].append(f"{folder.name}: episode.json unreadable ({exc})")
            if not self.args.keep_bags:
                shutil.rmtree(folder, ignore_errors=True)

    # -- faults ---------------------------------------------------------------------------------
    def _wait_report(self, rec: FaultRecord, name: str, predicate, since: int, t0: float) -> DiagEvent | None:
        found = {}

        def seen() -> bool:
            found["e"] = self.monitor.find_diag(name, predicate, since)
            return found["e"] is not None
        self.wait(seen, self.args.error_timeout, interval=0.02)
        event = found.get("e")
        if event is not None:
            rec.latency_s = round(event.t - t0, 3)
            rec.details["message"] = event.message
            if name == DRIVER_STATUS:   # the driver runs on wall time: when it published the report
                rec.details["report_published_after_s"] = round(event.stamp - self.fault_epoch, 3)
        return event

    def _wait_policy_chunks(self, since: float, timeout: float) -> bool:
        return self.wait(lambda: self.monitor.policy_chunks_since(since) >= 1, timeout)

    def start_policy(self, why: str, timeout: float, started_at: float | None = None) -> float | None:
        """Kill the policy process if one runs, start a new one and wait for its first chunk (with
        started_at: first wait for the process started then). A process that publishes nothing
        within `timeout` is recorded as a silent start, killed and replaced, up to POLICY_STARTS
        processes. Seconds to the first chunk, None if none came."""
        t0 = started_at or time.monotonic()
        for _ in range(POLICY_STARTS):
            if started_at is None:
                if self.policy.alive():
                    self.policy.kill()
                self.policy.start()
            t_start, started_at = started_at or time.monotonic(), None
            if self._wait_policy_chunks(t_start, timeout):
                return round(time.monotonic() - t0, 3)
            self.silent_policy_starts.append({
                "why": why, "process": self.policy.generation, "pid": self.policy.popen.pid,
                "silent_for_s": round(time.monotonic() - t_start, 1), "log_tail": self.policy.log_tail()})
            self.mark(f"policy process {self.policy.generation} ({why}) published nothing: replaced")
            print(f"[soak] policy process {self.policy.generation} published no chunk within {timeout:.0f} s "
                  f"({why}); starting another", file=sys.stderr, flush=True)
        return None

    def fault_policy_kill(self, rec: FaultRecord) -> None:
        since, t0 = self.monitor.diag_index(), time.monotonic()
        self.policy.kill()
        event = self._wait_report(rec, EXECUTOR_STATUS, lambda e: e.level == ERROR and
                                  "no chunk from the policy" in e.message, since, t0)
        if event is not None:     # the executor holds: how far did the arm move after the ERROR?
            s_error = event.stamp  # the executor's clock: simulated time
            self.wait(lambda: (self.monitor.newest_stamp() or 0.0) >= s_error + 2.0, 15.0)
            rec.details["motion_after_error"] = self.monitor.motion(s_error + 0.5, s_error + 2.0)
        t_restart = time.monotonic()
        silent = len(self.silent_policy_starts)
        if self.start_policy("restart after policy_kill", self.args.policy_restart_timeout) is not None:
            rec.recovery_s = round(time.monotonic() - t0, 3)
            rec.details["policy_first_chunk_after_start_s"] = round(time.monotonic() - t_restart, 3)
        rec.details["silent_policy_starts"] = len(self.silent_policy_starts) - silent

    def fault_camera_stop(self, rec: FaultRecord) -> None:
        since, t0 = self.monitor.diag_index(), time.monotonic()
        self.monitor.relay_on = False
        try:
            self._wait_report(rec, POLICY_STATUS, lambda e: e.level == ERROR and
                              ("stale" in e.message or "no data" in e.message), since, t0)
        finally:
            self.monitor.relay_on = True
        t_resume = time.monotonic()
        if self._wait_policy_chunks(t_resume, 60.0):
            rec.recovery_s = round(time.monotonic() - t0, 3)

    def fault_garbage_commands(self, rec: FaultRecord) -> None:
        from sensor_msgs.msg import JointState

        from motus_ros.layout import DOF, JOINT_NAMES

        names = list(JOINT_NAMES)
        q = self.monitor.position()
        q = np.zeros(DOF) if q is None else q

        def with_value(i, v):
            out = q.copy()
            out[i] = v
            return out
        variants = [
            ("non_finite", names, with_value(0, np.nan)),
            ("non_finite", names, np.full(DOF, np.inf)),
            ("non_finite", names, with_value(9, -np.inf)),
            ("wrong_size", names[:-1], q[:-1]),
            ("wrong_size", [], np.append(q, 0.0)),
            ("wrong_size", [], np.zeros(0)),
            ("wrong_size", names, q[:10]),
            ("wrong_names", [*names[:3], "left_joint99", *names[4:]], q),
            ("wrong_names", [names[1], *names[1:]], q),
            ("wrong_names", [n.upper() for n in names], q),
            ("out_of_limits", names, q + 100.0),           # far outside: rejected, even in clip mode
            ("out_of_limits", names, np.where(np.arange(DOF) % 2, 1e9, -1e9)),
        ]
        before = self.monitor.latest_values(DRIVER_STATUS)
        since, t0 = self.monitor.diag_index(), time.monotonic()
        sent: Counter[str] = Counter()
        for reason, msg_names, positions in variants:
            msg = JointState(name=list(msg_names), position=[float(v) for v in positions])
            msg.header.frame_id = GARBAGE_FRAME
            msg.header.stamp = self.monitor.node.get_clock().now().to_msg()
            self.monitor.command_pub.publish(msg)
            sent[reason] += 1
            # Paced: the driver's command subscription keeps the last 10 messages, and the
            # executor publishes at 30 Hz too; a burst would be partly lost in DDS, not rejected.
            time.sleep(GARBAGE_PERIOD_S)
        invalid = list(sent)

        def counted(e: DiagEvent) -> bool:
            return e.level >= 1 and all(_int(e.values, r) - _int(before, r) >= sent[r] for r in invalid)
        event = self._wait_report(rec, DRIVER_STATUS, counted, since, t0)
        after = event.values if event is not None else self.monitor.latest_values(DRIVER_STATUS)
        rec.details.update(sent=dict(sent), counted={r: _int(after, r) - _int(before, r) for r in sent},
                           callback_errors=_int(after, "callback_errors") - _int(before, "callback_errors"))
        # Still commanding afterwards: the executor's commands keep arriving at the driver.
        if self.wait(lambda: self.monitor.last_command_wall > time.monotonic() - 0.5
                     and self.monitor.policy_chunks_since(t0) >= 1, 30.0):
            rec.recovery_s = round(time.monotonic() - t0, 3)

    def fault_garbage_chunks(self, rec: FaultRecord) -> None:
        from motus_msgs.msg import ActionChunk, InferenceMode
        from motus_ros.layout import CHUNK_SIZE, CONTROL_RATE_HZ, DOF, JOINT_NAMES

        names = list(JOINT_NAMES)
        q = self.monitor.position()
        q = np.zeros(DOF) if q is None else q
        rows = np.tile(q, (CHUNK_SIZE, 1))
        now = self.monitor.now()
        nan_rows, inf_rows = rows.copy(), rows.copy()
        nan_rows[5, 3] = np.nan
        inf_rows[-1] = np.inf
        period = 1.0 / CONTROL_RATE_HZ
        vla, wm = InferenceMode.VLA, InferenceMode.WM
        variants = [  # (reason, stamp, names, period, horizon, positions, mode)
            ("future_stamp", now + 3600.0, names, period, CHUNK_SIZE, rows, vla),
            ("future_stamp", now + 30.0, names, period, CHUNK_SIZE, rows, vla),
            ("non_finite", now, names, period, CHUNK_SIZE, nan_rows, vla),
            ("non_finite", now, names, period, CHUNK_SIZE, inf_rows, vla),
            ("wrong_names", now, [*names[:-1], "right_gripper2"], period, CHUNK_SIZE, rows, vla),
            ("wrong_names", now, [names[0], *names[:-1]], period, CHUNK_SIZE, rows, vla),
            ("wrong_size", now, names, period, CHUNK_SIZE, rows[:-1], vla),
            ("wrong_size", now, names, period, 0, rows[:0], vla),
            ("wrong_size", now, names, period, 2**32 - 1, rows, vla),
            ("bad_period", now, names, 0.0, CHUNK_SIZE, rows, vla),
            ("bad_period", now, names, float("nan"), CHUNK_SIZE, rows, vla),
            ("not_a_control_mode", now, names, period, CHUNK_SIZE, rows, wm),
        ]
        before = self.monitor.latest_values(EXECUTOR_STATUS)
        since, t0 = self.monitor.diag_index(), time.monotonic()
        sent: Counter[str] = Counter()
        for i, (reason, stamp, msg_names, per, horizon, positions, mode) in enumerate(variants):
            msg = ActionChunk(joint_names=list(msg_names), control_period=float(per), horizon=int(horizon),
                              positions=[float(v) for v in np.asarray(positions).reshape(-1)],
                              mode=InferenceMode(mode=mode), chunk_id=10**12 + i, inference_latency=0.0)
            ns = int(round(stamp * 1e9))
            msg.header.stamp = ns_to_time_msg(ns)
            msg.header.frame_id = GARBAGE_FRAME
            self.monitor.chunk_pub.publish(msg)
            sent[reason] += 1
            time.sleep(GARBAGE_PERIOD_S)

        def key(reason: str) -> str:
            return f"rejected_{reason}"

        def counted(e: DiagEvent) -> bool:
            return all(_int(e.values, key(r)) - _int(before, key(r)) >= n for r, n in sent.items())
        event = self._wait_report(rec, EXECUTOR_STATUS, counted, since, t0)
        after = event.values if event is not None else self.monitor.latest_values(EXECUTOR_STATUS)
        rec.details.update(sent=dict(sent), counted={r: _int(after, key(r)) - _int(before, key(r)) for r in sent})
        # Not locked out (issue 14, item 3): the policy's next chunks are accepted.
        accepted = _int(after, "chunks_accepted")
        since2 = self.monitor.diag_index()
        if self.wait(lambda: self.monitor.find_diag(EXECUTOR_STATUS, lambda e: _int(e.values, "chunks_accepted")
                                                    > accepted, since2) is not None, 30.0):
            rec.recovery_s = round(time.monotonic() - t0, 3)

    def fault_disk_full(self, rec: FaultRecord) -> None:
        from motus_ros.data.episode import free_mb

        if not self.recording:
            rec.skipped = "no episode recording (recorder left out or refused to start)"
            return
        need = free_mb(self.bags_dir) - self.min_free_mb + self.args.filler_margin_mb
        if need > self.args.max_filler_mb:
            rec.skipped = (f"the disk gained {need - self.args.disk_headroom_mb:.0f} MiB since start: "
                           f"filler would be {need:.0f} MiB > --max-filler-mb")
            return
        since = self.monitor.diag_index()
        with open(self.filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, int(max(need, 1.0) * 2**20))
        t0 = time.monotonic()
        rec.details["filler_mb"] = round(need, 1)
        rec.details["free_mb_with_filler"] = round(free_mb(self.bags_dir), 1)
        try:
            event = self._wait_report(rec, RECORDER_STATUS, lambda e: e.level == ERROR and
                                      "low disk" in e.message, since, t0)
        finally:
            self.filler.unlink(missing_ok=True)
        if event is not None:
            self.recording = False     # the recorder stopped (and kept) the episode itself
            rec.details["stop_reason"] = event.values.get("last_stop_reason", "")
            rec.recovery_s = round(time.monotonic() - t0, 3)   # space is back once the filler is gone
        rec.details["recording_after"] = self.monitor.latest_values(RECORDER_STATUS).get("recording", "?")

    def fault_estop(self, rec: FaultRecord) -> None:
        from motus_ros.layout import SERVICES

        before = self.monitor.latest_values(DRIVER_STATUS)
        since, t0 = self.monitor.diag_index(), time.monotonic()
        res = self.trigger(SERVICES["emergency_stop"])
        t_stopped = time.monotonic()
        rec.details["estop_service"] = {"success": bool(res.success), "message": res.message}
        self._wait_report(rec, DRIVER_STATUS, lambda e: e.level == ERROR and "emergency stop" in e.message,
                          since, t0)
        # Stopped: the executor drops its plan (/arm/enabled false) and the arm holds still. The
        # stop lasts 4 s; commands are counted over its last 3 s (wall) and the motion over the
        # last 1.5 s of simulated time seen before the release (by stamp: states still queued
        # towards this possibly CPU-starved process from before the stop are not counted).
        self.wait(lambda: time.monotonic() > t_stopped + 1.0, 10.0)
        cmds = self.monitor.commands
        self.wait(lambda: time.monotonic() > t_stopped + 4.0, 10.0)
        newest = self.monitor.newest_stamp() or 0.0
        rec.details["motion_during_estop"] = self.monitor.motion(newest - 1.5, newest)
        rec.details["executor_commands_during_estop"] = self.monitor.commands - cmds
        with self.monitor._lock:
            rec.details["arm_enabled_seen"] = [[round(t - t0, 3), v] for t, v in self.monitor.arm_enabled if t >= t0]
        executor = self.monitor.latest_values(EXECUTOR_STATUS)
        rec.details["executor_arm_executing"] = executor.get("arm_executing")
        rec.details["driver_ignored_commands"] = (_int(self.monitor.latest_values(DRIVER_STATUS), "ignored_commands")
                                                  - _int(before, "ignored_commands"))
        release = self.trigger(SERVICES["release_emergency_stop"])
        enable = self.trigger(SERVICES["enable"])
        rec.details["release_service"] = {"success": bool(release.success), "message": release.message}
        rec.details["enable_service"] = {"success": bool(enable.success), "message": enable.message}
        t_enable = time.monotonic()
        if self.wait(lambda: self.monitor.last_command_wall > t_enable
                     and (self.monitor.latest_values(DRIVER_STATUS).get("emergency_stop") == "False"), 30.0):
            rec.recovery_s = round(time.monotonic() - t0, 3)

    # -- episodes -------------------------------------------------------------------------------
    def episode(self, kind: str) -> None:
        number = self.episodes + 1
        if not self.policy.alive():
            self.policy.reap()
            self.mark(f"episode {number} ({kind}): the policy exited on its own; starting another")
            self.start_policy("exited on its own", self.args.policy_restart_timeout)
        self.mark(f"episode {number} ({kind}): reset")
        try:
            self.monitor.start_fresh_episode(self.runner, EPISODE_WAIT_S)
        except GraphMonitorError as exc:
            if "required node" in str(exc):
                raise GraphDied(str(exc)) from None
            self.episode_start_failures.append(f"before {kind}: {exc}")
            if len(self.episode_start_failures) >= 3 and not self.episodes:
                raise
            if "chunk" in str(exc):     # a policy that went silent: replace it
                self.start_policy("no chunk for a new episode", self.args.policy_restart_timeout)
            return
        self.episodes += 1
        self.start_recording()
        self.mark(f"episode {number} ({kind}): running")
        self.wait(lambda: False, SETTLE_S)
        rec = FaultRecord(kind, self.episodes, time.monotonic())
        print(f"[soak] episode {self.episodes}: {kind}", file=sys.stderr, flush=True)
        self.mark(f"episode {number} ({kind}): fault")
        self.fault_epoch = time.time()
        getattr(self, f"fault_{kind}")(rec)
        self.mark(f"episode {number} ({kind}): after the fault")
        self.wait(lambda: False, 1.0)
        rec.details["recorder_stop"] = self.stop_recording()
        self.windows.append((rec.t_fault, time.monotonic() + 1.0, kind))
        self.records.append(rec)
        print(f"[soak]   -> report after {rec.latency_s} s, recovered after {rec.recovery_s} s"
              + (f" (skipped: {rec.skipped})" if rec.skipped else ""), file=sys.stderr, flush=True)
        if self.has_recorder:
            self.verify_bags()

    def run(self) -> None:
        from motus_ros.graph.bringup import GraphRunner
        from motus_ros.hardware.calibration import load_calibration

        graph, main, policy_graph = self.build_graphs()
        for key, value in graph.process_environment().items():
            os.environ.setdefault(key, value)
        limits = load_calibration(str(graph.parameter("arm_driver", "calibration", "sim"))).limits
        self.monitor = self._monitor_on_a_free_domain(limits)
        log = open(self.run_dir / "bringup.log", "w")
        self.runner = GraphRunner(main, out=log, log_dir=self.run_dir / "logs")
        self.policy = PolicyProcess(policy_graph, log, self.run_dir / "logs" / "policy")
        print(f"[soak] bringing up {[n.name for n in graph.nodes]} on ROS_DOMAIN_ID "
              f"{os.environ['ROS_DOMAIN_ID']}; logs in {self.run_dir / 'logs'}", file=sys.stderr, flush=True)
        self.runner.start()
        self.driver_pid = next(p.pid for p in self.runner.processes if "arm_driver" in p.spec.ros_nodes)
        t_policy = time.monotonic()
        self.policy.start()
        if not self.wait(lambda: self.monitor.joint_states > 0, self.args.startup_timeout):
            raise CliError(f"no joint states within {self.args.startup_timeout:.0f} s; see {self.run_dir / 'logs'}")
        if self.start_policy("start-up", self.args.startup_timeout, started_at=t_policy) is None:
            raise CliError(f"no policy chunk from {POLICY_STARTS} policy processes, "
                           f"{self.args.startup_timeout:.0f} s each; see {self.run_dir / 'logs'}")
        self.t_loop = time.monotonic()
        index = 0
        while time.monotonic() - self.t_loop < self.args.minutes * 60 or index < len(FAULTS):
            self.episode(FAULTS[index % len(FAULTS)])
            index += 1
        self.t_end = time.monotonic()
        self.mark("end")

    def _monitor_on_a_free_domain(self, limits) -> SoakMonitor:
        """The monitor on a ROS domain where no other node is visible: the soak kills nodes and
        e-stops, so it must not share a domain with anything (tests, a demo, a robot). Without
        --domain-id, up to 8 domains in 10..99 are tried."""
        if self.args.domain_id is not None:
            candidates = [self.args.domain_id]
        else:
            start = os.getpid() % 90
            candidates = [10 + (start + 37 * i) % 90 for i in range(8)]
        busy = []
        for domain in candidates:
            os.environ["ROS_DOMAIN_ID"] = str(domain)
            monitor = SoakMonitor(limits, self.args.limit_tolerance)
            time.sleep(2.0)   # discovery
            others = sorted(set(monitor.node.get_node_names()) - {"soak_monitor"})
            if not others:
                return monitor
            monitor.close()
            busy.append(f"{domain} ({', '.join(others[:3])})")
        raise CliError(f"every ROS domain tried has nodes already: {'; '.join(busy)}; pass a free --domain-id")

    def close(self) -> None:
        """Stop the episode cleanly (the bag is closed), then the graph; read what is left."""
        try:
            if self.runner is not None and self.recording and self.runner.poll() is None:
                self.stop_recording()
        except Exception as exc:  # noqa: BLE001 - the summary says so; go on stopping
            self.aborted = self.aborted or f"stopping the episode failed: {exc}"
        if self.policy is not None:
            self.policy.stop()
        if self.runner is not None:
            self.driver_alive_at_end = self._driver_alive()
            self.runner.stop()
        self.filler.unlink(missing_ok=True)
        if self.runner is not None and self.has_recorder and self.bags_dir.is_dir():
            self.verify_bags()
        if self.monitor is not None:
            self.monitor.close()

    def trace(self, t0: float) -> dict:
        """Joint states and executor commands (trace.npz): <key>_t wall time received relative to
        t0, <key>_stamp header stamp (simulated time), <key>_q positions."""
        m = self.monitor
        out = {}
        for key, trace in (("state", m.state_trace), ("command", m.command_trace)):
            out[f"{key}_t"] = np.array([t - t0 for t, _, _ in trace])
            out[f"{key}_stamp"] = np.array([s for _, s, _ in trace])
            out[f"{key}_q"] = np.stack([q for _, _, q in trace]) if trace else np.zeros((0, len(m.lower)))
        return out

    def _driver_alive(self) -> bool:
        proc = next((p for p in self.runner.processes if "arm_driver" in p.spec.ros_nodes), None)
        return proc is not None and proc.pid == self.driver_pid and proc.popen.poll() is None

    # -- summary --------------------------------------------------------------------------------
    def summary(self) -> dict:
        from motus_ros.layout import JOINT_NAMES

        m = self.monitor
        driver_alive = getattr(self, "driver_alive_at_end", False)
        driver_restarts = (0 if driver_alive else 1) + self.driver_tick_resets
        faults, latency, recovery, motion = {}, {}, {}, {}
        for kind in FAULTS:
            recs = [r for r in self.records if r.kind == kind]
            done = [r for r in recs if not r.skipped]
            lat = [r.latency_s for r in done if r.latency_s is not None]
            rec = [r.recovery_s for r in done if r.recovery_s is not None]
            faults[kind] = len(done)
            latency[kind] = {**_stats(lat), "count": len(lat), "never": len(done) - len(lat),
                             "skipped": len(recs) - len(done), "report": REPORTS[kind]}
            published = [r.details["report_published_after_s"] for r in done if "report_published_after_s" in r.details]
            if published:   # the driver's own stamp: without this process's delivery lag
                latency[kind]["published_by_driver_after_s"] = _stats(published)
            recovery[kind] = {**_stats(rec), "count": len(rec), "never": len(done) - len(rec)}
            moved = [r.details.get(k) for r in done for k in ("motion_after_error", "motion_during_estop")
                     if r.details.get(k) is not None]
            if moved:
                motion[kind] = {"arm_rad": max(v["arm_rad"] for v in moved),
                                "gripper": max(v["gripper"] for v in moved)}
        garbage = {}
        for kind in ("garbage_commands", "garbage_chunks"):
            sent, counted = Counter(), Counter()
            for r in self.records:
                if r.kind == kind:
                    sent.update(r.details.get("sent", {}))
                    counted.update(r.details.get("counted", {}))
            missed = sum(max(0, n - counted[k]) for k, n in sent.items() if k != "limit_clipped")
            garbage[kind] = {"sent": dict(sent), "counted": dict(counted), "not_counted": missed}
        garbage["garbage_commands"]["driver_callback_errors"] = sum(
            r.details.get("callback_errors", 0) for r in self.records if r.kind == "garbage_commands")
        estops = [r for r in self.records if r.kind == "estop"]
        service_failures = {s: sum(1 for r in estops if not r.details.get(f"{s}_service", {}).get("success", False))
                            for s in ("estop", "release", "enable")}
        outside = Counter()
        first = {}
        for e in m.error_onsets:
            if self.t_loop is None or e.t < self.t_loop or (self.t_end is not None and e.t > self.t_end):
                continue   # start-up and shut-down (the policy stops first) are not soak faults
            if not any(a <= e.t <= b and e.name in EXPECTED_ERRORS[kind] for a, b, kind in self.windows):
                outside[e.name] += 1
                first.setdefault(e.name, f"{e.message} (during {self.phase(e.t)})")
        beyond_by_phase = Counter(self.phase(t) for t, _, _ in m.beyond_events)
        beyond_examples = {}
        for t, i, value in m.beyond_events:
            beyond_examples.setdefault(self.phase(t), f"{JOINT_NAMES[i]}={value:.4f} outside "
                                                      f"[{m.lower[i]:.4f}, {m.upper[i]:.4f}]")
        command_examples = {}
        for t, problem in m.command_events:
            command_examples.setdefault(self.phase(t), problem)
        driver = m.latest_values(DRIVER_STATUS)
        minutes = ((self.t_end or time.monotonic()) - self.t_loop) / 60 if self.t_loop else 0.0
        return {
            "bench": "soak",
            "minutes": round(minutes, 2),
            "minutes_requested": self.args.minutes,
            "graph": sorted({p.spec.name for p in self.runner.processes} | {"policy"}) if self.runner else [],
            "ros_domain_id": int(os.environ.get("ROS_DOMAIN_ID", "0")),
            "episodes": self.episodes,
            "faults": faults,
            "driver_restarts": driver_restarts,
            "commands_outside_limits": m.commands_outside,
            "joints_beyond_limits": m.joints_beyond,
            "gripper_readings_outside_range": m.gripper_outside,
            "unreadable_bags": self.bag["unreadable"],
            "fault_to_report_s": latency,
            "recovery_s": recovery,
            "checks": {
                "driver_alive_same_pid_at_end": driver_alive,
                "driver_pid": self.driver_pid,
                "driver_tick_resets": self.driver_tick_resets,
                "driver_callback_errors": _int(driver, "callback_errors"),
                "driver_counters": {k: driver.get(k) for k in ("wrong_size", "wrong_names", "non_finite",
                                                              "limit_clipped", "step_limited", "accel_limited",
                                                              "watchdog_trips", "achieved_rate_hz", "ticks")},
                "joint_states_checked": m.joint_states,
                "malformed_joint_states": m.malformed_states,
                "limit_tolerance": self.args.limit_tolerance,
                "states_beyond_limit_by_joint": {n: int(c) for n, c in zip(JOINT_NAMES, m.beyond_by_joint) if c},
                "largest_excess_beyond_limit": {n: round(float(v), 5) for n, v in zip(JOINT_NAMES, m.max_excess)
                                                if v > 0},
                "joints_beyond_limits_by_phase": {p: {"states": n, "first": beyond_examples[p]}
                                                  for p, n in beyond_by_phase.items()},
                "executor_commands_checked": m.commands,
                "commands_outside_limits_by_phase": command_examples,
                "garbage": garbage,
                "motion_after_fault_rad": motion,
                "estop_service_failures": service_failures,
                "policy_processes_started": self.policy.generation if self.policy else 0,
                "policy_unexpected_exits": self.policy.unexpected_exits if self.policy else [],
                "silent_policy_starts": self.silent_policy_starts,
                "node_exits": dict(self.runner.exit_codes) if self.runner else {},
                "unexpected_errors": {n: {"count": c, "first": first[n]} for n, c in outside.items()},
                "episode_start_failures": self.episode_start_failures,
                "recorder_refusals": self.recorder_refusals,
                "recorder_min_free_mb": self.min_free_mb,
                "bags": {k: v for k, v in self.bag.items()},
                "relayed_camera_frames": m.relayed,
                "policy_chunks": len(m.chunks),
            },
            "aborted": self.aborted or None,
            "run_dir": str(self.run_dir),
        }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motus-ros bench soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0,
                   help="wall minutes of episodes with faults (default 10; at least one round of every fault)")
    p.add_argument("--without", action="append", default=[], metavar="NODE",
                   help=f"leave an optional node out of the graph ({', '.join(OPTIONAL_NODES)}; repeatable)")
    p.add_argument("--real-time-factor", type=float, default=1.0, help="sim cap on simulated s per wall s (1.0)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID of the soak's graph (default: one in 10..99 where no node is visible; it "
                        "must not be shared with anything, a robot least of all: the soak kills nodes and e-stops)")
    p.add_argument("--disk-headroom-mb", type=float, default=2048.0,
                   help="free MiB the recorder sees above its min_free_mb: the size of the 'small disk' (2048)")
    p.add_argument("--filler-margin-mb", type=float, default=256.0,
                   help="MiB the disk fault's filler takes below min_free_mb (256)")
    p.add_argument("--max-filler-mb", type=float, default=16384.0,
                   help="largest filler file; a fault that needs more is skipped (16384)")
    p.add_argument("--limit-tolerance", type=float, default=0.02,
                   help="joint states beyond a limit by more than this count (rad / gripper unit; 0.02)")
    p.add_argument("--error-timeout", type=float, default=30.0, help="wall seconds a fault has to be reported (30)")
    p.add_argument("--policy-restart-timeout", type=float, default=150.0,
                   help="wall seconds for a restarted policy's first chunk; a silent one is replaced (150)")
    p.add_argument("--startup-timeout", type=float, default=240.0, help="wall seconds for the graph to come up")
    p.add_argument("--keep-bags", action="store_true", help="keep the episode bags (default: deleted once read)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/soak-<time>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0:
        raise CliError(f"--minutes: got {args.minutes}, expected > 0")
    if args.real_time_factor <= 0:
        raise CliError(f"--real-time-factor: got {args.real_time_factor}, expected > 0")
    if args.domain_id is not None and not 0 <= args.domain_id <= 101:
        raise CliError(f"--domain-id: got {args.domain_id}, expected 0..101")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    run_dir = args.out or Path("runs") / time.strftime("soak-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, run_dir)
    error = None
    try:
        soak.run()
    except GraphDied as exc:
        soak.aborted = str(exc)
    except KeyboardInterrupt:
        soak.aborted = "interrupted"
    except (CliError, GraphMonitorError) as exc:
        error = exc
    finally:
        soak.close()
    if error is not None and soak.t_loop is None:
        raise error
    if error is not None:
        soak.aborted = str(error)
    summary = soak.summary()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    t0 = soak.t_loop or 0.0
    (run_dir / "faults.json").write_text(json.dumps(
        [{"kind": r.kind, "episode": r.episode, "t_s": round(r.t_fault - t0, 3), "fault_to_report_s": r.latency_s,
          "recovery_s": r.recovery_s, "skipped": r.skipped, **r.details} for r in soak.records], indent=2))
    if soak.monitor is not None:
        np.savez_compressed(run_dir / "trace.npz", **soak.trace(t0))
        with open(run_dir / "diagnostics.jsonl", "w") as f:
            for e in soak.monitor.diag:
                f.write(json.dumps({"t_s": round(e.t - t0, 3), "name": e.name, "level": e.level,
                                    "message": e.message, "values": e.values}) + "\n")
    (run_dir / "timeline.txt").write_text("".join(f"{t - t0:9.3f} {label}\n" for t, label in soak.timeline))
    print(json.dumps(summary))
    counts = [summary[k] for k in ("driver_restarts", "commands_outside_limits", "joints_beyond_limits",
                                   "unreadable_bags")]
    return 0 if not any(counts) and not soak.aborted else 1


if __name__ == "__main__":
    raise SystemExit(main())
