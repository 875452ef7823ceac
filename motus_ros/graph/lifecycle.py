"""Drive managed nodes from outside: what `ros2 lifecycle get/set` does, through lifecycle_msgs.

Used by `motus-ros lifecycle` (the ros2 CLI is not on PyPI) and by the tests.
"""
from __future__ import annotations

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,  # the server maps it from any state
}


class LifecycleError(RuntimeError):
    """A transition that was refused or a node that did not answer."""


# Why retries: a service reply can be lost right after discovery (the client's request reaches the
# server before the server's reply writer has matched the client's reader; seen under load as a
# get_state that never answered while the node ran). A state query is safe to repeat; a transition
# is not, so change_state sends it once and learns the outcome from the reply or from the state.
ATTEMPT_S = 2.0
GOAL_STATES = {"configure": "inactive", "activate": "active", "deactivate": "inactive",
               "cleanup": "unconfigured", "shutdown": "finalized"}


def _call(node, srv_type, name: str, request, timeout_s: float, spin, repeat: bool = True,
          settled=None):
    """The reply to `request`, asking again every ATTEMPT_S while `repeat` (idempotent requests);
    without repeat, `settled()` (a reply-equivalent or None) is checked between waits."""
    import time  # noqa: PLC0415

    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise LifecycleError(f"{name}: no such service within {timeout_s:g} s (is the node running "
                                 "and on this ROS_DOMAIN_ID?)")
        deadline = time.monotonic() + timeout_s
        future = client.call_async(request)
        while True:
            spin(future, max(0.0, min(ATTEMPT_S, deadline - time.monotonic())))
            if future.done() and future.result() is not None:
                return future.result()
            if time.monotonic() >= deadline:
                raise LifecycleError(f"{name}: no answer within {timeout_s:g} s")
            if repeat:
                client.remove_pending_request(future)
                future = client.call_async(request)
            elif settled is not None and (answer := settled()) is not None:
                return answer
    finally:
        node.destroy_client(client)


def wait_for_future(future, timeout_s: float) -> None:
    """A `spin` for a node that another thread already spins: block until the future is done or
    timeout_s passes."""
    import threading  # noqa: PLC0415

    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    done.wait(timeout_s)


def _default_spin(node):
    import rclpy  # noqa: PLC0415

    return lambda future, timeout_s: rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)


def get_state(node, target: str, timeout_s: float = 5.0, spin=None) -> str:
    """Label of the primary state of managed node `target` ('/policy' or 'policy')."""
    target = "/" + target.lstrip("/")
    result = _call(node, GetState, f"{target}/get_state", GetState.Request(), timeout_s,
                   spin or _default_spin(node))
    return result.current_state.label


def change_state(node, target: str, transition: str, timeout_s: float = 30.0, spin=None) -> str:
    """Request `transition` of `target`; returns the new state label, raises LifecycleError if refused."""
    if transition not in TRANSITIONS:
        raise LifecycleError(f"transition: got {transition!r}, expected one of {sorted(TRANSITIONS)}")
    target = "/" + target.lstrip("/")
    spin = spin or _default_spin(node)
    before = get_state(node, target, timeout_s, spin)
    request = ChangeState.Request()
    request.transition.id = TRANSITIONS[transition]
    if transition == "shutdown":
        request.transition.id = {"inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                                 "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}.get(
                                     before, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)

    def reached_goal():
        """A reply-equivalent once the node reports the goal state (its reply may have been lost)."""
        try:
            state = get_state(node, target, ATTEMPT_S, spin)
        except LifecycleError:       # busy in the transition itself
            return None
        return ChangeState.Response(success=True) if state == GOAL_STATES[transition] else None

    result = _call(node, ChangeState, f"{target}/change_state", request, timeout_s, spin,
                   repeat=False, settled=reached_goal)
    after = get_state(node, target, timeout_s, spin)
    if not result.success:
        raise LifecycleError(f"{target}: {transition} refused in state '{before}' (now '{after}'); "
                             "the node's log says why")
    return after
