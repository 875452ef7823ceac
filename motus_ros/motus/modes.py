"""The five inference modes of Motus: the one table of names, roles and message numbers.

A mode is only a choice of per-modality timesteps (model.py): each modality is denoised (t 1 -> 0),
held at noise (t = 1, never updated) or given clean (t = 0, returned bit-identical). Pure Python
(no torch, no ROS) so nodes and tools validate a mode without loading the model; model.py,
the policy runtime and the nodes all check modes with `check_mode` below.
"""
from __future__ import annotations

DENOISE, NOISE, CLEAN = "denoise", "noise", "clean"
# mode -> (video role, action role)
MODE_TABLE: dict[str, tuple[str, str]] = {
    "vla": (NOISE, DENOISE),
    "wm": (DENOISE, CLEAN),
    "idm": (CLEAN, DENOISE),
    "vgm": (DENOISE, NOISE),
    "joint": (DENOISE, DENOISE),
}
MODES = tuple(MODE_TABLE)
# The numbers of motus_msgs/msg/InferenceMode.msg (VLA=0 WM=1 IDM=2 VGM=3 JOINT=4; a test compares).
MODE_IDS = {"vla": 0, "wm": 1, "idm": 2, "vgm": 3, "joint": 4}
# The modes whose actions may command the arm: WM imagines given actions, IDM explains a given
# video, VGM produces no actions.
CONTROL_MODES = ("vla", "joint")


def _label(name: str) -> str:
    return f"{name.upper()}({MODE_IDS[name]})"


def check_mode(mode: int | str, allowed: tuple[str, ...] = MODES, who: str = "", why: str = "") -> str:
    """A mode name (any case) or InferenceMode number -> lower-case name; ValueError otherwise.

    The error names what was given and the accepted values; a known mode outside `allowed` is
    refused with `who` (the component refusing it) and `why` in the message.
    """
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name not in MODE_TABLE:
            raise ValueError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    else:
        number = int(mode)
        by_number = {i: n for n, i in MODE_IDS.items()}
        if number not in by_number:
            raise ValueError(f"mode: got {number}, expected one of "
                             + ", ".join(_label(n) for n in MODES))
        name = by_number[number]
    if name not in allowed:
        raise ValueError(f"mode {name.upper()} refused by {who or 'this component'}: it accepts only "
                         + " or ".join(_label(a) for a in allowed) + (f"; {why}" if why else ""))
    return name


def mode_id(mode: int | str) -> int:
    """The InferenceMode number of a mode (name or number)."""
    return MODE_IDS[check_mode(mode)]
