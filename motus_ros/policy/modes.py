"""Inference-mode names and the InferenceMode message constants (motus_msgs/msg/InferenceMode.msg).

Pure Python: the numbers mirror the .msg constants so nodes and tools can convert without ROS.
"""
from __future__ import annotations

# motus_msgs/msg/InferenceMode.msg: VLA=0 WM=1 IDM=2 VGM=3 JOINT=4
MODE_IDS = {"vla": 0, "wm": 1, "idm": 2, "vgm": 3, "joint": 4}
MODE_NAMES = {v: k for k, v in MODE_IDS.items()}
CONTROL_MODES = ("vla", "joint")  # the modes that produce actions for the arm


def mode_name(mode: int | str) -> str:
    """InferenceMode value (int) or a name in any case -> lower-case name; ValueError otherwise."""
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name not in MODE_IDS:
            raise ValueError(f"mode: got {mode!r}, expected one of "
                             f"{[m.upper() for m in MODE_IDS]}")
        return name
    if int(mode) not in MODE_NAMES:
        raise ValueError(f"mode: got {int(mode)}, expected one of "
                         + ", ".join(f"{n.upper()}({i})" for n, i in MODE_IDS.items()))
    return MODE_NAMES[int(mode)]


def mode_id(mode: str) -> int:
    return MODE_IDS[mode_name(mode)]


def check_mode(mode: int | str, allowed: tuple[str, ...], node: str, why: str = "") -> str:
    """The mode's name if `allowed` contains it, else ValueError naming the allowed modes."""
    name = mode_name(mode)
    if name not in allowed:
        allowed_text = " or ".join(f"{a.upper()}({MODE_IDS[a]})" for a in allowed)
        raise ValueError(f"mode {name.upper()} refused by {node}: it accepts only {allowed_text}"
                         + (f"; {why}" if why else ""))
    return name
