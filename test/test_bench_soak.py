"""`motus-ros bench soak`: one round of every fault against the sim graph (policy, executor, driver,
recorder; world model and visualizer left out to save the CPU). The four counts of issue 14 must be
0 and every fault must be reported on /diagnostics."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from motus_ros.bench.soak import FAULTS

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_soak_round_of_faults_keeps_the_counts_at_zero(tmp_path):
    # --minutes 0.5: the soak always completes one round of the schedule (6 episodes); on 2 busy
    # cores that takes 2-3 minutes, most of it model loading (start-up and the killed policy).
    proc = subprocess.run([MOTUS_ROS, "bench", "soak", "--minutes", "0.5", "--without", "world_model",
                           "--without", "visualizer", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    detail = json.dumps(summary["checks"], indent=1)[-4000:] + proc.stderr[-2000:]
    assert summary["aborted"] is None, detail
    assert (summary["driver_restarts"], summary["commands_outside_limits"], summary["joints_beyond_limits"],
            summary["unreadable_bags"]) == (0, 0, 0, 0), detail
    assert proc.returncode == 0, detail
    for kind in FAULTS:
        report = summary["fault_to_report_s"][kind]
        assert summary["faults"][kind] >= 1 and report["count"] == summary["faults"][kind], (kind, detail)
        assert report["never"] == 0 and report["max"] is not None, (kind, detail)
    checks = summary["checks"]
    assert checks["driver_alive_same_pid_at_end"] and checks["driver_callback_errors"] == 0
    assert checks["garbage"]["garbage_commands"]["not_counted"] == 0, detail
    assert checks["garbage"]["garbage_chunks"]["not_counted"] == 0, detail
    assert checks["estop_service_failures"] == {"estop": 0, "release": 0, "enable": 0}, detail
    assert checks["bags"]["folders"] >= len(FAULTS) and checks["bags"]["messages"] > 0, detail
    assert checks["policy_processes_started"] >= 2                  # killed once, started again
    assert not list((tmp_path / "run" / "bags").iterdir())         # read, then deleted
    assert not (tmp_path / "run" / "disk_filler.bin").exists()
