"""ros2 launch motus_ros mock.launch.py: the 'mock' graph from config/graphs/mock.yaml."""
from motus_ros.graph.launch_description import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("mock")
