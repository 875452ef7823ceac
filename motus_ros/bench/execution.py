"""Execution benchmark: command timing, watchdog and emergency-stop latency, blending jumps (JSON).

Measures, in one process on an isolated ROS domain:
- command period jitter of the chunk executor at 30 Hz (its publish times) and of the Piper
  driver at 200 Hz (arrival times of the 0x155 joint frames at a fake arm on the virtual CAN
  bus; the same driver's ticks with the mock backend), each against a baseline: a bare sleep
  loop at the same rate;
- watchdog reaction: time from the command deadline (last command + timeout) to the driver's
  first holding tick;
- emergency stop: /arm/emergency_stop service call to the 0x150 frame arriving at the fake
  arm, against the backend call alone;
- the largest joint jump at chunk boundaries for each blending strategy on a synthetic chunk
  sequence (a smooth reference, chunks every 0.5 s with 0.2 s latency, horizon-growing error
  and a per-chunk offset), before and after the executor's step limit;
- chattering commands (+-0.5 rad alternating every tick) through the driver's safety filter with
  and without the acceleration limit: direction reversals per second, peak speed and peak
  acceleration of what reaches the arm (the baseline is the filter without the limit).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

HELP = "time command jitter, watchdog, e-stop latency and blending jumps of the arm stack (JSON)"


def _stats_ms(samples_s) -> dict:
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"n": 0}
    return {"n": int(ms.size), "mean_ms": round(float(ms.mean()), 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3)}


def _jitter(times, rate_hz) -> dict:
    """Period statistics and |period - nominal| jitter percentiles (ms)."""
    periods = np.diff(np.asarray(times))
    out = {"rate_hz": rate_hz, "period": _stats_ms(periods)}
    dev = np.abs(periods - 1.0 / rate_hz) * 1e3
    if dev.size:
        out["jitter_p50_ms"] = round(float(np.percentile(dev, 50)), 3)
        out["jitter_p99_ms"] = round(float(np.percentile(dev, 99)), 3)
    return out


def _sleep_loop_baseline(rate_hz: float, duration: float) -> dict:
    period, times = 1.0 / rate_hz, []
    deadline = time.monotonic()
    end = deadline + duration
    while deadline < end:
        deadline += period
        time.sleep(max(0.0, deadline - time.monotonic()))
        times.append(time.monotonic())
    return _jitter(times, rate_hz)


class _Spinner:
    """Spins nodes in a background thread (one executor per benchmark section)."""

    def __init__(self, context, *nodes):
        from rclpy.executors import MultiThreadedExecutor
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.nodes = list(nodes)
        for n in nodes:
            self.executor.add_node(n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for n in self.nodes:
            close = getattr(n, "close", None)
            if callable(close):
                close()
            self.executor.remove_node(n)
            n.destroy_node()
        self.executor.shutdown()


def _chunk_msg(node, target, chunk_id, horizon=48):
    from motus_msgs.msg import ActionChunk, InferenceMode
    from motus_ros.layout import JOINT_NAMES
    msg = ActionChunk(joint_names=list(JOINT_NAMES), control_period=1 / 30, horizon=horizon,
                      positions=np.tile(target, (horizon, 1)).ravel().tolist(), chunk_id=chunk_id)
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.mode.mode = InferenceMode.VLA
    return msg


def bench_executor_jitter(context, duration: float) -> dict:
    from rclpy.parameter import Parameter
    from motus_msgs.msg import ActionChunk
    from motus_ros.layout import DOF, TOPICS
    from motus_ros.nodes.chunk_executor_node import ChunkExecutorNode
    import rclpy

    node = ChunkExecutorNode(context=context, parameter_overrides=[Parameter("control_rate_hz", value=30.0)])
    times = []
    publish = node.cmd_pub.publish
    node.cmd_pub.publish = lambda msg: (times.append(time.monotonic()), publish(msg))
    feeder = rclpy.create_node("bench_feeder", context=context)
    pub = feeder.create_publisher(ActionChunk, TOPICS["action_chunk"], 10)
    spin = _Spinner(context, node, feeder)
    try:
        end, k = time.monotonic() + duration, 0
        while time.monotonic() < end:
            k += 1
            pub.publish(_chunk_msg(feeder, np.full(DOF, 0.01 * (k % 10)), k))
            time.sleep(0.5)
    finally:
        spin.close()
    return _jitter(times[1:], 30.0)


def _piper_rig(tag: str, rate_hz: float, context, **params):
    """Two fake Piper arms on fresh virtual channels and a driver node using the piper backend."""
    from rclpy.parameter import Parameter
    from motus_ros.hardware.piper_fake import FakePiperArm
    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    left = FakePiperArm(f"bench_{os.getpid()}_{tag}_l", joints_rad=[0, 0.5, -0.5, 0, 0, 0], follow=True)
    right = FakePiperArm(f"bench_{os.getpid()}_{tag}_r", joints_rad=[0, 0.5, -0.5, 0, 0, 0], follow=True)
    values = dict(backend="piper", calibration="agilex_aloha2", rate_hz=rate_hz,
                  can_channels=[left.channel, right.channel], can_bustype="virtual", auto_enable=True)
    values.update(params)
    node = ArmDriverNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    return node, left, right


def bench_piper_jitter(context, duration: float, rate_hz: float = 200.0) -> dict:
    import rclpy
    from sensor_msgs.msg import JointState
    from motus_ros.hardware import piper_can as pc
    from motus_ros.layout import JOINT_NAMES, TOPICS

    node, left, right = _piper_rig("jit", rate_hz, context, command_timeout=1.0)
    feeder = rclpy.create_node("bench_cmd", context=context)
    pub = feeder.create_publisher(JointState, TOPICS["joint_command"], 10)
    spin = _Spinner(context, node, feeder)
    try:
        start = node.safety.hold()
        left.clear()
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:   # 30 Hz commands, upsampled to rate_hz
            q = start.copy()
            q[0] = 0.2 * np.sin(time.monotonic() - t0)
            pub.publish(JointState(name=list(JOINT_NAMES), position=q.tolist()))
            time.sleep(1 / 30)
        frames = [f.t for f in left.received(pc.JOINT_CTRL_IDS[0]) if f.t >= t0 + 0.2]
    finally:
        spin.close()
        left.close()
        right.close()
    return _jitter(frames, rate_hz)


def bench_driver_ticks(context, duration: float, rate_hz: float = 200.0) -> dict:
    """Driver tick (backend write) times with the mock backend: the timer alone, no CAN."""
    import rclpy
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from motus_ros.hardware.mock import MockArmBackend
    from motus_ros.layout import JOINT_NAMES, TOPICS
    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    backend = MockArmBackend("mock", record_writes=True)
    node = ArmDriverNode(backend=backend, context=context, parameter_overrides=[
        Parameter("rate_hz", value=rate_hz), Parameter("command_timeout", value=1.0)])
    feeder = rclpy.create_node("bench_ticks", context=context)
    pub = feeder.create_publisher(JointState, TOPICS["joint_command"], 10)
    spin = _Spinner(context, node, feeder)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            pub.publish(JointState(name=list(JOINT_NAMES), position=[0.1 * np.sin(time.monotonic())] * 14))
            time.sleep(1 / 30)
    finally:
        spin.close()
    return _jitter([t for t, _ in backend.write_log if t >= t0 + 0.2], rate_hz)


def bench_watchdog(context, trials: int = 5, timeout: float = 0.2) -> dict:
    import rclpy
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from motus_ros.hardware.mock import MockArmBackend
    from motus_ros.layout import JOINT_NAMES, TOPICS
    from motus_ros.nodes.arm_driver_node import ArmDriverNode

    node = ArmDriverNode(backend=MockArmBackend("mock"), context=context, parameter_overrides=[
        Parameter("rate_hz", value=200.0), Parameter("command_timeout", value=timeout)])
    trips = []
    check = node.watchdog.check

    def recording_check(now):
        stale = check(now)
        if stale and not node._holding:
            trips.append(now - node.watchdog._last_feed - node.watchdog.timeout)
        return stale

    node.watchdog.check = recording_check
    feeder = rclpy.create_node("bench_wd", context=context)
    pub = feeder.create_publisher(JointState, TOPICS["joint_command"], 10)
    spin = _Spinner(context, node, feeder)
    try:
        for k in range(trials):
            n = len(trips)
            for _ in range(10):
                pub.publish(JointState(name=list(JOINT_NAMES), position=[0.01 * k] * len(JOINT_NAMES)))
                time.sleep(1 / 30)
            deadline = time.monotonic() + 5 * timeout + 1
            while len(trips) == n and time.monotonic() < deadline:
                time.sleep(0.005)
    finally:
        spin.close()
    out = {"timeout_s": timeout, "driver_rate_hz": 200.0, "reaction_after_deadline": _stats_ms(trips)}
    return out


def bench_estop(context, trials: int = 10) -> dict:
    import rclpy
    from std_srvs.srv import Trigger
    from motus_ros.hardware import piper_can as pc
    from motus_ros.layout import SERVICES

    node, left, right = _piper_rig("estop", 200.0, context)
    client_node = rclpy.create_node("bench_estop_client", context=context)
    estop = client_node.create_client(Trigger, SERVICES["emergency_stop"])
    enable = client_node.create_client(Trigger, SERVICES["enable"])
    release = client_node.create_client(Trigger, SERVICES["release_emergency_stop"])
    spin = _Spinner(context, node, client_node)
    service, direct = [], []
    try:
        estop.wait_for_service(timeout_sec=10)
        for _ in range(trials):
            left.clear()
            t0 = time.monotonic()
            future = estop.call_async(Trigger.Request())
            frame = left.wait_for(pc.MOTION_CTRL_1, timeout=5)[0]
            service.append(frame.t - t0)
            while not future.done():
                time.sleep(0.001)
            for client in (release, enable):       # leaving an e-stop is explicit: release, enable
                done = client.call_async(Trigger.Request())
                while not done.done():
                    time.sleep(0.001)
        for _ in range(trials):                    # baseline: the backend call alone
            left.clear()
            t0 = time.monotonic()
            node.backend.emergency_stop()
            direct.append(left.wait_for(pc.MOTION_CTRL_1, timeout=5)[0].t - t0)
    finally:
        spin.close()
        left.close()
        right.close()
    return {"service_call_to_0x150_frame": _stats_ms(service),
            "baseline_backend_call_to_frame": _stats_ms(direct)}


def synthetic_chunks(seconds: float = 12.0, every: float = 0.5, latency: float = 0.2,
                     horizon: int = 48, seed: int = 0):
    """(reference(t) function, list of (arrival_time, Chunk)) of a smooth 14-DoF motion."""
    from motus_ros.execution.chunks import Chunk
    from motus_ros.layout import DOF

    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.1, 0.3, DOF)     # Hz
    amp = rng.uniform(0.1, 0.4, DOF)      # rad: at most ~0.75 rad/s, 0.025 rad per 30 Hz tick
    phase = rng.uniform(0, 2 * np.pi, DOF)

    def reference(t):
        return amp * np.sin(2 * np.pi * freq * np.asarray(t)[..., None] + phase)

    chunks, dt = [], 1 / 30
    for k, stamp in enumerate(np.arange(0.0, seconds, every)):
        times = stamp + (np.arange(horizon) + 1) * dt
        drift = np.linspace(0, 1, horizon)[:, None] * rng.normal(0, 0.05, DOF)  # error grows with horizon
        offset = rng.normal(0, 0.03, DOF)                                        # per-chunk bias
        chunks.append((stamp + latency, Chunk(float(stamp), dt, reference(times) + drift + offset, k)))
    return reference, chunks


def bench_blending(max_step: float = 0.05) -> dict:
    from motus_ros.execution.chunks import STRATEGIES, ChunkScheduler, limit_step
    from motus_ros.layout import DOF, GRIPPER_INDICES

    reference, chunks = synthetic_chunks()
    arm = [i for i in range(DOF) if i not in GRIPPER_INDICES]
    ref = reference(np.arange(0, 12.5, 1 / 30))
    out = {"chunk_every_s": 0.5, "latency_s": 0.2, "control_rate_hz": 30.0, "max_step_rad": max_step,
           "baseline_reference_max_step_rad": round(float(np.max(np.abs(np.diff(ref, axis=0))[:, arm])), 5)}
    for strategy in STRATEGIES:
        sched = ChunkScheduler(strategy)
        ticks = np.round(np.arange(1, int(12.5 * 30)) / 30, 9)
        pending = list(chunks)
        raw, limited, boundary, errors, discont = [], [], [], [], []
        prev_raw = prev_cmd = None
        for t in ticks:
            switched = False
            while pending and pending[0][0] <= t + 1e-9:
                _, chunk = pending.pop(0)
                stats = sched.add(chunk, t)
                discont.append(stats.blend_discontinuity)
                switched = True
            target = sched.target(t)
            if target is None:
                continue
            cmd = limit_step(prev_cmd, target, np.full(DOF, max_step))
            if prev_raw is not None:
                jump = float(np.max(np.abs(target - prev_raw)[arm]))
                raw.append(jump)
                limited.append(float(np.max(np.abs(cmd - prev_cmd)[arm])))
                if switched:
                    boundary.append(jump)
            errors.append(float(np.max(np.abs(cmd - reference(t))[arm])))
            prev_raw, prev_cmd = target, cmd
        out[strategy] = {
            "max_jump_at_boundary_rad": round(max(boundary), 5),
            "mean_jump_at_boundary_rad": round(float(np.mean(boundary)), 5),
            "max_jump_any_tick_rad": round(max(raw), 5),
            "max_step_after_limit_rad": round(max(limited), 5),
            "max_blend_discontinuity_rad": round(max(discont), 5),
            "mean_tracking_error_rad": round(float(np.mean(errors)), 5),
        }
    return out


def bench_chatter(rate_hz: float = 200.0, seconds: float = 2.0, accel_time: float = 0.1) -> dict:
    """+-0.5 rad commands alternating every tick, through the safety filter of a Piper-calibrated
    driver at rate_hz, with the acceleration limit (accel_time) and without it (baseline)."""
    from motus_ros.execution.safety import (SafetyFilter, max_step_change_from_limits,
                                            max_step_from_limits)
    from motus_ros.hardware.calibration import load_calibration
    from motus_ros.layout import DOF

    limits = load_calibration("agilex_aloha2").limits
    middle = (limits.lower + limits.upper) / 2
    ticks = int(seconds * rate_hz)
    out = {"rate_hz": rate_hz, "seconds": seconds, "amplitude_rad": 0.5, "accel_time_s": accel_time}
    for name, change in (("without_accel_limit", None),
                         ("with_accel_limit", max_step_change_from_limits(limits, rate_hz, 1.0,
                                                                          accel_time))):
        f = SafetyFilter(limits, max_step_from_limits(limits, rate_hz), "clip", max_step_change=change)
        f.reset(middle)
        q = np.array([f.step(middle + (0.5 if k % 2 == 0 else -0.5) * np.ones(DOF)).position
                      for k in range(ticks)])[:, 0]                       # left_joint1
        velocity = np.diff(np.concatenate([[middle[0]], q])) * rate_hz
        moving = velocity[np.abs(velocity) > 1e-9]
        reversals = int(np.count_nonzero(np.diff(np.sign(moving)) != 0))
        out[name] = {"reversals_per_s": round(reversals / seconds, 1),
                     "peak_speed_rad_s": round(float(np.max(np.abs(velocity))), 3),
                     "peak_accel_rad_s2": round(float(np.max(np.abs(np.diff(velocity)))) * rate_hz, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="motus-ros bench execution", description=HELP)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per jitter measurement")
    parser.add_argument("--trials", type=int, default=10, help="emergency-stop / watchdog trials")
    parser.add_argument("--skip-ros", action="store_true", help="only the blending part (no ROS)")
    args = parser.parse_args(argv)

    result = {"bench": "execution", "blending": bench_blending(), "chatter": bench_chatter()}
    if not args.skip_ros:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        import logging
        import rclpy
        logging.getLogger("PIPER").setLevel(logging.WARNING)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=int(os.environ.get("MOTUS_BENCH_DOMAIN", 100 + os.getpid() % 100)))
        try:
            result["executor_30hz"] = {"measured": bench_executor_jitter(context, args.duration),
                                       "baseline_sleep_loop": _sleep_loop_baseline(30.0, args.duration)}
            result["piper_200hz"] = {"measured_can_frames": bench_piper_jitter(context, args.duration),
                                     "driver_ticks_mock_backend": bench_driver_ticks(context, args.duration),
                                     "baseline_sleep_loop": _sleep_loop_baseline(200.0, args.duration)}
            result["watchdog"] = bench_watchdog(context, trials=max(3, args.trials // 2))
            result["emergency_stop"] = bench_estop(context, trials=args.trials)
        finally:
            rclpy.try_shutdown(context=context)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
