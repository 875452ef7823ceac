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
from motus_ros.execution.chunks import Chunk
from motus_ros.execution.executor import ChunkExecutor, ExecutorSettings
from motus_ros.training.sim_closed_loop import (FirstChunks, ScriptedChunkPolicy, executor_settings, run_episodes,
                                               scene_dependence)

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def executor(strategy="replace", tick_s=1.0 / layout.CONTROL_RATE_HZ, **changes):
    """The in-process loop's executor: the sim graph's settings, ticked every tick_s."""
    settings = ExecutorSettings.from_params({**executor_settings(strategy), **changes})
    return ChunkExecutor(settings, tick_s=tick_s)


def chunk(rows, observed_at):
    return Chunk(observed_at, 1.0 / layout.CONTROL_RATE_HZ, np.asarray(rows, dtype=float))


def test_chunk_rows_are_targets_one_control_period_apart_and_steps_are_limited():
    period = 1.0 / layout.CONTROL_RATE_HZ
    # Huge step limits (rows are followed exactly); a long policy timeout so the plan is followed
    # to its end instead of holding.
    ex = executor(max_joint_step=10.0, max_gripper_step=10.0, policy_timeout_s=1000.0)
    zero = np.zeros(layout.DOF)
    ex.add(chunk(np.arange(48, dtype=float)[:, None] * np.full((1, layout.DOF), 0.01), 2.0), now=2.0)
    assert ex.tick(2.0 + period, zero)[0] == pytest.approx(0.0)            # row 0 at (0 + 1) / rate
    assert ex.tick(2.0 + 2.5 * period, zero)[0] == pytest.approx(0.015)    # between rows 1 and 2
    assert ex.tick(100.0, zero)[0] == pytest.approx(0.47)                  # past the end: hold the last row

    slow = executor(tick_s=0.02)                   # the sim graph's limits at 50 Hz
    arm_limit = executor_settings()["max_joint_step"] * 0.02 * executor_settings()["control_rate_hz"]
    slow.add(chunk(np.ones((48, layout.DOF)), 0.0), now=0.0)
    first = slow.tick(0.02, zero)
    assert first[0] == pytest.approx(arm_limit) and arm_limit < 1.0   # no jump of 1 rad in one step
    assert slow.tick(0.04, zero)[0] == pytest.approx(2 * arm_limit)


def test_in_process_executor_is_the_node_core_with_the_sim_graph_parameters():
    from motus_ros.graph.spec import load_graph

    graph = load_graph("sim")
    settings = executor_settings()
    for name in ("strategy", "max_joint_step", "max_gripper_step", "policy_timeout_s"):
        assert settings[name] == graph.parameter("chunk_executor", name)
    assert executor_settings("replace")["strategy"] == "replace"


def test_reset_drops_the_old_plan_at_once():
    ex = executor(max_joint_step=10.0, max_gripper_step=10.0)
    ex.add(chunk(np.ones((48, layout.DOF)), 0.0), now=0.0)
    assert ex.tick(0.1, np.zeros(layout.DOF))[0] == pytest.approx(1.0)
    ex.reset()                                       # a new episode: nothing of the old plan is played
    assert ex.tick(0.2, np.zeros(layout.DOF)) is None and not ex.scheduler.has_plan
    ex.add(chunk(np.full((48, layout.DOF), 0.5), 0.2), now=0.2)  # the new scene's first chunk goes in
    assert ex.tick(0.2 + 1.0 / layout.CONTROL_RATE_HZ, np.zeros(layout.DOF))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("strategy", ["rtc", "temporal_ensemble"])
def test_scripted_expert_succeeds_with_each_blending(strategy):
    results, _ = run_episodes(ScriptedChunkPolicy("transfer_cube"), "transfer_cube", episodes=1, seed=4,
                              instruction="x", episode_s=8.0, replan_s=0.2, strategy=strategy)
    assert results[0].success


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
    # --checkpoint '': the tiny preset's random weights (the default is the sim graph's checkpoint)
    proc = subprocess.run([MOTUS_ROS, "eval", "--in-process", "--checkpoint", "", "--preset", "tiny",
                           "--episodes", "2", "--seed", "5",
                           "--episode-timeout", "0.4", "--replan", "0.2", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["closed_loop"]
    assert [e["seed"] for e in report["per_episode"]] == expected
    assert report["episodes"] == 2 and report["chunk_latency_s"]["count"] == 4 and report["policy"] == "motus"
    assert report["graph"].startswith("none") and report["scene_dependence"]["episodes"] == 2
    # no --steps: the in-process loop runs what the graph's policy node would (config/sim/policy.yaml)
    from motus_ros.graph.spec import load_graph
    assert report["euler_steps"] == load_graph("sim").parameter("policy", "steps") > 0

    bad = subprocess.run([MOTUS_ROS, "eval", "--scripted", "--episodes", "1", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--scripted needs --in-process" in bad.stderr
    bad = subprocess.run([MOTUS_ROS, "eval", "--in-process", "--steps", "-1", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--steps: got -1" in bad.stderr


def test_scene_dependence_tells_a_blind_policy_from_the_expert():
    blind, expert = FirstChunks(HoldStill()), FirstChunks(ScriptedChunkPolicy("transfer_cube"))
    for policy in (blind, expert):
        run_episodes(policy, "transfer_cube", episodes=3, seed=2, instruction="x", episode_s=0.2, replan_s=0.1)
    assert len(blind.chunks) == 3 and len(blind.poses) == 3          # one first chunk per episode
    b, e = scene_dependence(blind, "transfer_cube"), scene_dependence(expert, "transfer_cube")
    assert b["correlation"] == 0.0 and b["policy_spread_rad"] == 0.0 and b["expert_spread_rad"] > 0.02
    assert b["error_rad"] > b["scene_blind_error_rad"] > 0.0        # holding still is worse than the average
    assert e["correlation"] == pytest.approx(1.0) and e["error_rad"] == 0.0


def test_eval_in_process_joint_mode_uses_the_policy_in_joint_mode(tmp_path):
    """--mode joint: the same episodes with the policy in Joint mode (actions and frames from one loop)."""
    out = tmp_path / "report.json"
    proc = subprocess.run([MOTUS_ROS, "eval", "--in-process", "--checkpoint", "", "--preset", "tiny", "--mode", "joint",
                           "--episodes", "1", "--seed", "5", "--steps", "2",
                           "--episode-timeout", "0.2", "--replan", "0.2", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["closed_loop"]
    assert report["mode"] == "joint" and report["per_episode"][0]["chunks"] == 1
    bad = subprocess.run([MOTUS_ROS, "eval", "--offline", "--data", str(tmp_path), "--mode", "joint",
                          "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--mode joint: only for closed-loop episodes" in bad.stderr
