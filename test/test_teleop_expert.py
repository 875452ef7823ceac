"""Teleop expert node parameters: the script length is live, the task read-only."""
from __future__ import annotations

import pytest
from geometry_msgs.msg import Pose, PoseArray
from rclpy.parameter import Parameter
from std_msgs.msg import UInt32

from motus_ros.layout import TOPICS
from motus_ros.ros.qos import LATCHED
from motus_ros.sim.world import TASKS
from ros_harness import wait_until

pytestmark = pytest.mark.ros


def test_episode_steps_is_live_and_task_is_read_only(ros):
    from motus_ros.nodes.teleop_expert_node import TeleopExpertNode

    expert = ros.add(TeleopExpertNode(parameter_overrides=[Parameter("episode_steps", value=200)]))
    episodes = ros.node.create_publisher(UInt32, TOPICS["sim_episode"], LATCHED)
    poses = ros.node.create_publisher(PoseArray, "/sim/object_poses", 10)
    cube = Pose()
    cube.position.x, cube.position.y, cube.position.z, cube.orientation.w = 0.1, 0.5, 0.05, 1.0
    objects = PoseArray(poses=[cube] * len(TASKS["transfer_cube"].objects))

    def planned(episode: int):
        def check():
            episodes.publish(UInt32(data=episode))
            poses.publish(objects)
            return expert.episodes_started == episode
        wait_until(check, 10, f"a plan for episode {episode}", interval=0.05)
        return expert.expert

    assert len(planned(1)) == 200
    assert expert.set_parameters([Parameter("episode_steps", value=120)])[0].successful
    assert len(planned(2)) == 120                      # the next episode's plan uses the new length
    assert not expert.set_parameters([Parameter("episode_steps", value=0)])[0].successful
    refused = expert.set_parameters([Parameter("task", value="insertion")])[0]
    assert not refused.successful and expert.p["task"] == "transfer_cube"
