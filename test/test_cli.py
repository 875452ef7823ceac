"""The motus-ros command line: dispatch, and one-line errors with a non-zero exit on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


def run(*args, timeout=60):
    return subprocess.run([MOTUS_ROS, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    result = run("--help")
    assert result.returncode == 0
    assert "bringup" in result.stdout and "bench" in result.stdout


def test_unknown_command_is_one_line_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()]  # exactly one line
    assert "unknown command 'frobnicate'" in result.stderr


def test_bringup_unknown_profile():
    result = run("bringup", "no_such_robot")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown profile 'no_such_robot'; expected one of:" in lines[0]


def test_bringup_missing_parameters_file(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(f"nodes:\n  - name: a\n    executable: arm_driver_node\n"
                     f"    parameters: [{tmp_path / 'absent.yaml'}]\n")
    result = run("bringup", str(graph), "--duration", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "parameters file for node 'a' not found" in lines[0] and "absent.yaml" in lines[0]


def test_bringup_malformed_yaml(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes: [\n")
    result = run("bringup", str(graph))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed YAML" in lines[0] and "g.yaml" in lines[0]


def test_bringup_unknown_executable(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes:\n  - {name: a, executable: no_such_node_exe}\n")
    result = run("bringup", str(graph), "--duration", "1")
    assert result.returncode == 2
    assert "executable 'no_such_node_exe' not found" in result.stderr


def test_bringup_bad_duration():
    result = run("bringup", "mock", "--duration", "-3")
    assert result.returncode == 2
    assert "--duration: got -3.0, expected a positive number of seconds" in result.stderr


def test_bringup_dry_run_prints_node_commands():
    result = run("bringup", "mock", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("arm_driver_node --ros-args -r __node:=arm_driver")
    assert lines[1].startswith("chunk_executor_node --ros-args -r __node:=chunk_executor")
    assert lines[2].startswith("lifecycle_manager_node --ros-args -r __node:=lifecycle_manager "
                               "-p node_names:=/arm_driver")


def test_bringup_params_file_goes_last_to_every_node(tmp_path):
    extra = tmp_path / "overrides.yaml"
    extra.write_text("chunk_executor:\n  ros__parameters:\n    control_rate_hz: 20.0\n")
    result = run("bringup", "mock", "--dry-run", "--params-file", str(extra))
    assert result.returncode == 0, result.stderr
    *nodes, manager = result.stdout.strip().splitlines()
    assert manager.startswith("lifecycle_manager_node")   # derived by bringup, takes no files
    for line in nodes:
        assert line.split("--params-file ")[-1].split()[0] == str(extra)  # after the node's own


def test_bringup_bad_params_file_is_one_line_error(tmp_path):
    missing = run("bringup", "mock", "--dry-run", "--params-file", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "not found" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: 3\n")
    wrong = run("bringup", "mock", "--dry-run", "--params-file", str(bad))
    assert wrong.returncode == 2 and "entry 'policy' must contain 'ros__parameters'" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
