"""Counterfactual world-model evaluation: distance matrix, pair accuracy, state save/restore."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motus_ros import layout
from motus_ros.training.counterfactual import candidate_chunks, pair_accuracy, play_chunk, restore_state, save_state

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def test_pair_accuracy_counts_ordered_pairs():
    follows = np.array([[1.0, 5.0, 6.0], [4.0, 2.0, 9.0], [7.0, 8.0, 3.0]])
    assert pair_accuracy(follows) == 1.0
    # a model that predicts one future whatever the chunk: each unordered pair is won once
    prediction_vs_truth = np.array([2.0, 5.0, 9.0])
    ignores = np.tile(prediction_vs_truth, (3, 1))
    assert pair_accuracy(ignores) == 0.5
    swapped = follows[[1, 0, 2]]
    assert pair_accuracy(swapped) == pytest.approx(4 / 6)     # rows 0 and 1 lose one pair each


def test_candidates_keep_the_expert_and_grippers_and_hold_still():
    expert = np.tile(np.linspace(0.1, 1.4, layout.DOF), (layout.CHUNK_SIZE, 1))
    hold = np.full(layout.DOF, 0.3)
    chunks = candidate_chunks(expert, hold)
    assert list(chunks)[0] == "expert" and list(chunks)[-1] == "hold" and len(chunks) == 5
    np.testing.assert_array_equal(chunks["expert"], expert)
    np.testing.assert_array_equal(chunks["hold"], np.tile(hold, (layout.CHUNK_SIZE, 1)))
    for name, chunk in chunks.items():
        np.testing.assert_array_equal(chunk[:, list(layout.GRIPPER_INDICES)], (
            np.tile(hold, (layout.CHUNK_SIZE, 1)) if name == "hold" else expert)[:, list(layout.GRIPPER_INDICES)])
    perturbed = [c for n, c in chunks.items() if n not in ("expert", "hold")]
    assert all(np.abs(c - expert).max() > 0.2 for c in perturbed)      # really different chunks
    assert all(np.allclose(c[0], expert[0], atol=0.02) for c in perturbed)   # ramped in from the start


def test_a_chunk_replayed_from_a_saved_state_gives_the_same_future():
    from motus_ros.sim.world import SimWorld

    world = SimWorld("transfer_cube", (60, 80), seed=0, render_quality="fast")
    try:
        world.reset(seed=3)
        for _ in range(5):
            world.step(world.ctrl_targets())
        saved, hold = save_state(world), world.ctrl_targets()
        chunk = np.tile(hold + 0.1 * (np.arange(layout.DOF) % 2), (layout.CHUNK_SIZE, 1))
        first = play_chunk(world, chunk, hold, 2, lambda: world.render("high"))
        moved = world.qpos()
        restore_state(world, saved)
        np.testing.assert_allclose(world.ctrl_targets(), hold)
        second = play_chunk(world, chunk, hold, 2, lambda: world.render("high"))
        np.testing.assert_array_equal(np.stack(first), np.stack(second))
        np.testing.assert_allclose(world.qpos(), moved)
        restore_state(world, saved)
        still = play_chunk(world, np.tile(hold, (layout.CHUNK_SIZE, 1)), hold, 2, lambda: world.render("high"))
        assert not np.array_equal(np.stack(still), np.stack(first))   # the chunk changes the future
    finally:
        world.close()


@pytest.mark.e2e
def test_eval_counterfactual_writes_the_matrix_and_accuracy(tmp_path):
    out = tmp_path / "cf.json"
    # as a user's shell: no MUJOCO_GL chosen (the command must pick the headless renderer itself)
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run([MOTUS_ROS, "eval", "--counterfactual", "--checkpoint", "", "--preset", "tiny",
                           "--starts", "1", "--steps", "1", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=400, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())["counterfactual"]
    k = len(report["chunks"])
    assert k == 5 and report["chunks"][0] == "expert" and report["chunks"][-1] == "hold"
    matrix = np.array(report["mean_distance_matrix"])
    assert matrix.shape == (k, k) and np.all(matrix > 0)
    assert report["accuracy"] == pytest.approx(pair_accuracy(np.array(report["per_start"][0]["distances"])))
    spread = np.array(report["mean_truth_spread_matrix"])
    assert np.allclose(np.diag(spread), 0) and spread[0, -1] > 0      # the true futures differ
    bad = subprocess.run([MOTUS_ROS, "eval", "--counterfactual", "--starts", "0"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 2 and "--starts: got 0, expected >= 1" in bad.stderr
