"""`motus-ros lifecycle NODE [TRANSITION]`: what `ros2 lifecycle get/set` does (the ros2 CLI is not
on PyPI): print a managed node's state, or request configure / activate / deactivate / cleanup /
shutdown and print the state it reached."""
from __future__ import annotations

import argparse
import sys

HELP = "get or change the lifecycle state of a managed node (arm_driver, camera, policy, world_model)"


def main(argv: list[str]) -> int:
    from motus_ros.graph.lifecycle import TRANSITIONS, LifecycleError, change_state, get_state

    p = argparse.ArgumentParser(prog="motus-ros lifecycle", description=HELP)
    p.add_argument("node", help="node name, e.g. /policy or policy")
    p.add_argument("transition", nargs="?", choices=sorted(TRANSITIONS),
                   help="transition to request (omitted: print the current state)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the node (30)")
    args = p.parse_args(argv)
    import rclpy

    rclpy.init()
    node = rclpy.create_node("motus_ros_lifecycle_client")
    try:
        if args.transition is None:
            print(get_state(node, args.node, args.timeout))
        else:
            print(change_state(node, args.node, args.transition, args.timeout))
    except LifecycleError as exc:
        print(f"motus-ros lifecycle: {exc}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
