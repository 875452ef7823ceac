"""The graph description: the single source of truth for which nodes run on each robot profile.

`config/graphs/<profile>.yaml` lists the nodes with their parameter files, remappings, namespaces
and environment. `motus-ros bringup` starts it as separate processes; `launch/<profile>.launch.py`
turns the very same description into launch_ros Node actions, so both paths agree by construction.

Format:
    profile: sim
    description: one line
    robot: sim                    # optional: the robot (motus_ros/robots.py) this graph runs; every
                                  # node first gets the parameters the robot implies, then its files
    use_sim_time: true            # default for every node (a node may override)
    environment: {MUJOCO_GL: osmesa}
    parts:                        # optional: named subsets for a graph split over hosts
      robot: [arm_driver, chunk_executor]    # `motus-ros bringup <profile> --part robot`
      policy: [policy]
    nodes:
      - name: arm_driver          # ROS node name (also the key in its parameters file)
        executable: arm_driver_node
        parameters: [config/sim/arm_driver.yaml]   # relative to the package share folder; last wins
        remappings: {/from: /to}
        namespace: ""
        use_sim_time: false       # optional override
        required: true            # if it dies, bringup stops the graph (default true)
        arguments: []             # extra command-line arguments before --ros-args
        nodes: [sim, arm_driver]  # optional: the ROS nodes this one process runs (they name
                                  # themselves; default: just `name`)
        managed: true             # lifecycle node(s): true (every node of the process) or a list
                                  # of them; the graph's lifecycle_manager configures and
                                  # activates them (default false: the node starts itself)
        autostart: false          # managed nodes stay unconfigured until `motus-ros lifecycle`
                                  # (default true)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from motus_ros import paths, robots


class GraphError(ValueError):
    """A graph description or parameters file that cannot be used; the message names the field."""


# Why LARGE_DATA: with Fast DDS's default transports a 640x480 rgb8 stream between processes lost
# up to 99% of messages on the project's machines; the LARGE_DATA builtin transport (TCP + shared
# memory for big samples) delivered 30 Hz with ~3 ms latency. Users may override it.
DEFAULT_ENVIRONMENT = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    parameters: tuple[Path, ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    namespace: str = ""
    use_sim_time: bool = False
    required: bool = True
    arguments: tuple[str, ...] = ()
    # Values the graph's robot implies (robots.RobotProfile.node_parameters), given before the
    # parameter files: ROS applies parameters in command-line order, so a file may override them.
    robot_parameters: tuple[tuple[str, Any], ...] = ()
    # A process running several ROS nodes (the sim: world and arm driver share the physics) lists
    # them here; empty: the process is the one node `name`.
    nodes: tuple[str, ...] = ()
    # The ROS nodes of this process that are lifecycle nodes, driven by the lifecycle manager.
    managed: tuple[str, ...] = ()
    autostart: bool = True

    @property
    def ros_nodes(self) -> tuple[str, ...]:
        """The ROS node names this process runs."""
        return self.nodes or (self.name,)

    def ros_arguments(self) -> list[str]:
        """The `--ros-args ...` part of this node's command line."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        # In a process of several nodes each value is meant for one of them: `-p node:name:=value`.
        for name, value in self.robot_parameters:
            args += ["-p", f"{name}:={_yaml_value(value)}"]
        for path in self.parameters:
            args += ["--params-file", str(path)]
        args += ["-p", f"use_sim_time:={'true' if self.use_sim_time else 'false'}"]
        if self.managed:   # after the files: the lifecycle manager, not the node, starts it
            args += ["-p", "autostart:=false"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args

    def command(self) -> list[str]:
        return [self.executable, *self.arguments, *self.ros_arguments()]


def _yaml_value(value: Any) -> str:
    """A `-p name:=value` value as ROS parses it (YAML flow style: lists stay one argument)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
    return text.removesuffix("...").strip()


@dataclass(frozen=True)
class GraphSpec:
    profile: str
    description: str
    source: Path
    nodes: tuple[NodeSpec, ...]
    environment: dict[str, str] = field(default_factory=dict)
    robot: str | None = None          # the robot profile this graph runs (motus_ros/robots.py)
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)   # name -> process names
    part_name: str = ""               # set by part(): which host's share of the graph this is

    def part(self, name: str) -> "GraphSpec":
        """This graph with only the processes of part `name` (one host of a split deployment)."""
        from dataclasses import replace  # noqa: PLC0415

        if name not in self.parts:
            raise GraphError(f"part: got {name!r}, expected one of {sorted(self.parts)} "
                             f"(graph file {self.source})" if self.parts else
                             f"part: graph file {self.source} defines no 'parts'")
        return replace(self, nodes=tuple(n for n in self.nodes if n.name in self.parts[name]), part_name=name)

    def processes(self) -> tuple[NodeSpec, ...]:
        """What bringup and the launch files start: the nodes, plus the lifecycle manager when any
        of them is managed (derived here, so a graph cut down with --only gets its own)."""
        manager = lifecycle_manager_spec(self.nodes, self.part_name)
        return self.nodes + ((manager,) if manager is not None else ())

    def node(self, name: str) -> NodeSpec:
        """The process entry called `name`, or the one that runs the ROS node `name`."""
        for spec in self.nodes:
            if spec.name == name:
                return spec
        for spec in self.nodes:
            if name in spec.nodes:
                return spec
        raise KeyError(name)

    def parameter(self, node: str, name: str, default: Any = None) -> Any:
        """The value node `node` gets for parameter `name` from its parameter files, as ROS applies
        them: file by file, the last one that sets it wins; within a file the node's own entry wins
        over `/**`. `default` when no file sets it (the node's declared default then applies)."""
        spec = self.node(node)
        value = _robot_values(spec, node).get(name, default)
        for path in spec.parameters:
            raw = _load_yaml(path, "parameters file") or {}
            for key in ("/**", node, f"/{node}"):
                params = (raw.get(key) or {}).get("ros__parameters") or {}
                if name in params:
                    value = params[name]
        return value

    def node_parameters(self, node: str) -> dict[str, Any]:
        """Every parameter value node `node` is started with (robot defaults, then its files in
        order; within a file its own entry over `/**`), e.g. to build the node in a test."""
        spec = self.node(node)
        values = _robot_values(spec, node)
        for path in spec.parameters:
            raw = _load_yaml(path, "parameters file") or {}
            for key in ("/**", node, f"/{node}"):
                values.update((raw.get(key) or {}).get("ros__parameters") or {})
        return values

    def process_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for node processes: defaults < graph environment < the caller's variables."""
        base = dict(os.environ if base is None else base)
        env = {**DEFAULT_ENVIRONMENT, **self.environment}
        env.update(base)
        return env


LIFECYCLE_MANAGER = "lifecycle_manager"


def _qualified(spec: NodeSpec, node: str) -> str:
    return "/" + "/".join(part.strip("/") for part in (spec.namespace, node) if part.strip("/"))


def lifecycle_manager_spec(nodes: tuple[NodeSpec, ...], part: str = "") -> NodeSpec | None:
    """The lifecycle_manager process for these nodes (None when none is managed); one part of a
    split graph gets `lifecycle_manager_<part>`, so two hosts never run two nodes of one name."""
    managed = [(spec, node) for spec in nodes for node in spec.managed]
    if not managed:
        return None

    def names(pairs) -> str:
        return ",".join(_qualified(spec, node) for spec, node in pairs)

    parameters = (("node_names", names((s, n) for s, n in managed if s.autostart)),
                  ("manual_nodes", names((s, n) for s, n in managed if not s.autostart)),
                  ("required_nodes", names((s, n) for s, n in managed if s.required)))
    return NodeSpec(name=f"{LIFECYCLE_MANAGER}_{part}" if part else LIFECYCLE_MANAGER,
                    executable="lifecycle_manager_node",
                    robot_parameters=parameters, required=True, use_sim_time=False)


def _robot_values(spec: NodeSpec, node: str) -> dict[str, Any]:
    """The robot parameters of ROS node `node` in process `spec` (`node:name` keys are targeted)."""
    values = {}
    for key, value in spec.robot_parameters:
        target, _, name = key.rpartition(":")
        if target in ("", node):
            values[name] = value
    return values


def graphs_dir() -> Path:
    return paths.config_dir() / "graphs"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in graphs_dir().glob("*.yaml"))


def _load_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GraphError(f"{what} not found: {path}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GraphError(f"{what} {path}:{where}: malformed YAML ({problem})") from None


def check_parameters_file(path: Path, node_name: str) -> None:
    """A ROS 2 parameters file: a mapping of node name (or /**) to {ros__parameters: {...}}."""
    data = _load_yaml(path, f"parameters file for node '{node_name}'")
    if not isinstance(data, dict) or not data:
        raise GraphError(f"parameters file {path}: expected a mapping '<node>: {{ros__parameters: ...}}', "
                         f"got {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, dict) or "ros__parameters" not in value:
            raise GraphError(f"parameters file {path}: entry '{key}' must contain 'ros__parameters'")
        if not isinstance(value["ros__parameters"], dict):
            raise GraphError(f"parameters file {path}: '{key}.ros__parameters' must be a mapping")


def _resolve_graph_path(profile_or_path: str) -> Path:
    candidate = Path(profile_or_path)
    if candidate.suffix in (".yaml", ".yml") or os.sep in profile_or_path:
        if not candidate.is_file():
            raise GraphError(f"graph file not found: {candidate}")
        return candidate
    path = graphs_dir() / f"{profile_or_path}.yaml"
    if not path.is_file():
        profiles = ", ".join(available_profiles()) or "(none)"
        raise GraphError(f"unknown profile '{profile_or_path}'; expected one of: {profiles}")
    return path


def _require(mapping: dict, key: str, kind: type, where: str, default: Any = ...):
    if key not in mapping:
        if default is ...:
            raise GraphError(f"{where}: missing field '{key}'")
        return default
    value = mapping[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise GraphError(f"{where}: field '{key}' must be {names}, got {type(value).__name__} ({value!r})")
    return value


def load_graph(profile_or_path: str, check_parameter_files: bool = True) -> GraphSpec:
    """Load and validate a graph by profile name (config/graphs/<name>.yaml) or by file path."""
    path = _resolve_graph_path(profile_or_path)
    data = _load_yaml(path, "graph file")
    if not isinstance(data, dict):
        raise GraphError(f"graph file {path}: expected a mapping with 'nodes', got {type(data).__name__}")
    where = f"graph file {path}"
    profile = _require(data, "profile", str, where, default=path.stem)
    description = _require(data, "description", str, where, default="")
    default_sim_time = _require(data, "use_sim_time", bool, where, default=False)
    environment = _require(data, "environment", dict, where, default={})
    robot_name = _require(data, "robot", str, where, default=None)
    try:
        robot = robots.get(robot_name) if robot_name is not None else None
    except ValueError:
        raise GraphError(f"{where}: field 'robot' is {robot_name!r}, expected one of {sorted(robots.PROFILES)}") from None
    raw_nodes = _require(data, "nodes", list, where)
    if not raw_nodes:
        raise GraphError(f"{where}: 'nodes' is empty; expected at least one node")
    nodes, seen = [], set()
    for index, raw in enumerate(raw_nodes):
        node_where = f"{where}: nodes[{index}]"
        if not isinstance(raw, dict):
            raise GraphError(f"{node_where}: expected a mapping, got {type(raw).__name__}")
        unknown = set(raw) - {"name", "executable", "parameters", "remappings", "namespace",
                              "use_sim_time", "required", "arguments", "nodes", "managed", "autostart"}
        if unknown:
            raise GraphError(f"{node_where}: unknown field(s) {sorted(unknown)}")
        name = _require(raw, "name", str, node_where)
        if not _NAME_RE.match(name):
            raise GraphError(f"{node_where}: name {name!r} is not a valid ROS node name")
        if name in seen or name == LIFECYCLE_MANAGER:
            raise GraphError(f"{node_where}: duplicate node name '{name}'"
                             + (" (the graph's lifecycle manager)" if name == LIFECYCLE_MANAGER else ""))
        node_where = f"{where}: node '{name}'"
        hosted = tuple(_require(raw, "nodes", list, node_where, default=[]))
        for ros_node in hosted:
            if not isinstance(ros_node, str) or not _NAME_RE.match(ros_node):
                raise GraphError(f"{node_where}: nodes: {ros_node!r} is not a valid ROS node name")
            if ros_node in seen and ros_node != name:
                raise GraphError(f"{node_where}: duplicate node name '{ros_node}'")
        seen.update((name, *hosted))
        managed = _managed_nodes(raw, hosted or (name,), node_where)
        params = []
        for entry in _require(raw, "parameters", list, node_where, default=[]):
            param_path = paths.resolve(str(entry))
            if check_parameter_files:
                check_parameters_file(param_path, name)
            params.append(param_path)
        remaps = _require(raw, "remappings", dict, node_where, default={})
        executable = _require(raw, "executable", str, node_where)
        implied = {}
        for ros_node in hosted or (name,):
            for key, value in (robot.node_parameters(ros_node) if robot is not None else {}).items():
                implied[f"{ros_node}:{key}" if len(hosted) > 1 else key] = value
        nodes.append(NodeSpec(
            name=name,
            executable=executable,
            parameters=tuple(params),
            remappings=tuple((str(k), str(v)) for k, v in remaps.items()),
            namespace=_require(raw, "namespace", str, node_where, default=""),
            use_sim_time=_require(raw, "use_sim_time", bool, node_where, default=default_sim_time),
            required=_require(raw, "required", bool, node_where, default=True),
            arguments=tuple(str(a) for a in _require(raw, "arguments", list, node_where, default=[])),
            robot_parameters=tuple(implied.items()),
            nodes=hosted,
            managed=managed,
            autostart=_require(raw, "autostart", bool, node_where, default=True),
        ))
    parts = _parts(_require(data, "parts", dict, where, default={}), [n.name for n in nodes], where)
    graph = GraphSpec(profile=profile, description=description, source=path, nodes=tuple(nodes),
                      environment={str(k): str(v) for k, v in environment.items()}, robot=robot_name,
                      parts=parts)
    if check_parameter_files:
        check_image_transports(graph)
    return graph


# Who publishes camera images and who reads them (each has an `image_transport` parameter).
IMAGE_PUBLISHERS = ("camera", "sim")
IMAGE_CONSUMERS = ("policy", "world_model", "recorder")


def check_image_transports(graph: GraphSpec) -> None:
    """A consumer reading a form no publisher of the graph sends would wait forever in silence."""
    present = {n for spec in graph.nodes for n in spec.ros_nodes}
    sent = {graph.parameter(n, "image_transport", "raw") for n in IMAGE_PUBLISHERS if n in present}
    if not sent or "both" in sent:
        return
    for node in IMAGE_CONSUMERS:
        if node in present and (wanted := graph.parameter(node, "image_transport", "raw")) not in sent:
            raise GraphError(f"graph file {graph.source}: node '{node}' has image_transport '{wanted}' but the "
                             f"cameras ({', '.join(n for n in IMAGE_PUBLISHERS if n in present)}) publish "
                             f"{sorted(sent)}; set both to the same value (or the cameras to 'both')")


def _parts(raw: dict, names: list[str], where: str) -> dict[str, tuple[str, ...]]:
    """The `parts` field: name -> list of process names; each process in at most one part."""
    parts, owner = {}, {}
    for part, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise GraphError(f"{where}: parts.{part} must be a list of node names, got {members!r}")
        for member in members:
            if member not in names:
                raise GraphError(f"{where}: parts.{part}: unknown node {member!r}; expected one of {names}")
            if member in owner:
                raise GraphError(f"{where}: parts.{part}: node {member!r} is already in part '{owner[member]}'")
            owner[member] = part
        parts[str(part)] = tuple(members)
    return parts


def _managed_nodes(raw: dict, ros_nodes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The `managed` field: true = every node of the process, a list = those nodes."""
    value = raw.get("managed", False)
    if isinstance(value, bool):
        return tuple(ros_nodes) if value else ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GraphError(f"{where}: field 'managed' must be true/false or a list of node names, got {value!r}")
    unknown = [v for v in value if v not in ros_nodes]
    if unknown:
        raise GraphError(f"{where}: managed: {unknown} not among this process's nodes {list(ros_nodes)}")
    return tuple(value)


def with_parameter_overrides(graph: GraphSpec, path: Path, overrides: dict) -> GraphSpec:
    """`graph` with `overrides` ({node: {"ros__parameters": {...}}}) written to the YAML file `path`
    and given last to those nodes, so its values win over config/."""
    from dataclasses import replace

    path.write_text(yaml.safe_dump(overrides, sort_keys=False))
    return replace(graph, nodes=tuple(replace(n, parameters=n.parameters + (path,))
                                      if set(n.ros_nodes) & set(overrides) else n for n in graph.nodes))
