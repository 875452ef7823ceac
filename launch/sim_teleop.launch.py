"""ros2 launch motus_ros sim_teleop.launch.py: the 'sim_teleop' graph from config/graphs/sim_teleop.yaml."""
from motus_ros.graph.launch_description import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("sim_teleop")
