"""The report's charts as PNG bytes, drawn with matplotlib's object API (no pyplot, no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

PREDICTED_COLOUR = "#d62728"
TRUE_COLOUR = "#2ca02c"
SCORE_COLOUR = "#1f77b4"


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.2))
    return figure, figure.subplots()


def iou_threshold_bars(thresholds: np.ndarray, scores: np.ndarray) -> bytes:
    """Bar chart of the metric at each IoU threshold."""
    figure, axes = _figure()
    labels = [f"{t:.2f}" for t in thresholds]
    axes.bar(labels, np.nan_to_num(scores), color=SCORE_COLOUR)
    for i, value in enumerate(scores):
        axes.annotate(
            "n/a" if np.isnan(value) else f"{value:.3f}",
            (i, np.nan_to_num(value)),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set(xlabel="IoU threshold", ylabel="score", ylim=(0, 1.05), title="RSNA metric per IoU threshold")
    return _png(figure)


def confidence_curve(thresholds: np.ndarray, scores: np.ndarray) -> bytes:
    """The metric against the confidence threshold, with the best threshold marked."""
    figure, axes = _figure()
    axes.plot(thresholds, scores, marker="o", color=SCORE_COLOUR)
    if np.isfinite(scores).any():
        best = int(np.nanargmax(scores))
        axes.axvline(thresholds[best], color="grey", linestyle=":")
        axes.annotate(
            f"best {scores[best]:.3f} at {thresholds[best]:.2f}",
            (thresholds[best], scores[best]),
            xytext=(5, -12),
            textcoords="offset points",
            fontsize=8,
        )
    axes.set(
        xlabel="confidence threshold",
        ylabel="score",
        xlim=(0, 1),
        ylim=(0, 1.05),
        title="Score against the confidence threshold",
    )
    return _png(figure)


def box_count_bars(bins: Sequence[str], predicted: np.ndarray, true: np.ndarray | None) -> bytes:
    """Images per number of boxes, predicted (red) beside true (green)."""
    figure, axes = _figure()
    positions = np.arange(len(bins))
    width = 0.4 if true is not None else 0.8
    axes.bar(
        positions - (width / 2 if true is not None else 0), predicted, width, label="predicted", color=PREDICTED_COLOUR
    )
    if true is not None:
        axes.bar(positions + width / 2, true, width, label="true", color=TRUE_COLOUR)
    axes.set_xticks(positions, list(bins))
    axes.set(xlabel="boxes per image", ylabel="images", title="Boxes per image")
    axes.legend()
    return _png(figure)
