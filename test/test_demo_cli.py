"""`motus-ros demo --record`: the sim_teleop graph records a scripted-expert episode to a bag."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def test_demo_record_writes_a_successful_expert_episode(tmp_path):
    proc = subprocess.run([MOTUS_ROS, "demo", "--record", "1", "--episode-timeout", "120", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["successes"] == 1 and len(summary["episodes"]) == 1
    bag = tmp_path / summary["episodes"][0]["bag"]
    assert (bag / "episode.json").is_file() and list(bag.glob("*.mcap"))
    assert not (tmp_path / "run" / "overrides.yaml").exists()     # the policy-episode settings stay out of it
