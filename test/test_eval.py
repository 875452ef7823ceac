"""Evaluation: report arithmetic, image metrics, offline IDM/WM metrics, and `motus-ros eval` end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from motus_ros.training.evaluation import EpisodeResult, offline_metrics, percentile, psnr, ssim, summarize

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def test_psnr_and_ssim_known_values():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 40, 3)).astype(np.uint8)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)
    shifted = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((shifted.astype(float) - img) ** 2)
    assert psnr(shifted, img) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    noise = rng.integers(0, 256, img.shape).astype(np.uint8)
    assert ssim(noise, img) < 0.2 < ssim(shifted, img)
    with pytest.raises(ValueError, match="shapes"):
        ssim(img, img[:10])


def test_summary_counts_successes_returns_and_latency_percentiles():
    results = [EpisodeResult(0, 11, True, 4.0, [0.0, 2.0, 4.0], sim_duration_s=3.0),
               EpisodeResult(1, 12, False, 1.0, [0.0, 1.0], sim_duration_s=2.0)]
    report = summarize(results, [0.1, 0.2, 0.3, 0.4, 1.0], {"task": "transfer_cube"})
    assert report["episodes"] == 2 and report["successes"] == 1 and report["success_rate"] == 0.5
    assert results[0].episode_return == pytest.approx(2.0 * 3.0 / 0.02)       # mean sample x control steps
    assert report["mean_return"] == pytest.approx((300.0 + 50.0) / 2)
    assert report["mean_max_reward"] == 2.5
    assert report["chunk_latency_s"]["median"] == 0.3 and report["chunk_latency_s"]["p90"] == 1.0
    assert report["per_episode"][1] == {**report["per_episode"][1], "seed": 12, "success": False, "return": 50.0}
    assert percentile([3, 1, 2], 0.5) == 2
    assert summarize([], [], {})["chunk_latency_s"] is None


def test_offline_metrics_on_held_out_episodes(tmp_path):
    from test_training import synthetic_episode

    from motus_ros.motus.config import preset
    from motus_ros.motus.model import build_model
    from motus_ros.training import dataset as ds
    from motus_ros.training.sim_episodes import finalize

    finalize(tmp_path, [synthetic_episode(tmp_path, i) for i in range(2)], val_fraction=0.5)
    data = ds.load_dataset(tmp_path)
    model = build_model(preset("tiny"))
    res = offline_metrics(model, data, data.split("val"), max_windows=2, steps=2, progress=False)
    assert res["windows"] == 2
    frames = res["per_future_frame"]      # +0.2 s ... +1.6 s, each beside its baselines
    assert [f["frame"] for f in frames] == list(range(1, model.config.num_future_frames + 1))
    assert frames[0]["time_s"] == pytest.approx(1 / data.video_rate_hz)
    assert np.mean([f["wm_ssim"] for f in frames]) == pytest.approx(res["wm_ssim"], abs=1e-3)
    assert np.mean([f["copy_ssim"] for f in frames]) == pytest.approx(res["copy_condition_frame_ssim"], abs=1e-3)
    assert all(f["autoencoder_psnr_db"] is not None and f["copy_psnr_db"] is not None for f in frames)
    for key in ("idm_action_mse", "vla_action_mse", "wm_psnr_db", "wm_ssim", "autoencoder_psnr_db"):
        assert np.isfinite(res[key]), key
    assert 0.0 <= res["idm_action_mse"] <= 1.0 and -1.0 <= res["wm_ssim"] <= 1.0


@pytest.mark.e2e
def test_eval_runs_the_sim_graph_and_writes_a_report(tmp_path):
    out = tmp_path / "report.json"
    # --checkpoint "": the tiny preset's random weights (fast), not the sim graph's trained ones
    proc = subprocess.run([MOTUS_ROS, "eval", "--checkpoint", "", "--preset", "tiny", "--episodes", "1", "--episode-timeout", "1.5",
                           "--strategy", "replace", "--out", str(out)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())["closed_loop"]
    assert report["episodes"] == 1 and report["task"] == "transfer_cube"
    assert 0.0 <= report["success_rate"] <= 1.0 and report["successes"] in (0, 1)
    assert report["graph"] == "sim (sim, arm_driver, chunk_executor, policy)"   # the sim process runs two nodes
    episode = report["per_episode"][0]
    assert episode["seed"] is not None and episode["sim_duration_s"] > 0 and episode["chunks"] >= 2
    assert episode["reward_samples"] > 0
    assert report["chunk_latency_s"]["count"] >= 1 and report["chunk_latency_s"]["median"] > 0
    logs = tmp_path / "report_run" / "logs"
    assert {p.stem for p in logs.glob("*.log")} == {"sim", "chunk_executor", "policy",       # one log per process
                                                    "lifecycle_manager"}
    # --strategy reaches the executor through the overrides file the graph is started with
    assert report["executor_strategy"] == "replace"
    overrides = yaml.safe_load((tmp_path / "report_run" / "overrides.yaml").read_text())
    assert overrides["chunk_executor"]["ros__parameters"]["strategy"] == "replace"
    # no --steps: the policy keeps config/sim/policy.yaml's Euler steps, and the report says how many
    assert "steps" not in overrides["policy"]["ros__parameters"]
    from motus_ros.graph.spec import load_graph
    assert report["euler_steps"] == load_graph("sim").parameter("policy", "steps") > 0


@pytest.mark.e2e
def test_eval_split_over_udp_with_compressed_cameras(tmp_path):
    """The remote-policy set-up: robot and policy parts as two process groups, no shared memory,
    JPEG cameras decoded by the policy; chunks still reach the executor and the report says how."""
    out = tmp_path / "report.json"
    proc = subprocess.run([MOTUS_ROS, "eval", "--checkpoint", "", "--preset", "tiny", "--episodes", "1",
                           "--episode-timeout", "1.5", "--split", "--transport", "udp",
                           "--image-transport", "compressed", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())["closed_loop"]
    assert report["split"].startswith("robot and policy parts")
    assert report["transport"] == "UDPv4 only (no shared memory)" and report["image_transport"] == "compressed"
    assert report["per_episode"][0]["chunks"] >= 2
    assert report["observation_to_chunk_receipt_sim_s"]["count"] >= 2
    assert report["observation_to_chunk_receipt_sim_s"]["median"] > 0
    logs = tmp_path / "report_run" / "logs"
    assert {p.stem for p in (logs / "robot").glob("*.log")} == {"sim", "chunk_executor", "lifecycle_manager_robot"}
    assert {p.stem for p in (logs / "policy").glob("*.log")} == {"policy", "lifecycle_manager_policy"}
    overrides = yaml.safe_load((tmp_path / "report_run" / "overrides.yaml").read_text())
    assert overrides["sim"]["ros__parameters"]["image_transport"] == "compressed"
    assert overrides["policy"]["ros__parameters"]["image_transport"] == "compressed"
