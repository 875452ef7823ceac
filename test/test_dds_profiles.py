"""The shipped Fast DDS profile for two hosts (config/dds/two_hosts.xml) parses, and two processes
using it (both 'hosts' at 127.0.0.1) discover each other and exchange messages over UDP."""
from __future__ import annotations

import os
import subprocess
import sys

from motus_ros import paths

TALK_AND_LISTEN = r"""
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node(sys.argv[1])
if sys.argv[1] == "talker":
    pub = node.create_publisher(String, "/two_hosts_check", 10)
    end = time.monotonic() + 40
    while time.monotonic() < end:
        pub.publish(String(data="hello"))
        rclpy.spin_once(node, timeout_sec=0.1)
else:
    got = []
    node.create_subscription(String, "/two_hosts_check", lambda m: got.append(m.data), 10)
    end = time.monotonic() + 40
    while not got and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("received", got[:1], flush=True)
"""


def test_two_hosts_profile_parses_and_connects(tmp_path):
    profile = (paths.config_dir() / "dds" / "two_hosts.xml").read_text()
    assert "ROBOT_HOST_IP" in profile and "POLICY_HOST_IP" in profile   # what the README says to edit
    local = tmp_path / "two_hosts.xml"
    local.write_text(profile.replace("ROBOT_HOST_IP", "127.0.0.1").replace("POLICY_HOST_IP", "127.0.0.1"))
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_BUILTIN_TRANSPORTS"}
    env.update(FASTDDS_DEFAULT_PROFILES_FILE=str(local), ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
               ROS_DOMAIN_ID=str(150 + os.getpid() % 50))
    run = lambda role: subprocess.Popen([sys.executable, "-c", TALK_AND_LISTEN, role], env=env,  # noqa: E731
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listener, talker = run("listener"), run("talker")
    try:
        out, _ = listener.communicate(timeout=60)
    finally:
        talker.kill()
        talker_out, _ = talker.communicate(timeout=10)
    assert "XMLPARSER" not in out + talker_out, out + talker_out
    assert "received ['hello']" in out, out
