"""`motus-ros demo`: `--record` records a scripted-expert episode to a bag through the sim_teleop
graph; the policy episode's start-up waits (policy required, world model optional).

The expert's success through the ROS graph is not certain on a loaded CPU (35 of 40 in one
measurement), so the test checks the recording, not the hand-over."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def test_demo_record_writes_an_expert_episode(tmp_path):
    proc = subprocess.run([MOTUS_ROS, "demo", "--record", "1", "--episode-timeout", "120", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["episodes"]) == 1 and isinstance(summary["episodes"][0]["success"], bool)
    assert summary["successes"] == int(summary["episodes"][0]["success"])
    bag = tmp_path / summary["episodes"][0]["bag"]
    assert (bag / "episode.json").is_file() and list(bag.glob("*.mcap"))
    assert not (tmp_path / "run" / "overrides.yaml").exists()     # the policy-episode settings stay out of it


class _FakeMonitor:
    """What _fresh_scene uses of DemoMonitor, without ROS: wait_for only evaluates the predicate."""

    def __init__(self, chunks: int, wm_futures: int):
        import threading

        from motus_ros.commands.demo import DemoObservations

        self.seen = DemoObservations(wm_futures=wm_futures, joint_states=7)
        self.chunks = [(1.0 + i, 0.3) for i in range(chunks)]
        self._lock = threading.Lock()
        self.started = []
        self.node = type("Node", (), {"get_node_names": staticmethod(lambda: ["arm_driver", "policy"])})()

    def wait_for(self, predicate, timeout, runner=None):
        return predicate()

    def start_fresh_episode(self, runner, wait_s, before_enable=None):
        before_enable()
        self.started.append(wait_s)
        return "reset", 0.0


def test_demo_episode_goes_on_without_a_silent_world_model(capsys):
    from motus_ros.commands.demo import _fresh_scene

    monitor = _FakeMonitor(chunks=3, wm_futures=0)
    _fresh_scene(monitor, runner=None)
    assert monitor.started == [120]   # waits for chunks of the new scene, not for the old plan to run out
    assert "world model published nothing" in capsys.readouterr().err

    monitor = _FakeMonitor(chunks=3, wm_futures=2)
    _fresh_scene(monitor, runner=None)
    assert monitor.started and "world model" not in capsys.readouterr().err


def test_demo_fails_clearly_without_a_policy_chunk():
    from motus_ros.cli import CliError
    from motus_ros.commands.demo import _fresh_scene

    monitor = _FakeMonitor(chunks=0, wm_futures=1)
    with pytest.raises(CliError, match=r"policy published no chunk .*7 joint state.*nodes visible: arm_driver, policy"):
        _fresh_scene(monitor, runner=None)
    assert monitor.started == []
