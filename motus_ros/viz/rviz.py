"""Reading the RViz2 config: which topics does it display?"""
from __future__ import annotations

from pathlib import Path

import yaml


def rviz_topics(path: str | Path) -> set[str]:
    """Every topic named by a display of an .rviz file (`Topic: {Value: /x}` or `Topic: /x`)."""
    doc = yaml.safe_load(Path(path).read_text())
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Topic":
                    topic = value.get("Value") if isinstance(value, dict) else value
                    if isinstance(topic, str) and topic:
                        found.add(topic)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(doc)
    return found
