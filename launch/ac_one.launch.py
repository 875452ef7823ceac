"""ros2 launch motus_ros ac_one.launch.py: the 'ac_one' graph from config/graphs/ac_one.yaml."""
from motus_ros.graph.launch_description import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("ac_one")
