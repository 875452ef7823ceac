"""The robot registry (motus_ros/robots.py): each profile points at real files, and every graph's
nodes resolve to the robot the graph runs."""
from __future__ import annotations

import pytest

from motus_ros import paths, robots
from motus_ros.graph.spec import GraphError, available_profiles, load_graph


@pytest.mark.parametrize("name", sorted(robots.PROFILES))
def test_every_robot_has_a_graph_whose_nodes_resolve_to_it(name):
    profile = robots.get(name)
    assert profile.graph in available_profiles()
    graph = load_graph(profile.graph)
    assert graph.robot in (None, name)
    for spec in graph.nodes:
        for node in getattr(spec, "nodes", ()) or (spec.name,):     # a process may host several nodes
            for key, value in profile.node_parameters(node).items():
                assert graph.parameter(node, key) == value, f"{profile.graph}/{node}.{key}"


def test_graphs_that_name_a_robot_give_its_parameters_first():
    graph = load_graph("agilex_aloha2")
    assert graph.robot == "agilex_aloha2"
    driver = graph.node("arm_driver")
    args = driver.ros_arguments()
    assert args.index("backend:=piper") < args.index("--params-file")
    assert "can_channels:=[can_left, can_right]" in args
    assert graph.parameter("recorder", "robot_profile") == "agilex_aloha2"
    assert graph.parameter("visualizer", "robot") == "agilex_aloha2"
    assert load_graph("ac_one").parameter("arm_driver", "arx_interfaces") == ["can0", "can1"]


def test_a_parameter_file_overrides_the_robot_default(tmp_path):
    (tmp_path / "driver.yaml").write_text("arm_driver:\n  ros__parameters:\n    can_bustype: virtual\n")
    path = tmp_path / "g.yaml"
    path.write_text(f"robot: agilex_aloha2\nnodes:\n  - name: arm_driver\n    executable: arm_driver_node\n"
                    f"    parameters: [{tmp_path / 'driver.yaml'}]\n")
    graph = load_graph(str(path))
    assert graph.parameter("arm_driver", "can_bustype") == "virtual"
    assert graph.parameter("arm_driver", "backend") == "piper"
    args = graph.node("arm_driver").ros_arguments()
    assert args.index("can_bustype:=socketcan") < args.index(str(tmp_path / "driver.yaml"))  # ROS: last wins


def test_unknown_robot_in_a_graph_names_the_field_and_the_robots(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("robot: nope\nnodes:\n  - {name: a, executable: b}\n")
    with pytest.raises(GraphError, match=r"field 'robot' is 'nope', expected one of \[.*'agilex_aloha2'"):
        load_graph(str(path))
    with pytest.raises(ValueError, match=r"robot: got 'nope', expected one of"):
        robots.get("nope")


@pytest.mark.parametrize("name", sorted(robots.PROFILES))
def test_profile_points_at_existing_files_and_known_backends(name):
    from motus_ros.cameras.registry import BACKENDS as CAMERA_BACKENDS
    from motus_ros.hardware.registry import BACKENDS as ARM_BACKENDS
    from motus_ros.hardware.registry import backend_class
    from motus_ros.nodes.arm_driver_node import PARAMS

    profile = robots.get(name)
    assert (paths.calibration_dir() / profile.calibration / "joints.yaml").is_file()
    assert profile.stats is None or profile.stats.is_file()
    assert profile.arm_backend in ARM_BACKENDS
    # The driver declares its own parameters and the chosen backend's (its PARAMS).
    declared = {p.name for p in (*PARAMS, *getattr(backend_class(profile.arm_backend), "PARAMS", ()))}
    assert set(profile.arm_options) <= declared, "arm options must be arm driver or backend parameters"
    assert profile.camera_backend is None or profile.camera_backend in CAMERA_BACKENDS
    with pytest.raises(TypeError):
        profile.arm_options["x"] = 1                    # frozen: nobody edits the registry in place


def test_policy_robots_and_kinematics_come_from_the_registry():
    from motus_ros.policy.runtime import ROBOTS, stats_path
    from motus_ros.viz.kinematics import make_kinematics

    assert ROBOTS == ("sim", "agilex_aloha2", "ac_one")
    assert stats_path("ac_one") == paths.models_dir() / "stats" / "ac_one.json"
    with pytest.raises(ValueError, match="robot 'mock' has no statistics"):
        stats_path("mock")
    for name in robots.with_kinematics():
        make_kinematics(name, {"left": (0, 0, 0), "right": (1, 0, 0)})
