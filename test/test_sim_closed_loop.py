"""In-process closed loop (motus-ros eval --in-process): chunk timing, the scripted expert succeeds
through it, a motionless policy does not, and the CLI report uses the sim driver's seed sequence."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motus_ros import layout
from motus_ros.training.sim_closed_loop import ScriptedChunkPolicy, chunk_target, run_episodes

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def test_chunk_rows_are_targets_one_control_period_apart():
    chunk = np.arange(48, dtype=float)[:, None] * np.ones((1, 14))
    period = 1.0 / layout.CONTROL_RATE_HZ
    assert chunk_target(chunk, period)[0] == pytest.approx(0.0)            # row 0 at (0 + 1) / rate
    assert chunk_target(chunk, 2.5 * period)[0] == pytest.approx(1.5)      # between rows 1 and 2
    assert chunk_target(chunk, 0.0)[0] == pytest.approx(0.0)               # before row 0: row 0
    assert chunk_target(chunk, 100.0)[0] == pytest.approx(47.0)            # past the end: hold the last


def test_scripted_expert_succeeds_through_the_loop():
    results, latencies = run_episodes(ScriptedChunkPolicy("transfer_cube"), "transfer_cube", episodes=2, seed=3,
                                      instruction="x", episode_s=8.0, replan_s=0.4)
    assert [r.success for r in results] == [True, True]
    assert all(r.max_reward == 4 and r.sim_duration_s < 8.0 for r in results)   # stops at success
    assert len({r.seed for r in results}) == 2 and len(latencies) == sum(r.chunks for r in results)


class HoldStill:
    """Every row the current joint positions: the arms never move."""

    def infer(self, observation: dict) -> dict:
        return {"actions": np.tile(observation["state"], (48, 1)), "timing": {"total_s": 0.01}}


def test_a_policy_that_holds_still_gets_no_reward():
    results, latencies = run_episodes(HoldStill(), "transfer_cube", episodes=1, seed=3, instruction="x",
                                      episode_s=1.0, replan_s=0.5)
    assert not results[0].success and results[0].max_reward == 0
    assert results[0].chunks == 2 and latencies == [0.01, 0.01]
    assert results[0].sim_duration_s == pytest.approx(1.0)


def test_eval_in_process_cli_reports_the_sim_driver_seed_sequence(tmp_path):
    from motus_ros.hardware.sim_backend import SimArmBackend

    backend = SimArmBackend(seed=5)
    backend.connect()
    try:
        expected = [int(backend.reset() and backend.world.seed) for _ in range(2)]
    finally:
        backend.close()
    out = tmp_path / "report.json"
    proc = subprocess.run([MOTUS_ROS, "eval", "--in-process", "--preset", "tiny", "--episodes", "2", "--seed", "5",
                           "--episode-timeout", "0.4", "--replan", "0.2", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["closed_loop"]
    assert [e["seed"] for e in report["per_episode"]] == expected
    assert report["episodes"] == 2 and report["chunk_latency_s"]["count"] == 4 and report["policy"] == "motus"
    assert report["graph"].startswith("none")

    bad = subprocess.run([MOTUS_ROS, "eval", "--scripted", "--episodes", "1", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--scripted needs --in-process" in bad.stderr
