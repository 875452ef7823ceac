"""motus_ros: ROS 2 stack for the Motus unified latent-action world model."""
