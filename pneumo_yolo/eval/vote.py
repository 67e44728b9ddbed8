"""The second level of ensemble fusion: boxes of several models, each already post-processed alone, voted into one list.

Each model's boxes are what that model alone would submit (its passes fused, gated, thresholded,
merged: the settings tuned on its out-of-fold detections). Boxes of different models that
overlap at IoU above ``iou`` are one finding, clustered greedily in descending score as in
weighted boxes fusion (:func:`cluster_models`); a finding is kept when enough models found it
(:func:`keep_votes`: ``majority``, more than half of them, or a number). Its box is the
score-weighted mean of the cluster's boxes and its score the mean of the scores of the models
that found it, so a box that the models agree on keeps the scale of one model's scores however
many models there are, unlike weighted boxes fusion's ``avg``, which multiplies by the share of
members that found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Union

import numpy as np

from ..boxes import as_boxes, iou_xyxy

MAJORITY: Final = "majority"
Votes = Union[int, Literal["majority"]]


def votes_needed(votes: Votes, models: int) -> int:
    """How many of ``models`` models must find a box: more than half of them for ``majority``, else ``votes`` (at most all of them).

    >>> [votes_needed("majority", k) for k in (1, 2, 3, 4, 5)], votes_needed(3, 2)
    ([1, 2, 2, 3, 3], 2)
    """
    return models // 2 + 1 if votes == MAJORITY else max(1, min(int(votes), models))


@dataclass(frozen=True)
class Findings:
    """Clusters of several models' boxes of one image: each one's fused ``xyxy`` box and each model's best score in it (NaN: not found)."""

    boxes: np.ndarray
    model_scores: np.ndarray
    """``(findings, models)``."""

    @property
    def votes(self) -> np.ndarray:
        """How many models found each finding."""
        return (~np.isnan(self.model_scores)).sum(axis=1)


def cluster_models(found: Sequence[tuple[np.ndarray, np.ndarray]], iou: float) -> Findings:
    """Cluster the ``(boxes, scores)`` of each model of one image: a box joins the finding it overlaps most at IoU above ``iou``."""
    boxes = np.concatenate([as_boxes(b) for b, _ in found]) if found else np.zeros((0, 4))
    scores = np.concatenate([np.asarray(s, np.float64).reshape(-1) for _, s in found]) if found else np.zeros(0)
    model = np.repeat(np.arange(len(found)), [len(np.asarray(s).reshape(-1)) for _, s in found])
    members: list[list[int]] = []
    fused = np.zeros((0, 4))
    for i in np.argsort(-scores, kind="stable"):
        overlap = iou_xyxy(boxes[i : i + 1], fused)[0]
        best = int(np.argmax(overlap)) if len(overlap) else -1
        if best >= 0 and overlap[best] > iou:
            members[best].append(i)
            chosen = members[best]
            fused[best] = scores[chosen] @ boxes[chosen] / scores[chosen].sum()
        else:
            members.append([i])
            fused = np.vstack([fused, boxes[i]])
    model_scores = np.full((len(members), len(found)), np.nan)
    for row, chosen in enumerate(members):
        for i in chosen:
            model_scores[row, model[i]] = np.fmax(model_scores[row, model[i]], scores[i])
    return Findings(fused, model_scores)


def keep_votes(findings: Findings, votes: Votes) -> tuple[np.ndarray, np.ndarray]:
    """The findings that enough models made (:func:`votes_needed`), each scoring the mean of its models' scores, best first."""
    kept = findings.votes >= votes_needed(votes, findings.model_scores.shape[1])
    scores = np.nanmean(findings.model_scores[kept], axis=1) if kept.any() else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    return findings.boxes[kept][order], scores[order]


def vote_models(
    found: Sequence[tuple[np.ndarray, np.ndarray]], iou: float, votes: Votes
) -> tuple[np.ndarray, np.ndarray]:
    """Vote the ``(boxes, scores)`` of each model of one image (:func:`cluster_models`, then :func:`keep_votes`).

    >>> a = (np.array([[0, 0, 10, 10.0]]), np.array([0.8]))
    >>> b = (np.array([[0, 0, 10, 12.0], [50, 50, 60, 60.0]]), np.array([0.6, 0.9]))
    >>> boxes, scores = vote_models([a, b], iou=0.5, votes="majority")
    >>> boxes.round(2).tolist(), scores.round(2).tolist()
    ([[0.0, 0.0, 10.0, 10.86]], [0.7])
    >>> vote_models([a, b], iou=0.5, votes=1)[1].round(2).tolist()
    [0.9, 0.7]
    """
    return keep_votes(cluster_models(found, iou), votes)
