"""Simulation cost: physics per control step and CPU rendering per camera at several sizes (JSON)."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

HELP = "time MuJoCo physics steps and OSMesa camera renders of the gym-aloha scene (JSON)"


def _time(fn, repeats: int) -> dict:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    ms = np.asarray(samples) * 1e3
    return {"mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="motus-ros bench sim", description=HELP)
    parser.add_argument("--task", default="transfer_cube", choices=["transfer_cube", "insertion"])
    parser.add_argument("--sizes", default="120x160,240x320,480x640",
                        help="comma-separated HxW render sizes")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    from motus_ros.layout import CAMERAS
    from motus_ros.sim.world import CONTROL_DT, SimWorld

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    world = SimWorld(args.task, sizes[0], seed=0)
    hold = world.qpos()
    physics = _time(lambda: world.step(hold), args.repeats * 5)
    result = {"bench": "sim", "task": args.task, "control_dt_s": CONTROL_DT,
              "physics_step": physics,
              "physics_real_time_factor": round(CONTROL_DT * 1e3 / physics["mean_ms"], 1),
              "render": []}
    world.close()
    for height, width in sizes:
        world = SimWorld(args.task, (height, width), seed=0)
        for camera in CAMERAS:
            world.render(camera)  # warm-up: creates the GL context
        per_camera = {camera: _time(lambda c=camera: world.render(c), args.repeats)
                      for camera in CAMERAS}
        three = sum(v["mean_ms"] for v in per_camera.values())
        result["render"].append({
            "height": height, "width": width, "per_camera": per_camera,
            "three_cameras_mean_ms": round(three, 3),
            "max_camera_rate_hz": round(1e3 / three, 2)})
        world.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
