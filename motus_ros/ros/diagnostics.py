"""Small helpers to publish diagnostic_msgs/DiagnosticArray on /diagnostics."""
from __future__ import annotations

from typing import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE


def status(name: str, level: bytes | int, message: str, values: Mapping[str, object] | None = None,
           hardware_id: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus; values are stringified (floats with 6 significant digits)."""
    items = []
    for key, value in (values or {}).items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        items.append(KeyValue(key=str(key), value=text))
    if isinstance(level, int):
        level = bytes([level])
    return DiagnosticStatus(level=level, name=name, message=message,
                            hardware_id=hardware_id, values=items)


class DiagnosticsPublisher:
    """Publishes a DiagnosticArray on /diagnostics, stamped with the node clock."""

    def __init__(self, node, topic: str = "/diagnostics"):
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, topic, 10)

    def publish(self, *statuses: DiagnosticStatus) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = list(statuses)
        self._pub.publish(msg)
