"""launch/<profile>.launch.py must start exactly the nodes of the graph description.

launch_ros is not on PyPI, so the test installs minimal stand-ins for the few launch classes the
adapter uses; they record constructor arguments so the result can be compared with the graph.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from motus_ros import paths
from motus_ros.graph.spec import _yaml_value, DEFAULT_ENVIRONMENT, available_profiles, load_graph


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_launch(monkeypatch):
    modules = {name: types.ModuleType(name) for name in
               ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    for cls_name, module in (("LaunchDescription", "launch"), ("SetEnvironmentVariable", "launch.actions"),
                             ("Shutdown", "launch.actions"), ("EnvironmentVariable", "launch.substitutions"),
                             ("Node", "launch_ros.actions")):
        setattr(modules[module], cls_name, type(cls_name, (Recorded,), {}))
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules


def run_launch_file(profile):
    path = paths.launch_dir() / f"{profile}.launch.py"
    spec = importlib.util.spec_from_file_location(f"launch_{profile}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_every_profile_has_a_launch_file():
    launch_files = {p.name.removesuffix(".launch.py") for p in paths.launch_dir().glob("*.launch.py")}
    assert launch_files == set(available_profiles())


@pytest.mark.parametrize("profile", available_profiles())
def test_launch_file_matches_graph(fake_launch, profile):
    description = run_launch_file(profile)
    actions = description.args[0]
    graph = load_graph(profile)
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    processes = graph.processes()   # the nodes, plus the lifecycle manager of the managed ones
    assert [n.kwargs["name"] for n in nodes] == [n.name for n in processes]
    assert processes[-1].name == "lifecycle_manager" and len(processes) == len(graph.nodes) + 1
    for action, spec in zip(nodes, processes):
        kw = action.kwargs
        assert kw["package"] == "motus_ros"
        assert kw["executable"] == spec.executable
        assert kw["namespace"] == spec.namespace
        # The robot's values: shared ones as the first parameter dict, values for one node of a
        # several-node process as `-p node:name:=value` arguments; none lost, none applied twice.
        shared = {k: v for k, v in spec.robot_parameters if ":" not in k}
        targeted = [(k, v) for k, v in spec.robot_parameters if ":" in k]
        assert kw["parameters"] == [*([shared] if shared else []), *(str(p) for p in spec.parameters),
                                    {"use_sim_time": spec.use_sim_time},
                                    *([{"autostart": False}] if spec.managed else [])]
        assert kw["ros_arguments"] == [a for k, v in targeted for a in ("-p", f"{k}:={_yaml_value(v)}")]
        assert len(shared) + len(targeted) == len(spec.robot_parameters)
        if len(spec.ros_nodes) > 1 and spec.robot_parameters:
            assert not shared   # a dict would reach every node of the process
        assert kw["remappings"] == list(spec.remappings)
        assert ("on_exit" in kw) == spec.required
    env = {a.args[0]: a.args[1].kwargs["default_value"] for a in actions
           if type(a).__name__ == "SetEnvironmentVariable"}
    assert env == {**DEFAULT_ENVIRONMENT, **graph.environment}


def test_launch_files_do_not_list_nodes_by_hand():
    for path in paths.launch_dir().glob("*.launch.py"):
        text = path.read_text()
        assert "generate_launch_description_for" in text and "Node(" not in text, path.name


@pytest.mark.parametrize("profile", available_profiles())
def test_bringup_applies_parameters_in_the_launch_order(fake_launch, profile):
    """bringup's command line (-p robot defaults, --params-file files, -p use_sim_time) and the
    launch file's parameter list give each node the same values in the same order."""
    import yaml

    nodes = [a for a in run_launch_file(profile).args[0] if type(a).__name__ == "Node"]
    for action, spec in zip(nodes, load_graph(profile).nodes):
        args = spec.ros_arguments()
        from_bringup = []
        for flag, value in zip(args, args[1:]):
            if flag == "-p":
                name, raw = value.split(":=", 1)
                from_bringup.append({name: yaml.safe_load(raw)})
            elif flag == "--params-file":
                from_bringup.append(value)
        # launch_ros puts ros_arguments before the parameter files, as bringup puts its -p values
        ros_args = action.kwargs["ros_arguments"]
        from_launch = [{value.split(":=", 1)[0]: yaml.safe_load(value.split(":=", 1)[1])}
                       for flag, value in zip(ros_args[::2], ros_args[1::2]) if flag == "-p"]
        for entry in action.kwargs["parameters"]:
            from_launch += [{k: v} for k, v in entry.items()] if isinstance(entry, dict) else [entry]
        assert from_bringup == from_launch, spec.name
