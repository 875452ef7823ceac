"""Bringup drives the managed nodes' lifecycle: the graph's lifecycle_manager configures and
activates them, leaves `autostart: false` nodes unconfigured, and a required node that cannot be
configured stops the graph."""
from __future__ import annotations

import pytest
from sensor_msgs.msg import JointState

from motus_ros import paths
from motus_ros.graph.lifecycle import change_state, get_state, wait_for_future
from motus_ros.graph.spec import GraphError, load_graph
from motus_ros.layout import TOPICS
from test_bringup_e2e import Bringup, process_alive

MOCK_PARAMS = paths.config_dir() / "mock" / "arm_driver.yaml"


def graph_file(tmp_path, driver_extra: str = "", params: str = str(MOCK_PARAMS)):
    path = tmp_path / "graph.yaml"
    path.write_text(f"robot: mock\nnodes:\n  - name: arm_driver\n    executable: arm_driver_node\n"
                    f"    managed: true\n    parameters: [{params}]\n{driver_extra}")
    return path


def test_graph_adds_a_lifecycle_manager_for_managed_nodes(tmp_path):
    graph = load_graph(str(graph_file(tmp_path, "    autostart: false\n    required: false\n")))
    driver, manager = graph.processes()
    assert driver.managed == ("arm_driver",)
    assert driver.command()[-2:] == ["-p", "autostart:=false"]   # after the files: wins over them
    assert manager.name == "lifecycle_manager" and manager.required
    assert dict(manager.robot_parameters) == {"node_names": "", "manual_nodes": "/arm_driver",
                                             "required_nodes": ""}
    sim = load_graph("sim")
    manager = sim.processes()[-1]
    assert dict(manager.robot_parameters)["node_names"] == "/arm_driver,/policy,/world_model"
    assert dict(manager.robot_parameters)["required_nodes"] == "/arm_driver,/policy"
    assert [n.managed for n in sim.nodes if n.managed] == [("arm_driver",), ("policy",), ("world_model",)]
    mock = load_graph("mock")
    assert len(mock.processes()) == len(mock.nodes) + 1
    unmanaged = tmp_path / "plain.yaml"
    unmanaged.write_text("nodes:\n  - {name: chunk_executor, executable: chunk_executor_node}\n")
    assert load_graph(str(unmanaged)).processes() == load_graph(str(unmanaged)).nodes


@pytest.mark.parametrize("body, message", [
    ("    managed: [policy]\n", "managed: ['policy'] not among this process's nodes ['arm_driver']"),
    ("    managed: yes please\n", "field 'managed' must be true/false or a list"),
    ("    autostart: 'no'\n", "field 'autostart' must be bool"),
])
def test_bad_managed_fields_name_the_field(tmp_path, body, message):
    path = tmp_path / "graph.yaml"
    path.write_text("nodes:\n  - name: arm_driver\n    executable: arm_driver_node\n" + body)
    with pytest.raises(GraphError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_graph(str(path))


def test_lifecycle_manager_name_is_reserved(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text("nodes:\n  - {name: lifecycle_manager, executable: chunk_executor_node}\n")
    with pytest.raises(GraphError, match="the graph's lifecycle manager"):
        load_graph(str(path))


@pytest.mark.e2e
@pytest.mark.ros
def test_autostart_false_node_waits_for_the_user_then_runs(ros, tmp_path):
    states = ros.collect(JointState, TOPICS["joint_states"])
    bringup = Bringup(str(graph_file(tmp_path, "    autostart: false\n")), "--duration", "120")
    try:
        assert get_state(ros.node, "arm_driver", 60, wait_for_future) == "unconfigured"
        assert not states.messages                       # nothing published before activate
        assert "left unconfigured (autostart: false)" in "\n".join(bringup.lines)
        assert change_state(ros.node, "arm_driver", "configure", 30, wait_for_future) == "inactive"
        assert change_state(ros.node, "arm_driver", "activate", 30, wait_for_future) == "active"
        assert states.wait_for(1, timeout=30)
    finally:
        code = bringup.stop()
    assert code == 0, bringup.output
    for name, pid in bringup.node_pids().items():
        assert not process_alive(pid), f"{name} still running"


@pytest.mark.e2e
def test_required_node_that_cannot_configure_stops_the_graph(tmp_path):
    params = tmp_path / "piper.yaml"   # Piper arms on CAN interfaces this machine does not have
    params.write_text("arm_driver:\n  ros__parameters:\n    backend: piper\n    calibration: agilex_aloha2\n"
                      "    can_channels: [nocan_left, nocan_right]\n    enable_timeout: 0.5\n")
    bringup = Bringup(str(graph_file(tmp_path, params=str(params))), "--duration", "120")
    code = bringup.proc.wait(timeout=120)
    bringup._reader.join(timeout=5)
    assert code == 1, bringup.output
    assert "bring-up of /arm_driver failed" in bringup.output
    assert "[arm_driver]" in bringup.output and "configure failed" in bringup.output
    assert "required node lifecycle_manager died; stopping the graph" in bringup.output
    for name, pid in bringup.node_pids().items():
        assert not process_alive(pid), f"{name} still running"


@pytest.mark.ros
def test_manager_brings_nodes_up_and_reports_a_required_failure(ros):
    """In one process: the manager drives two managed nodes, one of which cannot configure."""
    from rclpy.parameter import Parameter

    from motus_ros.nodes.lifecycle_manager_node import LifecycleManager
    from test_managed import Recorded

    good = ros.add(Recorded("lm_good", autostart=False))
    bad = ros.add(Recorded("lm_bad", fail_configure=True, autostart=False))
    optional = ros.add(LifecycleManager(parameter_overrides=[
        Parameter("node_names", value="/lm_good,/lm_bad"), Parameter("required_nodes", value="/lm_good"),
        Parameter("service_timeout_s", value=20.0), Parameter("transition_timeout_s", value=20.0)]))
    assert optional.bring_up() == 0                     # lm_bad failed, but it is not required
    assert good.lifecycle_state == "active" and good.calls == ["configure", "activate"]
    assert bad.lifecycle_state == "unconfigured" and "/lm_bad" in optional.failures
    assert optional.bring_up() == 0 and good.calls == ["configure", "activate"]   # active: nothing repeated

    strict = ros.add(LifecycleManager(parameter_overrides=[
        Parameter("node_names", value="/lm_bad"), Parameter("required_nodes", value="lm_bad"),
        Parameter("service_timeout_s", value=20.0), Parameter("transition_timeout_s", value=20.0)]))
    assert strict.bring_up() == 1
    # every parameter is read-only: a change at run time is refused and the value kept
    result = strict.set_parameters([Parameter("node_names", value="/lm_good")])[0]
    assert not result.successful and strict.get_parameter("node_names").value == "/lm_bad"
