"""The simulation process: the MuJoCo world, its ROS side (node `sim`) and the arm driver over it.

SimNode is the simulation's ROS side. The world itself (motus_ros.hardware.sim_backend) is plain
Python and tells its listeners about time, frames, status and episodes; SimNode turns them into
(all names absolute):
  /clock                                   rosgraph_msgs/Clock, every control step
  /camera_{high,left_wrist,right_wrist}/color/image_raw, .../camera_info
                                           sensor_msgs/Image rgb8 + CameraInfo, stamped with
                                           simulated time; intrinsics from calibration/sim/<camera>.yaml,
                                           scaled to the image size; with image_transport
                                           compressed or both, also (or only)
                                           .../image_raw/compressed: CompressedImage (JPEG)
  /sim/task_success                        std_msgs/Bool: the episode reached the task's max reward
  /sim/reward                              std_msgs/Float64: current gym-aloha reward (0..4)
  /sim/object_poses                        geometry_msgs/PoseArray, frame "world", objects in the
                                           task's order (transfer_cube: [box]; insertion: [peg, socket])
  /sim/episode                             std_msgs/UInt32, latched: episode number, sent at every
                                           reset (before that episode's first object poses)
  /sim/episode_start                       std_msgs/Header, latched: stamp = simulated time of the
                                           episode's first state (sent with /sim/episode); recorded,
                                           it lets the converter drop what a bag holds from before
                                           the reset
  /sim/reset                               motus_msgs/ResetEpisode: new episode (a given seed, or
                                           the sequence's next); answers the episode number and seed

`sim_node` (main) runs SimNode and the arm driver (ArmDriverNode with the simulated arms
injected) in one executor, because the physics thread is shared: the driver reads and writes the
very world the bridge publishes. Both run on wall time; every other node follows /clock. Each
node keeps its own name (`sim`, `arm_driver`) whatever single name the command line gives the
process, so each reads its own section of the parameter files.
"""
from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool, Float64, Header, UInt32

from motus_msgs.srv import ResetEpisode
from motus_ros.cameras.calibration import resolve_intrinsics
from motus_ros.cameras.publisher import PUBLISH_TRANSPORTS, CameraPublisher
from motus_ros.hardware.sim_backend import MAX_SEED, SimArmBackend, SimEpisode, SimListener, SimStatus
from motus_ros.layout import SERVICES, SIM_IMAGE_SIZE, TOPICS
from motus_ros.ros.run import run_node
from motus_ros.params import Param, ParameterError, declare_parameters
from motus_ros.ros.qos import LATCHED
from motus_ros.sim import world as simworld
from motus_ros.stamps import ns_to_time_msg

NAME = "sim"

PARAMS = [
    Param("task", "transfer_cube", "gym-aloha task", choices=tuple(simworld.TASKS)),
    Param("image_height", SIM_IMAGE_SIZE[0], "camera image height (pixels)", min=16, max=2048),
    Param("image_width", SIM_IMAGE_SIZE[1], "camera image width (pixels)", min=16, max=2048),
    Param("camera_rate_hz", 10.0, "camera frames per simulated second (Hz); 0 = no cameras",
          min=0.0, max=1.0 / simworld.CONTROL_DT),
    Param("real_time_factor", 1.0, "cap on simulated seconds per wall-clock second",
          min=0.01, max=100.0, live=True),
    Param("seed", 0, "seed of the episode sequence (object placements)", min=0, max=2**31 - 1),
    Param("render_quality", "fast", "'fast' (no shadows) or 'full' (gym-aloha's look)",
          choices=simworld.RENDER_QUALITIES),
    Param("image_transport", "raw", "what each camera publishes: raw (sensor_msgs/Image), compressed "
          "(sensor_msgs/CompressedImage, JPEG, on <image topic>/compressed) or both",
          choices=PUBLISH_TRANSPORTS),
    Param("jpeg_quality", 90, "JPEG quality (1-100) of the compressed camera images", min=1, max=100,
          live=True),
]

SIM_TOPICS = {
    "clock": "/clock",
    "task_success": TOPICS["task_success"],
    "reward": TOPICS["sim_reward"],
    "object_poses": TOPICS["object_poses"],
    "episode": TOPICS["sim_episode"],
    "episode_start": TOPICS["episode_start"],
    "reset": SERVICES["sim_reset"],
}


def pose_array(poses: dict[str, np.ndarray], stamp) -> PoseArray:
    """Object poses ((7,) x, y, z, qw, qx, qy, qz each) as a PoseArray in frame 'world'."""
    msg = PoseArray()
    msg.header.stamp = stamp
    msg.header.frame_id = "world"
    for pose in poses.values():
        p = Pose()
        p.position.x, p.position.y, p.position.z = (float(v) for v in pose[:3])
        p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (float(v) for v in pose[3:7])
        msg.poses.append(p)
    return msg


class SimNode(Node, SimListener):
    """The simulation's topics and reset service. Builds the world from its parameters, or
    bridges `backend` when one is given (tests); the arm driver connects and closes it."""

    def __init__(self, backend: SimArmBackend | None = None, **kwargs):
        super().__init__(NAME, **kwargs)
        self.p = declare_parameters(self, PARAMS, on_change=self._apply)
        if backend is None:
            try:
                backend = SimArmBackend(
                    task=self.p["task"], image_height=self.p["image_height"],
                    image_width=self.p["image_width"], camera_rate_hz=self.p["camera_rate_hz"],
                    real_time_factor=self.p["real_time_factor"], seed=self.p["seed"],
                    render_quality=self.p["render_quality"])
            except ValueError as exc:   # combinations the ranges above cannot express
                raise ParameterError(f"node '{NAME}': {exc}") from exc
        self.backend = backend
        self._pubs = {
            "clock": self.create_publisher(Clock, SIM_TOPICS["clock"], 10),
            "task_success": self.create_publisher(Bool, SIM_TOPICS["task_success"], 10),
            "reward": self.create_publisher(Float64, SIM_TOPICS["reward"], 10),
            "object_poses": self.create_publisher(PoseArray, SIM_TOPICS["object_poses"], 10),
            "episode": self.create_publisher(UInt32, SIM_TOPICS["episode"], LATCHED),
            "episode_start": self.create_publisher(Header, SIM_TOPICS["episode_start"], LATCHED),
        }
        self.cameras: dict[str, CameraPublisher] = {}
        if backend.camera_rate_hz > 0:
            height, width = backend.image_size
            for camera in backend.cameras:
                intrinsics, _source = resolve_intrinsics("sim", camera, width, height)
                self.cameras[camera] = CameraPublisher(
                    self, camera, intrinsics, transport=self.p["image_transport"],
                    jpeg_quality=self.p["jpeg_quality"])
        self.create_service(ResetEpisode, SIM_TOPICS["reset"], self._srv_reset)
        backend.add_listener(self)

    def _apply(self, changed: dict) -> None:
        if "real_time_factor" in changed:
            self.backend.set_real_time_factor(changed["real_time_factor"])
        if "jpeg_quality" in changed:   # read by each camera publisher at its next frame
            for pub in self.cameras.values():
                pub.jpeg_quality = int(changed["jpeg_quality"])

    # -- SimListener: called from the simulation's threads ------------------------------------------
    def on_clock(self, sim_time_ns: int) -> None:
        self._pubs["clock"].publish(Clock(clock=ns_to_time_msg(sim_time_ns)))

    def on_frame(self, stamp_ns: int, images: dict[str, np.ndarray]) -> None:
        stamp = ns_to_time_msg(stamp_ns)
        for camera, image in images.items():
            pub = self.cameras.get(camera)
            if pub is not None:
                pub.publish(image, stamp)   # JPEG-encoded here, in the sim's thread, when compressed

    def on_status(self, status: SimStatus) -> None:
        self._pubs["reward"].publish(Float64(data=status.reward))
        self._pubs["task_success"].publish(Bool(data=status.success))
        self._pubs["object_poses"].publish(pose_array(status.object_poses, ns_to_time_msg(status.stamp_ns)))

    def on_episode(self, episode: SimEpisode) -> None:
        self._pubs["episode_start"].publish(Header(stamp=ns_to_time_msg(episode.start_ns)))
        self._pubs["episode"].publish(UInt32(data=episode.number))

    # -- /sim/reset ---------------------------------------------------------------------------------
    def _srv_reset(self, request, response):
        response.seed = -1
        if not (request.seed == -1 or 0 <= request.seed <= MAX_SEED):
            response.success = False
            response.message = f"seed: got {request.seed}, expected -1 (the sequence's next) or 0..{MAX_SEED}"
            return response
        if self.backend.world is None:
            response.success = False
            response.message = "the simulation is not running: configure and activate /arm_driver first"
            return response
        try:
            episode = self.backend.reset(None if request.seed == -1 else request.seed)
        except Exception as exc:  # noqa: BLE001 - answer the caller, do not kill the executor
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        where = ", ".join(f"{k} at ({v[0]:.3f}, {v[1]:.3f}) m" for k, v in episode.object_poses.items())
        response.success = True
        response.episode, response.seed = episode.number, episode.seed
        response.message = f"episode {episode.number} (seed {episode.seed}): {where}"
        return response

    def close(self) -> None:
        """Stop listening (the driver closes the world)."""
        self.backend.remove_listener(self)


def build_process() -> list:
    """The sim process: the simulation (node `sim`) and the arm driver on its backend.

    Node-local names win over a process-wide `-r __node:=...`, which would give both one name.
    The driver comes last, so run_node closes it first: it stops the physics the bridge listens to.
    """
    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    sim = SimNode(cli_args=["--ros-args", "-r", f"__node:={NAME}"])
    try:
        driver = ArmDriverNode(backend=sim.backend, cli_args=["--ros-args", "-r", "__node:=arm_driver"])
    except BaseException:
        sim.close()
        sim.destroy_node()
        raise
    return [sim, driver]


def main(args=None) -> int:
    """Run the simulation and its arm driver in one process until shutdown."""
    return run_node(build_process, args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
