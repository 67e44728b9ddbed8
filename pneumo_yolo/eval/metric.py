"""The RSNA Pneumonia Detection leaderboard metric, vectorised in numpy.

For every image and every IoU threshold t in 0.40, 0.45, …, 0.75, predictions are taken in
descending confidence (equal confidences keep their submitted order) and each ground-truth
box, in turn, takes the first still-unmatched prediction with IoU ≥ t. The image scores
TP / (TP + FP + FN) at t, and the mean over the thresholds. The final score is the mean over
images; an image with neither ground truth nor prediction is left out, and an image with no
ground truth but any prediction scores 0.

IoU is computed from ``x, y, w, h`` pixel boxes with the same arithmetic as the public
reference kernel (areas ``w * h``, corners ``x + w``), so a prediction lying exactly at a
threshold matches exactly as it did on the leaderboard.

Predictions of one image are an ``(M, 5)`` array of rows ``conf, x, y, w, h``: the layout of
a PredictionString. Ground truth of one image is an ``(N, 4)`` ``ltwh`` array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.array([0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75])

_CELLS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class MetricResult:
    """The score and its breakdown. Means over no image are ``nan``.

    ``n_positive``/``n_negative`` count scored images with/without ground truth;
    ``negative_fp_share`` is the share of *all* negative images that carry any prediction.
    ``image_scores`` holds every image's score in the order of the ground truth's patients,
    ``nan`` for an image left out (:mod:`.bootstrap` resamples them).
    """

    score: float
    per_threshold: np.ndarray
    thresholds: np.ndarray
    n_images: int
    n_positive: int
    n_negative: int
    score_positive: float
    score_negative: float
    negative_fp_share: float
    image_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready dict; ``nan`` becomes ``None``."""

        def clean(value: float) -> float | None:
            return None if np.isnan(value) else float(value)

        return {
            "score": clean(self.score),
            "per_threshold": {f"{t:.2f}": clean(v) for t, v in zip(self.thresholds, self.per_threshold)},
            "n_images": self.n_images,
            "n_left_out": max(len(self.image_scores) - self.n_images, 0),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "score_positive": clean(self.score_positive),
            "score_negative": clean(self.score_negative),
            "negative_fp_share": clean(self.negative_fp_share),
        }

    def summary(self) -> str:
        """Human-readable report: the score, a per-threshold table, positives and negatives.

        >>> print(evaluate({"a": np.array([[0, 0, 10, 10.0]])}, {"a": np.array([[0.9, 0, 0, 10, 10.0]])}).summary())
        ... # doctest: +NORMALIZE_WHITESPACE
        score 1.0000 on 1 image(s)
        IoU threshold  score
          0.40  1.0000
          0.45  1.0000
          0.50  1.0000
          0.55  1.0000
          0.60  1.0000
          0.65  1.0000
          0.70  1.0000
          0.75  1.0000
        positive images  1.0000  (1 scored)
        negative images     n/a  (0 scored: those with a prediction)
        negative images with any prediction: n/a
        """
        left_out = len(self.image_scores) - self.n_images
        head = f"score {_text(self.score)} on {self.n_images:,} image(s)"
        if left_out > 0:
            head += (
                f" of {len(self.image_scores):,}: the other {left_out:,} are negative images without a prediction,"
                " which the metric leaves out (nothing to match there, right or wrong)"
            )
        lines = [head, "IoU threshold  score"]
        lines += [f"  {t:.2f}  {_text(v)}" for t, v in zip(self.thresholds, self.per_threshold)]
        share = "n/a" if np.isnan(self.negative_fp_share) else f"{self.negative_fp_share:.1%}"
        lines += [
            f"positive images  {_text(self.score_positive)}  ({self.n_positive:,} scored)",
            f"negative images  {_text(self.score_negative)}  ({self.n_negative:,} scored: those with a prediction)",
            f"negative images with any prediction: {share}",
        ]
        return "\n".join(lines)


def _text(value: float) -> str:
    return "   n/a" if np.isnan(value) else f"{value:.4f}"


def _mean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean that gives ``nan`` (without a warning) over an empty axis."""
    count = values.shape[0] if axis == 0 else values.size
    if count == 0:
        return np.full(values.shape[1:], np.nan) if axis == 0 else float("nan")
    return values.mean(axis=axis)


def _ranks(image: np.ndarray, order: np.ndarray, n_images: int) -> np.ndarray:
    """Position of each element within its image, for elements visited in ``order``."""
    counts = np.bincount(image, minlength=n_images)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - starts[image[order]]
    return ranks


def _next_power_of_two(values: np.ndarray) -> np.ndarray:
    """Smallest power of two ≥ each value (values ≥ 1)."""
    return (1 << np.ceil(np.log2(values)).astype(np.int64)).astype(np.int64)


def _iou_ltwh(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU ``(n, G, P)`` of padded boxes ``gt (n, G, 4)`` and ``pred (n, P, 4)``, reference arithmetic."""
    g = gt[:, :, None, :]
    p = pred[:, None, :, :]
    left = np.maximum(g[..., 0], p[..., 0])
    top = np.maximum(g[..., 1], p[..., 1])
    right = np.minimum(g[..., 0] + g[..., 2], p[..., 0] + p[..., 2])
    bottom = np.minimum(g[..., 1] + g[..., 3], p[..., 1] + p[..., 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = g[..., 2] * g[..., 3] + p[..., 2] * p[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _true_positives(
    gt: np.ndarray, gt_valid: np.ndarray, pred: np.ndarray, pred_valid: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Greedy matching of padded images; returns TP counts ``(n, T)``."""
    iou = _iou_ltwh(gt, pred)
    n, n_gt, n_pred = iou.shape
    used = np.broadcast_to(~pred_valid[:, None, :], (n, len(thresholds), n_pred)).copy()
    tp = np.zeros((n, len(thresholds)), dtype=np.int64)
    for g in range(n_gt):
        candidate = (iou[:, g, None, :] >= thresholds[None, :, None]) & ~used
        hit = candidate.any(axis=2) & gt_valid[:, g, None]
        first = candidate.argmax(axis=2)
        rows, columns = np.nonzero(hit)
        used[rows, columns, first[rows, columns]] = True
        tp += hit
    return tp


def score_images(
    n_images: int,
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    pred_image: np.ndarray,
    pred_scores: np.ndarray,
    pred_boxes: np.ndarray,
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> np.ndarray:
    """Per-image, per-threshold scores ``(n_images, T)`` from flat arrays; ``nan`` marks a left-out image.

    ``gt_image``/``pred_image`` give each box's image index in ``[0, n_images)``; boxes are
    ``ltwh`` pixels. Images are padded in groups of similar box counts, so the cost stays
    proportional to the number of boxes.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    gt_image = np.asarray(gt_image, dtype=np.int64)
    pred_image = np.asarray(pred_image, dtype=np.int64)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64)
    n_gt = np.bincount(gt_image, minlength=n_images)
    n_pred = np.bincount(pred_image, minlength=n_images)

    gt_order = np.argsort(gt_image, kind="stable")
    gt_rank = _ranks(gt_image, gt_order, n_images)
    pred_order = np.lexsort((-pred_scores, pred_image))
    pred_rank = _ranks(pred_image, pred_order, n_images)

    tp = np.zeros((n_images, len(thresholds)), dtype=np.int64)
    both = np.flatnonzero((n_gt > 0) & (n_pred > 0))
    gt_pad = _next_power_of_two(n_gt[both])
    pred_pad = _next_power_of_two(n_pred[both])
    local = np.full(n_images, -1, dtype=np.int64)
    for g_size, p_size in set(zip(gt_pad.tolist(), pred_pad.tolist())):
        bucket = both[(gt_pad == g_size) & (pred_pad == p_size)]
        chunk = max(1, _CELLS_PER_CHUNK // (g_size * p_size * len(thresholds)))
        for start in range(0, len(bucket), chunk):
            images = bucket[start : start + chunk]
            local[images] = np.arange(len(images))
            gt, gt_valid = _pad(local, gt_image, gt_rank, gt_boxes, len(images), g_size)
            pred, pred_valid = _pad(local, pred_image, pred_rank, pred_boxes, len(images), p_size)
            tp[images] = _true_positives(gt, gt_valid, pred, pred_valid, thresholds)
            local[images] = -1

    total = (n_gt + n_pred)[:, None] - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, tp / total, np.nan)


def _pad(
    local: np.ndarray, image: np.ndarray, rank: np.ndarray, boxes: np.ndarray, n: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter the boxes of the images with ``local[image] >= 0`` into ``(n, size, 4)`` plus a mask."""
    keep = local[image] >= 0
    rows, columns = local[image[keep]], rank[keep]
    padded = np.zeros((n, size, 4))
    valid = np.zeros((n, size), dtype=bool)
    padded[rows, columns] = boxes[keep]
    valid[rows, columns] = True
    return padded, valid


def summarise(per_image: np.ndarray, positive: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> MetricResult:
    """Reduce :func:`score_images` output to a :class:`MetricResult`.

    ``positive`` marks images with ground truth; a negative image is scored (``not nan``)
    exactly when it carries a prediction.
    """
    positive = np.asarray(positive, dtype=bool)
    scored = ~np.isnan(per_image[:, 0])
    image_scores = per_image.mean(axis=1)
    negative_scored = scored & ~positive
    n_negative_total = int((~positive).sum())
    return MetricResult(
        score=float(_mean(image_scores[scored])),
        per_threshold=np.asarray(_mean(per_image[scored], axis=0), dtype=np.float64),
        thresholds=np.asarray(thresholds, dtype=np.float64),
        n_images=int(scored.sum()),
        n_positive=int((scored & positive).sum()),
        n_negative=int(negative_scored.sum()),
        score_positive=float(_mean(image_scores[scored & positive])),
        score_negative=float(_mean(image_scores[negative_scored])),
        negative_fp_share=negative_scored.sum() / n_negative_total if n_negative_total else float("nan"),
        image_scores=np.where(scored, image_scores, np.nan),
    )


def flatten_ground_truth(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image ``(N, 4)`` ``ltwh`` arrays → (image index per box, all boxes, per-image positive flag).

    >>> image, boxes, positive = flatten_ground_truth([np.zeros((2, 4)), np.zeros((0, 4))])
    >>> image.tolist(), boxes.shape, positive.tolist()
    ([0, 0], (2, 4), [True, False])
    """
    gt_arrays = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in arrays]
    gt_image = np.repeat(np.arange(len(gt_arrays)), [len(b) for b in gt_arrays])
    gt_boxes = np.concatenate(gt_arrays) if gt_arrays else np.zeros((0, 4))
    positive = np.array([len(b) > 0 for b in gt_arrays], dtype=bool)
    return gt_image, gt_boxes, positive


def evaluate(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray],
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> MetricResult:
    """Score ``predictions`` (``{patientId: (M, 5) conf x y w h}``) against ``{patientId: (N, 4) ltwh}``.

    Every patient of ``ground_truth`` is scored; one absent from ``predictions`` has no
    prediction. A prediction for a patient outside ``ground_truth`` raises ``ValueError``.

    >>> gt = {"a": np.array([[0, 0, 100, 100.0]]), "b": np.zeros((0, 4))}
    >>> evaluate(gt, {"a": np.array([[0.9, 0, 0, 100, 100.0]])}).score
    1.0
    """
    unknown = [pid for pid in predictions if pid not in ground_truth]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted patient(s) are not in the ground truth, e.g. {unknown[0]}")
    index = {pid: i for i, pid in enumerate(ground_truth)}
    gt_image, gt_boxes, positive = flatten_ground_truth(list(ground_truth.values()))
    pred_arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 5) for p in predictions.values()]
    pred_image = np.repeat([index[pid] for pid in predictions], [len(p) for p in pred_arrays]).astype(np.int64)
    preds = np.concatenate(pred_arrays) if pred_arrays else np.zeros((0, 5))
    per_image = score_images(len(ground_truth), gt_image, gt_boxes, pred_image, preds[:, 0], preds[:, 1:], thresholds)
    return summarise(per_image, positive, thresholds)
