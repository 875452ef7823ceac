"""InferenceWorker: runs policy.infer() in its own thread so ROS callbacks never block.

One job at a time: submit() returns False while an inference is running (the caller counts it as
skipped, it is never queued behind stale data). Mode changes are applied in the worker thread
right before the next inference, so the policy object is only ever touched from one thread.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class InferenceWorker:
    """A daemon thread owning one policy object (anything with infer/set_mode/reset)."""

    def __init__(self, policy, on_result: Callable[[dict, Any, float], None],
                 on_error: Callable[[dict, BaseException], None], name: str = "inference"):
        self.policy = policy
        self._on_result, self._on_error = on_result, on_error
        self._cond = threading.Condition()
        self._job: tuple[dict, Any] | None = None
        self._pending_mode: tuple[str, int | None] | None = None
        self._pending_reset = False
        self._busy = False
        self._stop = False
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.last_duration_s: float | None = None
        self._started_at: float | None = None    # monotonic start of the running inference
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or self._job is not None

    def busy_for(self) -> float:
        """Seconds the running inference has taken so far (0 when idle)."""
        with self._cond:
            return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    def submit(self, observation: dict, meta: Any = None) -> bool:
        """Start an inference on observation; False (and counted) if one is still running."""
        with self._cond:
            if self._stop or self._busy or self._job is not None:
                self.skipped += 1
                return False
            self._job = (observation, meta)
            self._cond.notify_all()
            return True

    def set_mode(self, mode: str, steps: int | None = None) -> None:
        """Apply policy.set_mode(mode, steps) before the next inference."""
        with self._cond:
            self._pending_mode = (mode, steps)

    def reset(self) -> None:
        with self._cond:
            self._pending_reset = True

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._job is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                observation, meta = self._job
                self._job, self._busy = None, True
                pending_mode, self._pending_mode = self._pending_mode, None
                pending_reset, self._pending_reset = self._pending_reset, False
            start = time.monotonic()
            with self._cond:
                self._started_at = start
            try:
                if pending_reset:
                    self.policy.reset()
                if pending_mode is not None:
                    self.policy.set_mode(*pending_mode)
                result = self.policy.infer(observation)
            except Exception as exc:  # noqa: BLE001 - reported to the node, never kills the thread
                self.failed += 1
                self._finish()
                self._on_error(meta, exc)
                continue
            self.last_duration_s = time.monotonic() - start
            self.completed += 1
            try:
                self._on_result(meta, result, self.last_duration_s)
            except Exception as exc:  # noqa: BLE001
                self.failed += 1
                self._on_error(meta, exc)
            finally:
                self._finish()

    def _finish(self) -> None:
        with self._cond:
            self._busy = False
            self._started_at = None
            self._cond.notify_all()
