"""`motus-ros demo --record`: the sim_teleop graph records a scripted-expert episode to a bag.

The expert's success through the ROS graph is not certain on a loaded CPU (35 of 40 in one
measurement), so the test checks the recording, not the hand-over."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
