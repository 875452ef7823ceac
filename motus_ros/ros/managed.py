"""Managed (lifecycle) nodes: the nodes that own hardware or a model.

A ManagedNode is an `rclpy.lifecycle` node, so `ros2 lifecycle set /<node> configure` (or the
`/<node>/change_state` service, or `motus-ros lifecycle`) drives it. Subclasses write four plain
methods and raise on failure; this class maps them onto the transitions:

  configure()   load: open the device, read the checkpoint, build the model (unconfigured -> inactive)
  activate()    start motion, streaming or inference                        (inactive -> active)
  deactivate()  stop it; the device or model stays loaded                  (active -> inactive)
  cleanup()     release the device or model                                (inactive -> unconfigured)

An exception in configure() or activate() is logged and the transition FAILS (the node stays where
it was), so a missing camera is a refused transition with a reason, not a dead process.

Who drives the transitions: in a graph (bringup, launch files) the node is started with
`autostart:=false` and the graph's lifecycle_manager (nodes/lifecycle_manager_node.py) requests
configure and activate. Run alone, the `autostart` parameter (default true) makes the node
configure and activate itself at start-up, and a failure there is raised from start(): a node
started with a bad checkpoint exits with the reason (a ParameterError: exit status 2).
"""
from __future__ import annotations

import threading

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from motus_ros.params import Param

AUTOSTART = Param("autostart", True, "configure and activate at start-up (false: wait for "
                  "`ros2 lifecycle set <node> configure` / `motus-ros lifecycle`; graphs set false "
                  "and their lifecycle_manager drives the node)")

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """Lifecycle node whose transitions call configure/activate/deactivate/cleanup."""

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self._release_lock = threading.Lock()   # close() and a shutdown transition may race

    def configure(self) -> None:
        """Load what the node owns (override)."""

    def activate(self) -> None:
        """Start motion, streaming or inference (override)."""

    def deactivate(self) -> None:
        """Stop what activate() started (override)."""

    def cleanup(self) -> None:
        """Release what configure() loaded (override)."""

    # -- lifecycle plumbing -------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        """'unconfigured' | 'inactive' | 'active' | 'finalized' (or a transition state's label)."""
        return self._state_machine.current_state[1]

    transition_error: Exception | None = None    # why the last transition failed

    def _transition(self, what: str, method) -> TransitionCallbackReturn:
        try:
            method()
        except Exception as exc:  # noqa: BLE001 - a refused transition says why and keeps the node alive
            self.transition_error = exc
            self.get_logger().error(f"{what} failed: {exc}")
            if what in ("configure", "activate"):
                self._undo_failed(what)
            return FAILURE
        return SUCCESS

    def _undo_failed(self, what: str) -> None:
        """Release what a half-finished configure/activate took, so the node can retry."""
        try:
            if what == "activate":
                self.deactivate()
            else:
                self.cleanup()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"undoing the failed {what} failed too: {exc}")

    # What the node holds, tracked apart from the state machine: after the context is shut down
    # (SIGTERM) a transition cannot publish its event and fails before its callback runs, so
    # close() must still be able to release the device or model directly.
    _configured = False
    _activated = False

    def on_configure(self, state) -> TransitionCallbackReturn:
        result = self._transition("configure", self.configure)
        self._configured = result == SUCCESS
        return result

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = self._transition("activate", self.activate)
        if result == SUCCESS:
            self._activated = True
            super().on_activate(state)   # enables lifecycle publishers, if any
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        super().on_deactivate(state)
        self._activated = False
        return self._transition("deactivate", self.deactivate)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._configured = False
        return self._transition("cleanup", self.cleanup)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def _release(self) -> None:
        """Deactivate and clean up whatever is still held; a no-op the second time."""
        with self._release_lock:
            if self._activated:
                self._activated = False
                self._transition("deactivate", self.deactivate)
            if self._configured:
                self._configured = False
                self._transition("cleanup", self.cleanup)

    def start(self, autostart: bool) -> None:
        """Configure and activate now when autostart is true (call at the end of __init__); the
        error of a failed transition is raised."""
        if not autostart:
            return
        self.transition_error = None
        if self.trigger_configure() != SUCCESS or self.trigger_activate() != SUCCESS:
            raise self.transition_error or RuntimeError(f"{self.get_name()}: start-up transition failed")

    def close(self) -> None:
        """Deactivate and clean up whatever the node holds; safe to call twice.

        Called by run_node at exit. While ROS runs this is the shutdown transition; after the
        context is gone (SIGTERM) the resources are released directly.
        """
        if self.context.ok() and self.lifecycle_state in ("unconfigured", "inactive", "active"):
            self.trigger_shutdown()
        self._release()
