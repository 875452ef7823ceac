"""MotusPolicy: infer/reset/set_mode on the tiny preset, validation errors, bench CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motus_ros.cli import main as cli_main
from motus_ros.policy.runtime import MotusPolicy, load_policy
from motus_ros.policy.transforms import ObservationError, load_stats
from motus_ros.paths import models_dir

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def policy():
    return load_policy(preset="tiny", steps=2, seed=4, robot="agilex_aloha2")


def cams(seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for c in ("high", "left_wrist", "right_wrist")}


def obs(**extra):
    return {"images": cams(), "state": np.full(14, 0.01), "instruction": "get water", **extra}


@pytest.mark.parametrize("mode", ["vla", "wm", "idm", "vgm", "joint"])
def test_infer_every_mode(policy, mode):
    extra = {"mode": mode}
    if mode == "wm":
        extra["actions"] = np.zeros((48, 14))
    if mode == "idm":
        extra["future_images"] = [cams(i) for i in range(8)]
    out = policy.infer(obs(**extra))
    assert out["mode"] == mode and out["seed"] == 4
    assert set(out["timing"]) >= {"total_s", "conditioning_s", "denoise_s"}
    if mode in ("wm", "vgm"):
        assert out["actions"] is None
    else:
        assert out["actions"].shape == (48, 14) and out["actions"].dtype == np.float64
        stats = load_stats(models_dir() / "stats" / "agilex_aloha2.json").action
        assert (out["actions"] >= stats.min - 1e-12).all() and (out["actions"] <= stats.max + 1e-12).all()
    if mode in ("vla", "idm"):
        assert out["frames"] is None
    else:
        assert out["frames"].shape == (8, 192, 160, 3) and out["frames"].dtype == np.uint8


def test_deterministic_with_reset(policy):
    policy.reset()
    a = policy.infer(obs())["actions"]
    b = policy.infer(obs())["actions"]
    policy.reset()
    c = policy.infer(obs())["actions"]
    assert np.array_equal(a, c) and not np.array_equal(a, b)
    other = MotusPolicy(preset="tiny", steps=2, seed=4, robot="agilex_aloha2")
    assert np.array_equal(other.infer(obs())["actions"], a)


def test_set_mode_validation(policy):
    policy.set_mode("joint", steps=3)
    assert (policy.mode, policy.steps) == ("joint", 3)
    with pytest.raises(ValueError, match="mode 'dream' is not one of vla, wm, idm, vgm, joint"):
        policy.set_mode("dream")
    with pytest.raises(ValueError, match="steps=0, expected an integer >= 1"):
        policy.set_mode("vla", steps=0)
    policy.set_mode("vla", steps=2)


def test_bad_observations_fail_clearly(policy):
    bad = obs()
    del bad["images"]["right_wrist"]
    with pytest.raises(ObservationError, match="missing cameras"):
        policy.infer(bad)
    with pytest.raises(ObservationError, match=r"state: shape \(7,\), expected \(14,\)"):
        policy.infer({**obs(), "state": np.zeros(7)})
    with pytest.raises(ObservationError, match="state: non-finite"):
        policy.infer({**obs(), "state": np.full(14, np.nan)})
    with pytest.raises(ObservationError, match="actions: required in mode 'wm'"):
        policy.infer(obs(mode="wm"))
    with pytest.raises(ObservationError, match=r"actions: shape \(10, 14\), expected \(48, 14\)"):
        policy.infer(obs(mode="wm", actions=np.zeros((10, 14))))
    with pytest.raises(ObservationError, match="future_images: got 3, expected a list of 8"):
        policy.infer(obs(mode="idm", future_images=[cams()] * 3))
    with pytest.raises(ObservationError, match="instruction"):
        policy.infer({**obs(), "instruction": ""})
    with pytest.raises(ValueError, match="mode 'x' is not one of"):
        policy.infer(obs(mode="x"))


def test_constructor_errors():
    with pytest.raises(ValueError, match="preset 'huge' is not one of tiny, small, paper"):
        MotusPolicy(preset="huge")
    with pytest.raises(ValueError, match="robot 'r2d2' has no statistics"):
        MotusPolicy(robot="r2d2")


def test_bench_policy_cli(capsys):
    assert cli_main(["bench", "policy", "--preset", "tiny", "--repeats", "1", "--modes", "vla", "--steps", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "torch" and set(result["modes"]) == {"vla"}
    assert result["modes"]["vla"]["latency_median_s"] > 0 and result["peak_memory_mb"] > 0
    assert result["conditioning_cache"]["speedup"] > 0
    assert cli_main(["bench", "policy", "--backend", "tensorrt"]) == 2
    assert "backend 'tensorrt' is not available" in capsys.readouterr().err
    assert cli_main(["bench", "policy", "--modes", "vla,nope", "--repeats", "1"]) == 2
    assert "mode 'nope'" in capsys.readouterr().err
