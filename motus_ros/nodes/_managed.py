"""Managed (lifecycle) nodes: the nodes that own hardware or a model.

A ManagedNode is an `rclpy.lifecycle` node, so `ros2 lifecycle set /<node> configure` (or the
`/<node>/change_state` service, or `motus-ros lifecycle`) drives it. Subclasses write four plain
methods and raise on failure; this class maps them onto the transitions:

  configure()   load: open the device, read the checkpoint, build the model (unconfigured -> inactive)
  activate()    start motion, streaming or inference                        (inactive -> active)
  deactivate()  stop it; the device or model stays loaded                  (active -> inactive)
  cleanup()     release the device or model                                (inactive -> unconfigured)

An exception in configure() or activate() is logged and the transition FAILS (the node stays where
it was), so a missing camera is a refused transition with a reason, not a dead process. With the
`autostart` parameter true (the default) the node configures and activates itself at start-up,
as the project's nodes always did; with false it waits for a transition request.
"""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from motus_ros.params import Param

AUTOSTART = Param("autostart", True, "configure and activate at start-up (false: wait for "
                  "`ros2 lifecycle set <node> configure` / `motus-ros lifecycle`)")

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """Lifecycle node whose transitions call configure/activate/deactivate/cleanup."""

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

    def _transition(self, what: str, method) -> TransitionCallbackReturn:
        try:
            method()
        except Exception as exc:  # noqa: BLE001 - a refused transition says why and keeps the node alive
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

    def on_configure(self, state) -> TransitionCallbackReturn:
        return self._transition("configure", self.configure)

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = self._transition("activate", self.activate)
        if result == SUCCESS:
            super().on_activate(state)   # enables lifecycle publishers, if any
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        super().on_deactivate(state)
        return self._transition("deactivate", self.deactivate)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._transition("cleanup", self.cleanup)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._release_from(state.label)
        return SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self._release_from(state.label)
        return SUCCESS

    def _release_from(self, label: str) -> None:
        if label == "active":
            self._transition("deactivate", self.deactivate)
            label = "inactive"
        if label == "inactive":
            self._transition("cleanup", self.cleanup)

    def start(self, autostart: bool) -> None:
        """Configure and activate now when autostart is true (call at the end of __init__)."""
        if autostart and self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def close(self) -> None:
        """Shut down from whatever primary state the node is in (deactivate, then clean up).

        Called by run_node at exit; safe to call twice (a finalized node has nothing left).
        """
        if self.lifecycle_state in ("unconfigured", "inactive", "active"):
            self.trigger_shutdown()
