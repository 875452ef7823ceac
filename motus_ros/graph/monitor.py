"""An in-process rclpy node that watches a running sim graph and calls its services.

Shared by `motus-ros demo` and `motus-ros eval`: it follows simulated time (/clock), spins in a
background thread, records every ActionChunk's stamp and latency and the sim's episode counter,
starts episodes from a fresh scene, and turns a dead required node, a missing service or a silent
one into a GraphMonitorError that says which (the CLI reports it like its own errors).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from motus_ros.layout import SERVICES
from motus_ros.stamps import to_seconds


# The sim node's reset service (motus_ros.nodes.sim_node.SIM_TOPICS["reset"]; that module loads
# MuJoCo, which the monitor's process does not need).
SIM_RESET = SERVICES["sim_reset"]


class GraphMonitorError(RuntimeError):
    """The watched graph failed: a required node died, a service is missing, silent or refused."""


@dataclass(frozen=True)
class EpisodeStart:
    """A sim episode started by the monitor: its number and seed (from /sim/reset), the reset's
    message and the simulated time (s) the monitor saw it start at."""

    episode: int
    seed: int
    message: str
    sim_time: float


class GraphMonitor:
    """Node `name` on simulated time; subclasses add their subscriptions in __init__ and may
    extend `_on_chunk`."""

    def __init__(self, name: str):
        import rclpy  # noqa: PLC0415 - keep `motus-ros --help` free of ROS imports
        from rclpy.executors import MultiThreadedExecutor  # noqa: PLC0415
        from rclpy.parameter import Parameter  # noqa: PLC0415

        rclpy.init()
        self.node = rclpy.create_node(name, parameter_overrides=[
            Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._lock = threading.Lock()
        self.chunks: list[tuple[float, float]] = []    # (header stamp s, inference latency s) of each chunk
        # Simulated seconds from a chunk's observation stamp (the cameras') to its arrival here:
        # sync wait + inference + transport, what the executor sees.
        self.chunk_ages: list[float] = []
        self.episode_number = -1                         # /sim/episode, bumped by every /sim/reset
        self._subscribe_chunks_and_episodes()
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        # Our own spin loop (not executor.spin) so close() can stop and join it before the node
        # and context go away: a spin thread still waiting in rcl at interpreter exit aborts the
        # process ("terminate called without an active exception", 9 of 40 runs before this).
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context shut down under us
                if self._stop.is_set():
                    return
                raise

    def _subscribe_chunks_and_episodes(self) -> None:
        from std_msgs.msg import UInt32  # noqa: PLC0415

        from motus_msgs.msg import ActionChunk  # noqa: PLC0415
        from motus_ros.layout import TOPICS  # noqa: PLC0415
        from motus_ros.ros.qos import LATCHED  # noqa: PLC0415

        self.node.create_subscription(ActionChunk, TOPICS["action_chunk"], self._on_chunk, 10)
        self.node.create_subscription(UInt32, TOPICS["sim_episode"], self._on_episode, LATCHED)

    def _on_chunk(self, msg) -> None:
        with self._lock:
            self.chunks.append((to_seconds(msg.header.stamp), float(msg.inference_latency)))
            self.chunk_ages.append(self.now() - to_seconds(msg.header.stamp))

    def _on_episode(self, msg) -> None:
        with self._lock:
            self.episode_number = int(msg.data)

    def start_fresh_episode(self, runner, wait_s: float, before_enable=None,
                            seed: int = -1) -> EpisodeStart:
        """Disable the arms, call /sim/reset (seed -1: the sequence's next), wait (up to wait_s wall
        seconds) for two chunks computed from the new scene, run before_enable, then enable the arms.

        The arms therefore start every episode at the scene's start pose, driven by a plan of the
        scene they see: the executor drops its plan at the new /sim/episode and refuses chunks
        observed before the reset, so the old plan need not run out first."""
        from motus_ros.layout import SERVICES  # noqa: PLC0415

        self.trigger(SERVICES["disable"])
        reset = self.reset_episode(seed)
        self.wait_for(lambda: self.episode_number == reset.episode, 10.0, runner)
        t_reset = self.now()
        fresh = lambda: sum(1 for stamp, _ in self.chunks if stamp >= t_reset)  # noqa: E731
        if not self.wait_for(lambda: fresh() >= 2, wait_s, runner):
            raise GraphMonitorError(f"the policy published {fresh()} chunk(s) from the new scene within "
                                    f"{wait_s:.0f} s (see the policy log)")
        if before_enable is not None:
            before_enable()
        self.trigger(SERVICES["enable"])
        return EpisodeStart(episode=reset.episode, seed=reset.seed, message=reset.message, sim_time=t_reset)

    def reset_episode(self, seed: int = -1):
        """Call /sim/reset (motus_msgs/ResetEpisode; seed -1: the sequence's next); its response,
        or a GraphMonitorError with the sim's reason when it refuses."""
        from motus_msgs.srv import ResetEpisode  # noqa: PLC0415

        res = self.call(ResetEpisode, SIM_RESET, ResetEpisode.Request(seed=seed))
        if not res.success:
            raise GraphMonitorError(f"{SIM_RESET} failed: {res.message}")
        return res

    def now(self) -> float:
        """Simulated time (s) from /clock."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def wait_for(self, predicate, timeout: float, runner=None, interval: float = 0.05) -> bool:
        """Poll predicate for up to timeout wall seconds; a dead required node raises GraphMonitorError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            failed = runner.poll() if runner is not None else None
            if failed is not None:
                raise GraphMonitorError(f"required node {failed.spec.name} died (exit code "
                               f"{runner.exit_codes[failed.spec.name]}); see its log")
            time.sleep(interval)
        return predicate()

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise GraphMonitorError(f"service {name} did not appear within {timeout:.0f} s")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                raise GraphMonitorError(f"service {name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def trigger(self, name: str) -> str:
        """Call the std_srvs/Trigger service `name`; its message, or a GraphMonitorError when it refuses."""
        from std_srvs.srv import Trigger  # noqa: PLC0415

        res = self.call(Trigger, name, Trigger.Request())
        if not res.success:
            raise GraphMonitorError(f"{name} failed: {res.message}")
        return res.message

    def close(self) -> None:
        import rclpy  # noqa: PLC0415

        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.remove_node(self.node)
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown()
