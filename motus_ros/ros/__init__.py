"""ROS plumbing every node uses: lifecycle base (managed), process main (run), QoS, diagnostics,
Image <-> numpy (images)."""
