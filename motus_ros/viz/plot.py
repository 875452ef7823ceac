"""Headless (Agg) plots: predicted vs executed joint trajectories, image grids for snapshots, the
world model's predicted-vs-real panel.

Uses matplotlib's object API with FigureCanvasAgg (no pyplot global state, no display needed).
"""
from __future__ import annotations

import numpy as np

from motus_ros.layout import JOINT_NAMES


def _figure(width_in: float, height_in: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[:, :, :3])


def draw_joint_axes(axes, predicted_t, predicted, executed_t, executed) -> None:
    """One axis per joint (14): predicted (dashed) vs executed (solid); times in seconds."""
    for j, ax in enumerate(axes):
        if executed is not None and len(executed):
            ax.plot(executed_t, executed[:, j], color="tab:blue", lw=1.0, label="executed")
        if predicted is not None and len(predicted):
            ax.plot(predicted_t, predicted[:, j], color="tab:orange", lw=1.0, ls="--",
                    label="predicted")
        ax.set_title(JOINT_NAMES[j], fontsize=7)
        ax.tick_params(labelsize=5)


def joint_plot(predicted_t, predicted, executed_t, executed, size=(960, 400), dpi=80) -> np.ndarray:
    """RGB image (H, W, 3) of predicted vs executed joints, time relative to 'now' in seconds."""
    fig = _figure(size[0] / dpi, size[1] / dpi, dpi)
    axes = fig.subplots(2, 7).ravel()
    draw_joint_axes(axes, predicted_t, predicted, executed_t, executed)
    axes[0].legend(fontsize=5, loc="best")
    fig.tight_layout(pad=0.3)
    return figure_to_rgb(fig)


def draw_comparison(ax, image: np.ndarray, title: str) -> None:
    """The world model's comparison image (real frames in the top half, predicted below, see
    viz/prediction_check.comparison_image) on one axis, its rows named on the left."""
    h = image.shape[0]
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([h / 4, 3 * h / 4], ["real", "predicted"], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
