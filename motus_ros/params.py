"""Declared, documented, validated ROS parameters.

Every parameter has a description with its unit and an allowed range or set; a bad value fails
at start-up with a ParameterError naming the parameter, the value seen and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


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
    read_only: bool = False

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

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices is not None:
            text += f" (one of {list(self.choices)})"
        desc = ParameterDescriptor(description=text, read_only=self.read_only)
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


def declare_parameters(node, specs: Sequence[Param]) -> dict[str, Any]:
    """Declare every spec on node, validate the values it was started with, return name -> value."""
    values = {}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except Exception as exc:  # rclpy raises on a range/type violation of an override
            raise ParameterError(f"parameter '{spec.name}': {exc}") from exc
        values[spec.name] = spec.validate(param.value)
    return values
