"""ros2 launch motus_ros sim.launch.py: the 'sim' graph from config/graphs/sim.yaml."""
from motus_ros.graph.launch_description import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("sim")
