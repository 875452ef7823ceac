"""Turn a graph description into a launch_ros LaunchDescription (for `ros2 launch` on robots).

The launch files in launch/ are three lines that call `generate_launch_description_for(profile)`,
so they can never drift from what `motus-ros bringup` starts.
"""
from __future__ import annotations

from motus_ros.graph.spec import DEFAULT_ENVIRONMENT, load_graph


def generate_launch_description_for(profile: str):
    """LaunchDescription with one launch_ros Node per graph node; required nodes end the launch."""
    from launch import LaunchDescription
    from launch.actions import SetEnvironmentVariable, Shutdown
    from launch.substitutions import EnvironmentVariable
    from launch_ros.actions import Node

    from motus_ros.graph.spec import _yaml_value

    graph = load_graph(profile)
    actions = []
    for name, value in {**DEFAULT_ENVIRONMENT, **graph.environment}.items():
        # Keep a value the user already exported (same precedence as bringup).
        actions.append(SetEnvironmentVariable(name, EnvironmentVariable(name, default_value=value)))
    for spec in graph.processes():
        # launch_ros writes dict parameters for every node of a process; values meant for one node
        # of a several-node process go on the command line as `-p node:name:=value` instead, before
        # the parameter files (launch_ros puts ros_arguments first), as bringup orders them.
        targeted = [kv for kv in spec.robot_parameters if ":" in kv[0]]
        shared = [kv for kv in spec.robot_parameters if ":" not in kv[0]]
        kwargs = dict(
            package="motus_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            # Same order as bringup's command line: robot defaults, the files, then use_sim_time.
            ros_arguments=[arg for key, value in targeted for arg in ("-p", f"{key}:={_yaml_value(value)}")],
            parameters=[*([dict(shared)] if shared else []),
                        *(str(p) for p in spec.parameters), {"use_sim_time": spec.use_sim_time},
                        # last: the graph's lifecycle_manager, not the node itself, starts it
                        *([{"autostart": False}] if spec.managed else [])],
            remappings=list(spec.remappings),
            arguments=list(spec.arguments),
            output="screen",
        )
        if spec.required:
            kwargs["on_exit"] = Shutdown(reason=f"required node {spec.name} exited")
        actions.append(Node(**kwargs))
    return LaunchDescription(actions)
