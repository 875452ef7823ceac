"""Shared fixtures: every test session gets its own ROS_DOMAIN_ID and stays on localhost."""
from __future__ import annotations

import os

import pytest

from ros_harness import RosHarness, isolated_domain_id

# Set before rclpy (and any child process) reads them.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
os.environ["ROS_DOMAIN_ID"] = str(isolated_domain_id())
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


@pytest.fixture(scope="session")
def ros_context():
    """rclpy initialised once per test session on the isolated domain."""
    import rclpy

    rclpy.init()
    yield rclpy.get_default_context()
    rclpy.try_shutdown()


@pytest.fixture
def ros(ros_context):
    """A spinning harness: `ros.add(node)`, `ros.collect(type, topic)`, `ros.call(...)`."""
    harness = RosHarness()
    yield harness
    harness.close()
