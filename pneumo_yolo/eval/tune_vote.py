"""The search of an ensemble's vote (``model_fusion: vote``) on detections of several models per image.

Each model's passes are fused and gated once per image with the base settings; then, for every
threshold, each model's boxes are cut, merged and limited as that model alone would submit
them, clustered across models once per ``model_iou``, and voted for every ``model_votes``;
every shrink factor is scored on the flat arrays of all images at once. Every
point gives exactly the boxes of :func:`~pneumo_yolo.eval.postprocess.postprocess_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from ..boxes import shrink_xyxy
from .detections import RawDetections
from .postprocess import PostprocessConfig, fuse_and_gate, limit, select
from .vote import Votes, cluster_models, keep_votes


def vote_points(
    raw: RawDetections,
    base: PostprocessConfig,
    *,
    score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    conf: Sequence[float],
    model_iou: Sequence[float],
    model_votes: Sequence[Votes],
    shrink: Sequence[float],
) -> Iterator[tuple[dict, np.ndarray]]:
    """Every grid point's settings (``model_fusion`` ``vote``, ``base`` elsewhere) and ``score(image, scores, xyxy boxes)`` of its boxes."""
    prepared = []
    for image in raw.images():
        size = (image.width, image.height)
        per_model = []
        model_ids, pass_ids = image.model_ids, image.pass_ids
        for k in range(image.models):
            mine = model_ids == k
            per_model.append(
                fuse_and_gate(
                    image.boxes[mine],
                    image.scores[mine],
                    base,
                    size,
                    pass_ids[mine],
                    image.passes,
                    image.p_opacity,
                )
            )
        prepared.append((per_model, size))
    for threshold in conf:
        level = replace(base, conf=float(threshold))
        models = [[select(b, s, level, size) for b, s in per_model] for per_model, size in prepared]
        for iou in model_iou:
            findings = [cluster_models(each, iou) for each in models]
            for votes in model_votes:
                kept = [limit(*keep_votes(f, votes), base.max_boxes, 0.0) for f in findings]
                index = np.repeat(np.arange(len(kept)), [len(s) for _, s in kept])
                boxes = np.concatenate([b for b, _ in kept]) if kept else np.zeros((0, 4))
                scores = np.concatenate([s for _, s in kept]) if kept else np.zeros(0)
                for factor in shrink:
                    settings = {
                        "conf": float(threshold),
                        "model_fusion": "vote",
                        "model_iou": float(iou),
                        "model_votes": votes,
                        "shrink": float(factor),
                    }
                    yield settings, score(index, scores, shrink_xyxy(boxes, factor))
