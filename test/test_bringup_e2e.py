"""End-to-end: `motus-ros bringup` starts real node processes, they talk on real topics, and
stopping leaves no process behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import JointState

from motus_msgs.msg import ActionChunk, InferenceMode
from motus_ros.layout import CHUNK_SIZE, JOINT_NAMES, TOPICS
from ros_harness import wait_until

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


class Bringup:
    """A `motus-ros bringup` subprocess whose output is collected line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([MOTUS_ROS, "bringup", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def node_pids(self) -> dict[str, int]:
        found = (re.match(r"\[bringup\] started (\w+) \(pid (\d+)\)", l) for l in self.lines)
        return {m.group(1): int(m.group(2)) for m in found if m}

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped by anyone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.e2e
@pytest.mark.ros
def test_mock_graph_moves_arm_toward_published_chunk_and_stops_cleanly(ros):
    states = ros.collect(JointState, TOPICS["joint_states"])
    chunk_pub = ros.node.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    bringup = Bringup("mock", "--duration", "120")
    try:
        first = states.wait_for(1, timeout=60)[0]
        assert list(first.name) == list(JOINT_NAMES)
        start = np.array(first.position)
        target = start.copy()
        target[0] += 0.3   # left_joint1, well inside every profile's limits
        target[7] -= 0.3   # right_joint1
        msg = ActionChunk(joint_names=list(JOINT_NAMES), control_period=1 / 30, horizon=CHUNK_SIZE,
                          positions=np.tile(target, (CHUNK_SIZE, 1)).ravel().tolist(), chunk_id=1)
        msg.mode.mode = InferenceMode.VLA

        def moved() -> bool:
            msg.header.stamp = ros.node.get_clock().now().to_msg()
            chunk_pub.publish(msg)
            last = np.array(states.messages[-1].position)
            return abs(last[0] - target[0]) < 0.05 and abs(last[7] - target[7]) < 0.05

        wait_until(moved, timeout=60, what="mock arm joints to reach the published chunk",
                   interval=0.5)
        pids = bringup.node_pids()
        assert set(pids) == {"arm_driver", "chunk_executor", "lifecycle_manager"}
    finally:
        code = bringup.stop()
    assert code == 0, bringup.output
    assert "stopped; exit codes:" in bringup.output
    for name, pid in bringup.node_pids().items():
        assert not process_alive(pid), f"{name} (pid {pid}) still running after bringup stopped"


@pytest.mark.e2e
def test_dead_required_node_is_reported_and_stops_graph(tmp_path):
    crasher = tmp_path / "crasher"
    crasher.write_text("#!/bin/sh\necho crashing on purpose\nexit 3\n")
    crasher.chmod(0o755)
    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 300\n")
    sleeper.chmod(0o755)
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"nodes:\n  - {{name: steady, executable: {sleeper}}}\n"
                     f"  - {{name: crasher, executable: {crasher}}}\n")
    bringup = Bringup(str(graph), "--duration", "60")
    code = bringup.proc.wait(timeout=60)
    bringup._reader.join(timeout=5)
    assert code == 1
    assert "[crasher] crashing on purpose" in bringup.output
    assert "node crasher exited with code 3" in bringup.output
    assert "required node crasher died; stopping the graph" in bringup.output
    assert not process_alive(bringup.node_pids()["steady"])
