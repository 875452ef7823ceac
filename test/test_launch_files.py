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
from motus_ros.graph import DEFAULT_ENVIRONMENT, available_profiles, load_graph


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
    assert [n.kwargs["name"] for n in nodes] == [n.name for n in graph.nodes]
    for action, spec in zip(nodes, graph.nodes):
        kw = action.kwargs
        assert kw["package"] == "motus_ros"
        assert kw["executable"] == spec.executable
        assert kw["namespace"] == spec.namespace
        assert kw["parameters"] == [*(str(p) for p in spec.parameters), {"use_sim_time": spec.use_sim_time}]
        assert kw["remappings"] == list(spec.remappings)
        assert ("on_exit" in kw) == spec.required
    env = {a.args[0]: a.args[1].kwargs["default_value"] for a in actions
           if type(a).__name__ == "SetEnvironmentVariable"}
    assert env == {**DEFAULT_ENVIRONMENT, **graph.environment}


def test_launch_files_do_not_list_nodes_by_hand():
    for path in paths.launch_dir().glob("*.launch.py"):
        text = path.read_text()
        assert "generate_launch_description_for" in text and "Node(" not in text, path.name
