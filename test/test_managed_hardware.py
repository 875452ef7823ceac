"""The hardware layer without ROS, the arm driver as a lifecycle node, the sim node and the
sim_node process, and which parameters of theirs may change at run time."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from motus_ros.hardware.mock import MockArmBackend
from motus_ros.layout import DOF, JOINT_NAMES, TOPICS
from ros_harness import wait_until

# Top-level packages that would mean ROS leaked into motus_ros.hardware.
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "rosidl_runtime_py", "rosidl_parser", "builtin_interfaces",
                "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs", "rosgraph_msgs",
                "diagnostic_msgs", "lifecycle_msgs", "motus_msgs")

IMPORT_ALL = """
import importlib, pkgutil, sys
import motus_ros.hardware as hw
names = [m.name for m in pkgutil.iter_modules(hw.__path__, hw.__name__ + ".")]
for name in names:
    importlib.import_module(name)
ros = sorted(m for m in sys.modules if m.split(".")[0] in {ros!r})
print("modules", len(names))
print("ros=" + ",".join(ros))
"""


def test_hardware_package_imports_no_ros():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL.format(ros=ROS_PACKAGES)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "MUJOCO_GL": "osmesa"})
    assert out.returncode == 0, out.stderr[-2000:]
    modules, ros = out.stdout.splitlines()[-2:]
    assert int(modules.split()[1]) >= 9, out.stdout    # every module was imported (sim, piper, arx, ...)
    assert ros == "ros=", f"hardware imported ROS modules: {ros}"


def test_each_backend_declares_its_own_parameters():
    from motus_ros.hardware.registry import BACKENDS, backend_class

    names = {b: {p.name for p in backend_class(b).PARAMS} for b in BACKENDS}
    assert names["mock"] == {"mock_time_constant"}
    assert {"can_channels", "leader_can_channels", "can_bustype"} <= names["piper"]
    assert names["arx"] == {"arx_interfaces", "arx_model"}
    assert names["sim"] == set()          # the world's options belong to the sim node
    arx = backend_class("arx").from_params({"arx_interfaces": ["can3", "can4"], "arx_model": "X5"}, "ac_one")
    assert arx.interfaces == ("can3", "can4")
    with pytest.raises(RuntimeError, match="sim_node"):
        backend_class("sim").from_params({}, None)


# -- the arm driver: lifecycle ----------------------------------------------------------------------
def command(positions):
    from sensor_msgs.msg import JointState

    return JointState(name=list(JOINT_NAMES), position=[float(v) for v in positions])


@pytest.fixture
def client(ros_context):
    """A node outside the harness executor, spun by the lifecycle client while it waits."""
    import rclpy

    node = rclpy.create_node(f"lifecycle_client_{os.getpid()}")
    yield node
    node.destroy_node()


@pytest.mark.ros
def test_driver_lifecycle_through_the_lifecycle_services(ros, client):
    from rclpy.parameter import Parameter

    from motus_ros.graph.lifecycle import change_state, get_state
    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    backend = MockArmBackend("mock")
    node = ros.add(ArmDriverNode(backend=backend, parameter_overrides=[
        Parameter("autostart", value=False), Parameter("command_timeout", value=5.0)]))
    pub = ros.node.create_publisher(type(command(np.zeros(DOF))), TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")
    assert get_state(client, "/arm_driver") == "unconfigured" and not backend.connected

    # configure: connected, nothing executed
    assert change_state(client, "/arm_driver", "configure") == "inactive"
    assert backend.connected and node.backend is backend
    ignored = node.ignored_commands
    pub.publish(command(np.full(DOF, 0.2)))
    wait_until(lambda: node.ignored_commands > ignored, 5, "the command to be ignored while inactive")
    assert backend.writes == 0

    # activate: commands move the arm
    assert change_state(client, "/arm_driver", "activate") == "active"
    target = np.full(DOF, 0.2)
    wait_until(lambda: pub.publish(command(target)) or np.allclose(backend.read().positions, target, atol=1e-6),
               10, "the mock arm to reach the command")

    # deactivate: the arm holds, commands are ignored
    assert change_state(client, "/arm_driver", "deactivate") == "inactive"
    held, writes, ignored = backend.read().positions, backend.writes, node.ignored_commands
    pub.publish(command(np.full(DOF, -0.2)))
    wait_until(lambda: node.ignored_commands > ignored, 5, "the command to be ignored after deactivate")
    assert backend.writes == writes
    np.testing.assert_allclose(backend.read().positions, held)

    # cleanup closes the backend; configure again reconnects it
    assert change_state(client, "/arm_driver", "cleanup") == "unconfigured"
    assert not backend.connected and node.backend is None
    assert change_state(client, "/arm_driver", "configure") == "inactive"
    assert backend.connected
    node.close()
    assert not backend.connected


@pytest.mark.ros
def test_driver_live_parameters_take_effect_and_read_only_ones_are_refused(ros):
    from rclpy.parameter import Parameter

    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    backend = MockArmBackend("mock")
    node = ros.add(ArmDriverNode(backend=backend, parameter_overrides=[
        Parameter("command_timeout", value=30.0), Parameter("rate_hz", value=100.0)]))
    pub = ros.node.create_publisher(type(command(np.zeros(DOF))), TOPICS["joint_command"], 10)
    wait_until(lambda: pub.get_subscription_count() > 0, 5, "driver subscription")

    # command_timeout: one command, then silence; the watchdog trips only once the timeout is short
    pub.publish(command(np.full(DOF, 0.1)))
    wait_until(lambda: backend.writes > 5, 5, "the driver to execute the command")
    assert node.watchdog.trips == 0
    assert node.set_parameters([Parameter("command_timeout", value=0.05)])[0].successful
    wait_until(lambda: node.watchdog.trips == 1, 5, "the watchdog to trip with the new timeout")

    # max_velocity_scale: the per-tick step limit follows (calibration/mock: 3 and 4 rad/s, 100 Hz)
    assert node.set_parameters([Parameter("max_velocity_scale", value=0.1)])[0].successful
    np.testing.assert_allclose(node.safety.max_step, [0.003] * 3 + [0.004] * 4 + [0.003] * 3 + [0.004] * 4)

    # limit_mode: out-of-limit commands are now rejected, not clipped
    assert node.set_parameters([Parameter("limit_mode", value="reject")])[0].successful
    rejected = node.safety.summary()["out_of_limits"]
    pub.publish(command(np.full(DOF, 50.0)))
    wait_until(lambda: node.safety.summary()["out_of_limits"] > rejected, 5, "an out-of-limits rejection")

    # validated: out of range refused, value unchanged
    bad = node.set_parameters([Parameter("command_timeout", value=-1.0)])[0]
    assert not bad.successful and node.p["command_timeout"] == 0.05 and node.watchdog.timeout == 0.05

    # read-only: refused, value unchanged
    for name, value in (("rate_hz", 50.0), ("backend", "piper"), ("mock_time_constant", 1.0)):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, name
    assert node.p["rate_hz"] == 100.0 and node.get_parameter("rate_hz").value == 100.0
    assert node.p["backend"] == "mock"
    node.close()


# -- the sim node ---------------------------------------------------------------------------------
@pytest.mark.ros
def test_sim_node_reset_takes_a_seed_and_refuses_bad_requests(ros):
    from rclpy.parameter import Parameter

    from motus_msgs.srv import ResetEpisode
    from motus_ros.nodes.sim_node import SIM_TOPICS, SimNode

    sim = ros.add(SimNode(parameter_overrides=[
        Parameter("camera_rate_hz", value=0.0), Parameter("real_time_factor", value=5.0),
        Parameter("task", value="insertion"), Parameter("seed", value=3)]))
    backend = sim.backend
    assert (backend.task, backend.seed, backend.camera_rate_hz) == ("insertion", 3, 0.0)
    try:
        early = ros.call(ResetEpisode, SIM_TOPICS["reset"], ResetEpisode.Request())
        assert not early.success and "arm_driver" in early.message      # nothing runs the world yet
        backend.connect()
        chosen = ros.call(ResetEpisode, SIM_TOPICS["reset"], ResetEpisode.Request(seed=7))
        assert chosen.success and (chosen.episode, chosen.seed) == (1, 7) and backend.world.seed == 7
        assert "peg" in chosen.message and "socket" in chosen.message
        bad = ros.call(ResetEpisode, SIM_TOPICS["reset"], ResetEpisode.Request(seed=-5))
        assert not bad.success and "seed" in bad.message and bad.seed == -1 and backend.episode == 1

        # real_time_factor is live; the world's shape is not
        assert sim.set_parameters([Parameter("real_time_factor", value=2.0)])[0].successful
        assert backend.real_time_factor == 2.0
        assert not sim.set_parameters([Parameter("real_time_factor", value=0.0)])[0].successful
        assert backend.real_time_factor == 2.0
        refused = sim.set_parameters([Parameter("task", value="transfer_cube")])[0]
        assert not refused.successful and backend.task == "insertion" and sim.p["task"] == "insertion"
    finally:
        backend.close()


@pytest.mark.ros
def test_sim_node_process_runs_the_world_and_its_driver_under_their_own_names(ros, tmp_path):
    """`sim_node` as bringup starts it (one process-wide __node remap): nodes `sim` and
    `arm_driver` each read their own parameter section, /clock runs, the driver publishes."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    params = tmp_path / "params.yaml"
    params.write_text("sim:\n  ros__parameters:\n    camera_rate_hz: 0.0\n    real_time_factor: 3.0\n"
                      "arm_driver:\n  ros__parameters:\n    backend: sim\n    calibration: sim\n    rate_hz: 50.0\n")
    clock = ros.collect(Clock, "/clock")
    states = ros.collect(JointState, TOPICS["joint_states"])
    exe = os.path.join(os.path.dirname(sys.executable), "sim_node")
    proc = subprocess.Popen([exe, "--ros-args", "-r", "__node:=sim", "--params-file", str(params)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        clock.wait_for(5, timeout=60)
        states.wait_for(5, timeout=60)
        wait_until(lambda: {"sim", "arm_driver"} <= set(ros.node.get_node_names()), 20,
                   "nodes sim and arm_driver")
        assert ros.node.get_node_names().count("sim") == 1
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        reader.join(timeout=5)
    assert code == 0, "".join(output)[-3000:]
