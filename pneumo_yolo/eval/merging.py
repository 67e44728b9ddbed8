"""Merging the boxes of one image: sorting, clipping, greedy NMS and weighted boxes fusion; pure functions on arrays.

Boxes are ``(N, 4)`` ``x1 y1 x2 y2`` pixel arrays with ``(N,)`` scores. Every function returns
boxes sorted by descending score (equal scores keep their order).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..boxes import as_boxes, clip_xyxy, iou_xyxy, scale_xyxy


def sort_by_score(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores in descending score order (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return as_boxes(boxes)[order], np.asarray(scores, dtype=np.float64)[order]


def clean(boxes: np.ndarray, scores: np.ndarray, size: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image ``(W, H)``, drop boxes left with no area, sort by descending score."""
    b = clip_xyxy(boxes, *size)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return sort_by_score(b[keep], s[keep])


@functools.cache
def load_weighted_boxes_fusion() -> Callable:
    """``ensemble_boxes.weighted_boxes_fusion``, loaded from its own module without the package's ``__init__``.

    That ``__init__`` also imports the package's NMS and 3-D fusion modules, and with them numba
    (about 55 MB of memory in every predict process) for functions this project does not use;
    ``ensemble_boxes_wbf.py`` itself imports only numpy and ``warnings``.
    """
    package = importlib.util.find_spec("ensemble_boxes")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("ensemble-boxes is not installed: pip install ensemble-boxes")
    path = Path(package.submodule_search_locations[0]) / "ensemble_boxes_wbf.py"
    spec = importlib.util.spec_from_file_location("pneumo_yolo.eval._ensemble_boxes_wbf", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"ensemble-boxes is incomplete: {path} cannot be loaded; reinstall ensemble-boxes")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.weighted_boxes_fusion


def fuse(
    boxes_list: Sequence[np.ndarray],
    scores_list: Sequence[np.ndarray],
    size: tuple[float, float],
    iou: float,
    *,
    skip_conf: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted boxes fusion (``ensemble_boxes.weighted_boxes_fusion``) of several box lists of one image.

    Use it for TTA: pass the boxes of each pass, all as ``xyxy`` pixels of the original
    image ``size = (W, H)``. Boxes are clipped to the image and normalised as
    ``ensemble-boxes`` requires; boxes scoring 0 carry no weight and are dropped. A fused
    box scores the average of its members, scaled down when fewer lists than given
    contributed (``conf_type="avg"``).
    """
    width, height = size
    prepared = [clean(b, s, size) for b, s in zip(boxes_list, scores_list, strict=True)]
    prepared = [(b[s > 0], s[s > 0]) for b, s in prepared]
    if not any(len(s) for _, s in prepared):
        return np.zeros((0, 4)), np.zeros(0)
    fused, fused_scores, _ = load_weighted_boxes_fusion()(
        [scale_xyxy(b, 1 / width, 1 / height) for b, _ in prepared],
        [s for _, s in prepared],
        [np.zeros(len(s)) for _, s in prepared],
        iou_thr=iou,
        skip_box_thr=skip_conf,
    )
    return sort_by_score(clip_xyxy(scale_xyxy(fused, width, height), width, height), fused_scores)


def fuse_passes(
    boxes: np.ndarray,
    scores: np.ndarray,
    pass_index: np.ndarray | None,
    passes: int,
    size: tuple[float, float],
    iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's boxes of ``passes`` passes (``pass_index`` says which found each box) fused by WBF; one pass is only sorted.

    A fused box scores the mean of its passes' scores × the share of passes that found it.

    >>> boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 12]])
    >>> fused, scores = fuse_passes(boxes, np.array([0.8, 0.4]), np.array([0, 1]), 2, (100, 100), 0.5)
    >>> len(fused), round(float(scores[0]), 3)
    (1, 0.6)
    """
    b, s, m = as_boxes(boxes), np.asarray(scores, dtype=np.float64), _pass_ids(pass_index, len(scores))
    if passes <= 1:
        return sort_by_score(b, s)
    return fuse([b[m == k] for k in range(passes)], [s[m == k] for k in range(passes)], size, iou)


def nms_keep(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS mask over ``boxes`` already sorted by descending score: each box is dropped
    when it overlaps a better kept box at IoU > ``iou``.

    The mask of the ``k`` best boxes is the first ``k`` entries of the full mask.

    >>> nms_keep(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]), 0.5).tolist()
    [True, False, True]
    """
    overlap = iou_xyxy(boxes, boxes)
    keep = np.ones(len(overlap), dtype=bool)
    for i in range(len(keep)):
        if keep[i]:
            keep[i + 1 :] &= overlap[i, i + 1 :] <= iou
    return keep


def nms(boxes: np.ndarray, scores: np.ndarray, size: tuple[float, float], iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression (:func:`nms_keep`) after :func:`clean`; equal scores keep their order."""
    b, s = clean(boxes, scores, size)
    keep = nms_keep(b, iou)
    return b[keep], s[keep]


def _pass_ids(pass_index: np.ndarray | None, n: int) -> np.ndarray:
    """Each of ``n`` boxes' pass; ``None`` reads as all 0 (one pass)."""
    return np.zeros(n, np.int64) if pass_index is None else np.asarray(pass_index)
