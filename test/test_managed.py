"""ManagedNode and live/read-only parameters: the lifecycle and parameter contract every node follows."""
import threading

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from motus_ros.graph.lifecycle import LifecycleError, change_state, get_state
from motus_ros.ros.managed import ManagedNode
from motus_ros.params import Param, ParameterError, declare_parameters


class Recorded(ManagedNode):
    def __init__(self, name, fail_configure=False, autostart=True):
        super().__init__(name)
        self.calls = []
        self.fail_configure = fail_configure
        self.p = declare_parameters(
            self, [Param("gain", 1, "live gain", min=0, max=5, live=True), Param("port", 2.0, "fixed")],
            on_change=lambda changed: self.calls.append(changed),
            check=lambda values: self._check(values))
        self.start(autostart)

    @staticmethod
    def _check(values):
        if values["gain"] == 4:
            raise ParameterError("parameter 'gain': got 4, expected anything but 4")

    def configure(self):
        self.calls.append("configure")
        if self.fail_configure:
            raise RuntimeError("device missing")

    def activate(self):
        self.calls.append("activate")

    def deactivate(self):
        self.calls.append("deactivate")

    def cleanup(self):
        self.calls.append("cleanup")


@pytest.fixture
def ros(ros_context):
    """rclpy is initialised once per session (conftest); nodes here are spun by the tests."""
    yield


def test_autostart_reaches_active_and_close_releases_once(ros):
    node = Recorded("managed_a")
    assert node.lifecycle_state == "active"
    node.close()
    node.close()
    assert node.lifecycle_state == "finalized"
    assert node.calls == ["configure", "activate", "deactivate", "cleanup"]
    node.destroy_node()


def test_failed_configure_is_refused_and_can_be_retried(ros):
    node = Recorded("managed_b", fail_configure=True, autostart=False)
    with pytest.raises(RuntimeError, match="device missing"):   # autostart raises the reason
        node.start(True)
    assert node.lifecycle_state == "unconfigured"
    assert node.calls == ["configure", "cleanup"]       # the half-done configure was undone
    node.fail_configure = False
    node.start(True)
    assert node.lifecycle_state == "active"
    node.close()
    node.destroy_node()


def test_live_parameter_applies_read_only_is_refused_and_check_can_refuse(ros):
    node = Recorded("managed_c")
    assert node.set_parameters([Parameter("gain", value=3)])[0].successful
    assert node.p["gain"] == 3 and {"gain": 3} in node.calls
    out_of_range = node.set_parameters([Parameter("gain", value=9)])[0]
    assert not out_of_range.successful and node.p["gain"] == 3
    refused = node.set_parameters([Parameter("gain", value=4)])[0]
    assert not refused.successful and "gain" in refused.reason and node.p["gain"] == 3
    fixed = node.set_parameters([Parameter("port", value=3.0)])[0]
    assert not fixed.successful and node.p["port"] == 2.0
    node.close()
    node.destroy_node()


def test_transitions_through_the_lifecycle_services(ros):
    node = Recorded("managed_d", autostart=False)
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    client = rclpy.create_node("managed_client")
    try:
        assert get_state(client, "managed_d") == "unconfigured"
        assert change_state(client, "/managed_d", "configure") == "inactive"
        assert change_state(client, "managed_d", "activate") == "active"
        assert change_state(client, "managed_d", "deactivate") == "inactive"
        with pytest.raises(LifecycleError, match="deactivate refused"):
            change_state(client, "managed_d", "deactivate")
        assert change_state(client, "managed_d", "cleanup") == "unconfigured"
        assert change_state(client, "managed_d", "shutdown") == "finalized"
        assert node.calls == ["configure", "activate", "deactivate", "cleanup"]
    finally:
        executor.shutdown()
        client.destroy_node()
        node.destroy_node()
