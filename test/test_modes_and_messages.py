"""The one mode table and check, and the ActionChunk conversions (layout order, strict names)."""
from __future__ import annotations

import numpy as np
import pytest

from motus_msgs.msg import ActionChunk, InferenceMode
from motus_ros.layout import JOINT_NAMES, LayoutError
from motus_ros.motus.modes import CONTROL_MODES, MODE_IDS, MODES, check_mode, mode_id
from motus_ros.nodes.messages import action_chunk_msg, chunk_actions


def test_mode_numbers_are_the_message_constants():
    assert set(MODE_IDS) == set(MODES)
    assert MODE_IDS == {name: getattr(InferenceMode, name.upper()) for name in MODES}


def test_one_check_for_names_numbers_and_allowed_modes():
    from motus_ros.motus import model

    assert model.MODES is MODES and model.check_mode is check_mode   # the model uses this table
    assert check_mode("JOINT") == "joint" and check_mode(4) == "joint" and mode_id("wm") == 1
    assert check_mode(0, CONTROL_MODES, "policy node") == "vla"
    with pytest.raises(ValueError, match="mode 'fly' is not one of vla, wm, idm, vgm, joint"):
        check_mode("fly")
    with pytest.raises(ValueError, match=r"mode: got 9, expected one of VLA\(0\), WM\(1\)"):
        check_mode(9)
    with pytest.raises(ValueError, match=r"mode VGM refused by policy node: it accepts only "
                                         r"VLA\(0\) or JOINT\(4\); no actions"):
        check_mode("vgm", CONTROL_MODES, "policy node", "no actions")


def test_chunks_round_trip_and_reorder_strictly():
    actions = np.arange(48 * 14, dtype=float).reshape(48, 14)
    msg = action_chunk_msg(actions, 12.5, "joint", 3, 1 / 30, 0.01)
    assert msg.mode.mode == InferenceMode.JOINT and msg.header.stamp.sec == 12
    np.testing.assert_array_equal(chunk_actions(msg), actions)
    order = list(reversed(range(14)))
    swapped = ActionChunk(joint_names=[JOINT_NAMES[i] for i in order], horizon=48,
                          positions=actions[:, order].reshape(-1).tolist())
    np.testing.assert_array_equal(chunk_actions(swapped), actions)
    extra = ActionChunk(joint_names=[*JOINT_NAMES, "head_pan"], horizon=1, positions=[0.0] * 15)
    with pytest.raises(LayoutError, match=r"ActionChunk.joint_names: unknown \['head_pan'\]"):
        chunk_actions(extra)
    with pytest.raises(ValueError, match="ActionChunk.positions: got 5 values"):
        chunk_actions(ActionChunk(joint_names=list(JOINT_NAMES), horizon=1, positions=[0.0] * 5))
