"""ros2 launch motus_ros agilex_aloha2.launch.py: the 'agilex_aloha2' graph from config/graphs/agilex_aloha2.yaml."""
from motus_ros.graph.launch_description import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("agilex_aloha2")
