"""Declared, documented, validated ROS parameters.

Every parameter has a description with its unit and an allowed range or set; a bad value fails
at start-up with a ParameterError naming the parameter, the value seen and what was expected.

At run time a parameter is either *live* (`Param(..., live=True)`): `ros2 param set` validates it
and the node applies it at once; or *read-only* (the default): the descriptor says so and ROS
refuses the change, instead of reporting success for a value nobody reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


class ParameterError(ValueError):
    """A parameter value outside its documented range or set."""


@dataclass(frozen=True)
class Param:
    """Specification of one parameter: name, default, description (with unit), validation."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: Sequence[Any] | None = None
    # True: may change at run time (validated, then applied by the node's on_change); False: the
    # value is read once at start-up and the parameter is declared read_only.
    live: bool = False

    def validate(self, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}': got {value!r}, expected one of {list(self.choices)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ParameterError(f"parameter '{self.name}': got {value!r}, expected >= {self.min}")
            if self.max is not None and value > self.max:
                raise ParameterError(f"parameter '{self.name}': got {value!r}, expected <= {self.max}")
        return value

    def descriptor(self):
        """rcl_interfaces ParameterDescriptor (imported here: pure modules, e.g. the hardware
        backends, declare Params without importing ROS)."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor  # noqa: PLC0415

        text = self.description
        if self.choices is not None:
            text += f" (one of {list(self.choices)})"
        desc = ParameterDescriptor(description=text, read_only=not self.live)
        if isinstance(self.default, bool):
            return desc
        if isinstance(self.default, int) and (self.min is not None or self.max is not None):
            desc.integer_range = [IntegerRange(
                from_value=int(self.min if self.min is not None else -2**62),
                to_value=int(self.max if self.max is not None else 2**62), step=0)]
        elif isinstance(self.default, float) and (self.min is not None or self.max is not None):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.min if self.min is not None else -1e300),
                to_value=float(self.max if self.max is not None else 1e300), step=0.0)]
        return desc


def declare_parameters(node, specs: Sequence[Param],
                       on_change: Callable[[dict[str, Any]], None] | None = None,
                       check: Callable[[dict[str, Any]], None] | None = None,
                       lock=None) -> dict[str, Any]:
    """Declare every spec on node, validate the values it was started with, return name -> value.

    The returned dict stays current: a live parameter set at run time is validated (its spec,
    then `check(values_after_the_change)`, which raises ParameterError to refuse a combination),
    stored in the dict, and passed to `on_change({name: new_value})` so the node can apply it.
    Parameters not in `specs` (use_sim_time, another group's) are left to their own callbacks.
    With `lock`, the dict update and on_change happen while holding it, so a reader holding the
    same lock never sees half of a change (a new frame with the old kinematics).
    """
    values = {}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except Exception as exc:  # rclpy raises on a range/type violation of an override
            raise ParameterError(f"parameter '{spec.name}': {exc}") from exc
        values[spec.name] = spec.validate(param.value)
    if check is not None:
        check(dict(values))
    watch_parameters(node, specs, values, on_change, check, lock)
    return values


def watch_parameters(node, specs: Sequence[Param], values: dict[str, Any],
                     on_change: Callable[[dict[str, Any]], None] | None = None,
                     check: Callable[[dict[str, Any]], None] | None = None, lock=None) -> None:
    """Validate run-time changes of `specs` on node, keep `values` current, call on_change."""
    import contextlib  # noqa: PLC0415

    from rcl_interfaces.msg import SetParametersResult  # noqa: PLC0415

    by_name = {spec.name: spec for spec in specs}

    def ours(params):
        return {p.name: p.value for p in params if p.name in by_name}

    def validate(params):
        changed = ours(params)
        try:
            for name, value in changed.items():
                if not by_name[name].live:   # rclpy refuses read_only first; kept for clarity
                    raise ParameterError(f"parameter '{name}' is read-only: restart the node to change it")
                by_name[name].validate(value)
            if changed and check is not None:
                check({**values, **changed})
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def apply(params):
        changed = ours(params)
        if not changed:
            return
        with lock if lock is not None else contextlib.nullcontext():
            values.update(changed)
            if on_change is not None:
                on_change(changed)

    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(apply)
