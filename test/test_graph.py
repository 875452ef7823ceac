"""The graph description: loading, validation errors, node command lines, environment."""
from __future__ import annotations

import pytest

from motus_ros.graph import spec as graph_mod
from motus_ros.graph.spec import GraphError, load_graph

PARAMS = "talker:\n  ros__parameters:\n    rate: 5.0\n"


def write_graph(tmp_path, body: str, params: str | None = PARAMS):
    if params is not None:
        (tmp_path / "talker.yaml").write_text(params)
    path = tmp_path / "graph.yaml"
    path.write_text(body.replace("PARAMS", str(tmp_path / "talker.yaml")))
    return path


GOOD = """
profile: unit
use_sim_time: true
environment: {MY_VAR: "1"}
nodes:
  - name: talker
    executable: some_node
    parameters: [PARAMS]
    remappings: {/chatter: /motus/chatter}
    namespace: /robot
  - name: listener
    executable: other_node
    use_sim_time: false
    required: false
"""


def test_loads_nodes_with_parameters_remappings_and_sim_time(tmp_path):
    spec = load_graph(str(write_graph(tmp_path, GOOD)))
    assert spec.profile == "unit"
    assert [n.name for n in spec.nodes] == ["talker", "listener"]
    talker = spec.node("talker")
    assert talker.command() == [
        "some_node", "--ros-args", "-r", "__node:=talker", "-r", "__ns:=/robot",
        "--params-file", str(tmp_path / "talker.yaml"), "-p", "use_sim_time:=true",
        "-r", "/chatter:=/motus/chatter"]
    listener = spec.node("listener")
    assert listener.use_sim_time is False and listener.required is False
    assert "use_sim_time:=false" in listener.command()


def test_large_data_transport_is_default_and_overridable(tmp_path):
    spec = load_graph(str(write_graph(tmp_path, GOOD)))
    env = spec.process_environment(base={})
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"
    assert env["MY_VAR"] == "1"
    env = spec.process_environment(base={"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "MY_VAR": "2"})
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4" and env["MY_VAR"] == "2"


def test_parameter_value_follows_ros_file_order(tmp_path):
    (tmp_path / "base.yaml").write_text("/**:\n  ros__parameters:\n    rate: 1.0\n    steps: 3\n"
                                        "talker:\n  ros__parameters:\n    rate: 5.0\n")
    (tmp_path / "override.yaml").write_text("talker:\n  ros__parameters:\n    steps: 7\n")
    body = GOOD.replace("parameters: [PARAMS]", f"parameters: [{tmp_path / 'base.yaml'}, {tmp_path / 'override.yaml'}]")
    spec = load_graph(str(write_graph(tmp_path, body)))
    assert spec.parameter("talker", "rate") == 5.0       # the node's own entry beats /** in a file
    assert spec.parameter("talker", "steps") == 7        # a later file beats an earlier one
    assert spec.parameter("talker", "missing", "dflt") == "dflt"
    assert spec.parameter("listener", "rate", 0) == 0    # no parameter files at all


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(GraphError, match=r"unknown profile 'nope'; expected one of: .*sim"):
        load_graph("nope")


def test_missing_parameters_file_is_named(tmp_path):
    path = write_graph(tmp_path, GOOD, params=None)
    with pytest.raises(GraphError, match=r"parameters file for node 'talker' not found: .*talker\.yaml"):
        load_graph(str(path))


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("profile: x\nnodes:\n  - name: a\n    executable: [unclosed\n")
    with pytest.raises(GraphError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        load_graph(str(path))


def test_malformed_parameters_file_is_rejected(tmp_path):
    path = write_graph(tmp_path, GOOD, params="talker:\n  rate: 5\n")
    with pytest.raises(GraphError, match=r"entry 'talker' must contain 'ros__parameters'"):
        load_graph(str(path))


@pytest.mark.parametrize("body, message", [
    ("nodes: []\n", r"'nodes' is empty"),
    ("profile: x\n", r"missing field 'nodes'"),
    ("nodes:\n  - executable: a\n", r"nodes\[0\]: missing field 'name'"),
    ("nodes:\n  - name: a\n", r"node 'a': missing field 'executable'"),
    ("nodes:\n  - {name: a, executable: b}\n  - {name: a, executable: c}\n", r"duplicate node name 'a'"),
    ("nodes:\n  - {name: a, executable: b, colour: red}\n", r"unknown field\(s\) \['colour'\]"),
    ("nodes:\n  - {name: a-b, executable: b}\n", r"not a valid ROS node name"),
    ("nodes:\n  - {name: a, executable: b, required: maybe}\n", r"field 'required' must be bool"),
])
def test_bad_fields_are_named(tmp_path, body, message):
    path = tmp_path / "g.yaml"
    path.write_text(body)
    with pytest.raises(GraphError, match=message):
        load_graph(str(path))


def test_every_shipped_profile_loads_with_its_parameter_files():
    profiles = graph_mod.available_profiles()
    assert {"sim", "mock", "agilex_aloha2", "ac_one"} <= set(profiles)
    for profile in profiles:
        spec = load_graph(profile)
        assert spec.nodes, profile
        for node in spec.nodes:
            for path in node.parameters:
                assert path.is_file(), f"{profile}/{node.name}: {path}"


def test_one_process_may_run_several_named_nodes(tmp_path):
    (tmp_path / "both.yaml").write_text("world:\n  ros__parameters:\n    seed: 3\n"
                                        "arm_driver:\n  ros__parameters:\n    rate_hz: 50.0\n")
    path = tmp_path / "g.yaml"
    path.write_text(f"robot: sim\nnodes:\n  - name: world\n    executable: sim_node\n    nodes: [world, arm_driver]\n"
                    f"    parameters: [{tmp_path / 'both.yaml'}]\n  - {{name: policy, executable: policy_node}}\n")
    spec = load_graph(str(path))
    assert spec.node("arm_driver") is spec.node("world") and spec.node("world").ros_nodes == ("world", "arm_driver")
    assert spec.parameter("arm_driver", "rate_hz") == 50.0 and spec.parameter("world", "seed") == 3
    # The robot's values are aimed at the node they are for: `-p node:name:=value`.
    args = spec.node("world").ros_arguments()
    assert "arm_driver:backend:=sim" in args and not any(a.startswith("backend:=") for a in args)
    assert spec.parameter("arm_driver", "backend") == "sim" and spec.parameter("world", "backend") is None
    assert spec.parameter("policy", "robot") == "sim"
    path.write_text("nodes:\n  - {name: a, executable: x, nodes: [a, b]}\n  - {name: b, executable: y}\n")
    with pytest.raises(GraphError, match=r"duplicate node name 'b'"):
        load_graph(str(path))


def test_parts_split_a_graph_for_two_hosts():
    from motus_ros.graph.spec import load_graph

    for profile in ("sim", "agilex_aloha2", "ac_one"):
        graph = load_graph(profile)
        robot, policy = graph.part("robot"), graph.part("policy")
        names = lambda g: [n.name for n in g.nodes]  # noqa: E731
        assert "policy" in names(policy) and "chunk_executor" in names(robot)
        assert sorted(names(robot) + names(policy)) == sorted(names(graph))   # nothing lost, nothing twice
        # each host gets its own lifecycle manager, named apart (one ROS graph spans both hosts)
        managers = [g.processes()[-1] for g in (robot, policy)]
        assert [m.name for m in managers] == ["lifecycle_manager_robot", "lifecycle_manager_policy"]
        assert "/policy" in dict(managers[1].robot_parameters)["node_names"]
        assert "/policy" not in dict(managers[0].robot_parameters)["node_names"]


@pytest.mark.parametrize("parts, message", [
    ("{robot: [nope]}", "parts.robot: unknown node 'nope'"),
    ("{a: [x], b: [x]}", "node 'x' is already in part 'a'"),
    ("{robot: x}", "parts.robot must be a list of node names"),
])
def test_bad_parts_name_the_field(tmp_path, parts, message):
    from motus_ros.graph.spec import GraphError, load_graph

    path = tmp_path / "graph.yaml"
    path.write_text(f"parts: {parts}\nnodes:\n  - {{name: x, executable: chunk_executor_node}}\n")
    with pytest.raises(GraphError, match=message):
        load_graph(str(path))
    path.write_text("nodes:\n  - {name: x, executable: chunk_executor_node}\n")
    with pytest.raises(GraphError, match="defines no 'parts'"):
        load_graph(str(path)).part("robot")


def test_cameras_and_their_readers_must_agree_on_the_image_transport(tmp_path):
    from motus_ros.graph.spec import GraphError, load_graph

    def graph(sim: str, policy: str):
        files = {}
        for node, value in (("sim", sim), ("policy", policy)):
            files[node] = tmp_path / f"{node}.yaml"
            files[node].write_text(f"{node}:\n  ros__parameters:\n    image_transport: {value}\n")
        path = tmp_path / "graph.yaml"
        path.write_text(f"nodes:\n  - {{name: sim, executable: sim_node, parameters: [{files['sim']}]}}\n"
                        f"  - {{name: policy, executable: policy_node, parameters: [{files['policy']}]}}\n")
        return load_graph(str(path))

    graph("compressed", "compressed")
    graph("both", "raw")
    graph("both", "compressed")
    with pytest.raises(GraphError, match="node 'policy' has image_transport 'raw' but the cameras"):
        graph("compressed", "raw")
    with pytest.raises(GraphError, match="node 'policy' has image_transport 'compressed'"):
        graph("raw", "compressed")
