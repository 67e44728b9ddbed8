"""The image-level gate: box scores combined with the image classifier's probability of opacity.

With an image-level probability of opacity ``p``, every box score becomes ``score × p ** alpha``,
and an image with ``p < threshold`` keeps no box: the RSNA winners' way of silencing false
positives on the 77 % of images without opacity. Without a classifier (``p`` is NaN) scores
pass unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ..boxes import as_boxes


def gate(scores: np.ndarray, p_opacity: float, alpha: float, threshold: float) -> np.ndarray:
    """Box scores after the image gate: ``score × p ** alpha``, or all 0 where ``p < threshold``.

    >>> gate(np.array([0.8, 0.5]), 0.25, 1.0, 0.1).tolist(), gate(np.array([0.8]), 0.05, 1.0, 0.1).tolist()
    ([0.2, 0.125], [0.0])
    """
    s = np.asarray(scores, dtype=np.float64)
    if math.isnan(p_opacity):
        return s
    if p_opacity < threshold:
        return np.zeros_like(s)
    return s * p_opacity**alpha


def apply_gate(
    boxes: np.ndarray, scores: np.ndarray, p_opacity: float, alpha: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gate` the scores and drop the boxes it sets to 0; without a probability, nothing changes."""
    if math.isnan(p_opacity):
        return as_boxes(boxes), np.asarray(scores, dtype=np.float64)
    gated = gate(scores, p_opacity, alpha, threshold)
    keep = gated > 0
    return as_boxes(boxes)[keep], gated[keep]
