"""Pure box maths on ``(N, 4)`` float arrays.

Conventions (named by their fields, so that none is mistaken for another):
- ``ltwh``: left, top, width, height in pixels (the RSNA CSV and submission format);
- ``xyxy``: corners x1, y1, x2, y2 in pixels;
- ``yolo``: ``cxcywh`` (centre x, centre y, width, height), each divided by the image's own
  size: YOLO's label format. Ultralytics calls the unnormalised centre form ``xywh``; no
  function here uses that name.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    """Return ``boxes`` as a float64 ``(N, 4)`` array (an empty list gives ``(0, 4)``)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def ltwh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[x, y, w, h]`` → ``[x1, y1, x2, y2]``.

    >>> ltwh_to_xyxy(np.array([[10, 20, 30, 40]])).tolist()
    [[10.0, 20.0, 40.0, 60.0]]
    """
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_ltwh(boxes: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` → ``[x, y, w, h]``."""
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def clip_xyxy(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip corner boxes to the image ``[0, width] × [0, height]``."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    return b


def clip_ltwh(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip ``ltwh`` boxes to the image; a box wholly outside gets zero width or height."""
    return xyxy_to_ltwh(clip_xyxy(ltwh_to_xyxy(boxes), width, height))


def ltwh_to_yolo(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel ``ltwh`` → YOLO ``cxcywh`` normalised by this image's own size.

    >>> ltwh_to_yolo(np.array([[0, 0, 512, 256]]), 1024, 1024).tolist()
    [[0.25, 0.125, 0.5, 0.25]]
    """
    b = as_boxes(boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)
    centre = b[:, :2] + b[:, 2:] / 2
    return np.concatenate([centre, b[:, 2:]], axis=1) / scale


def yolo_to_ltwh(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Inverse of :func:`ltwh_to_yolo`."""
    b = as_boxes(boxes) * np.array([width, height, width, height], dtype=np.float64)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, 2:]], axis=1)


def scale_xyxy(boxes: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Multiply x coordinates by ``scale_x`` and y coordinates by ``scale_y``."""
    return as_boxes(boxes) * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float64)


def mirror_xyxy(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes of an image ``width`` pixels wide, as they lie in its left-right mirror image (dtype kept).

    >>> mirror_xyxy(np.array([[10.0, 5.0, 30.0, 20.0]]), 100).tolist()
    [[70.0, 5.0, 90.0, 20.0]]
    """
    return np.c_[width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]].reshape(-1, 4)


def shrink_xyxy(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Scale each box's width and height by ``factor`` about its own centre.

    >>> shrink_xyxy(np.array([[0, 0, 100, 50]]), 0.5).tolist()
    [[25.0, 12.5, 75.0, 37.5]]
    """
    b = as_boxes(boxes)
    centre = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) * (factor / 2)
    return np.concatenate([centre - half, centre + half], axis=1)


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU matrix ``(len(a), len(b))`` of corner boxes; disjoint boxes give 0."""
    a, b = as_boxes(a), as_boxes(b)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
