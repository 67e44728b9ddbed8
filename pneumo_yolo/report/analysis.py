"""What the report shows, computed from boxes alone: pure functions, no files.

Predictions of one image are ``(M, 5)`` rows ``conf x y w h`` (a PredictionString's layout),
ground truth ``(N, 4)`` ``ltwh``, all in original pixels. Boxes are matched as the RSNA metric
matches them (each truth box, in turn, takes the first unmatched prediction in descending
confidence with IoU ≥ t), at the metric's most lenient threshold 0.4 for the galleries: a
prediction unmatched there is a false positive at every threshold, a truth box a miss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..boxes import iou_xyxy, ltwh_to_xyxy, xyxy_to_ltwh
from ..eval.detections import RawDetections
from ..eval.metric import IOU_THRESHOLDS, MetricResult, evaluate, flatten_ground_truth, score_images
from ..eval.postprocess import PostprocessConfig, postprocess_image
from ..eval.tune import DEFAULT_CONF, TuneGrid, tune

GALLERY_IOU = float(IOU_THRESHOLDS[0])
COUNT_BINS = ("0", "1", "2", "3", "4+")


@dataclass(frozen=True)
class Predictions:
    """Boxes to report per patientId; ``raw`` and ``config`` when they were post-processed from raw detections."""

    rows: Mapping[str, np.ndarray]
    raw: RawDetections | None = None
    config: PostprocessConfig | None = None

    @classmethod
    def from_raw(cls, raw: RawDetections, config: PostprocessConfig) -> Predictions:
        """Post-process every image of ``raw`` with ``config``, as ``predict`` would."""
        rows = {}
        for image in raw.images():
            boxes, scores = postprocess_image(image, config)
            rows[image.patient_id] = np.c_[scores, xyxy_to_ltwh(boxes)]
        return cls(rows, raw, config)

    def sizes(self) -> dict[str, tuple[float, float]]:
        """Original ``(W, H)`` per patient, known only for raw detections."""
        if self.raw is None:
            return {}
        return {pid: (float(w), float(h)) for pid, (w, h) in zip(self.raw.patient_ids, self.raw.sizes)}

    def select(self, patient_ids: Sequence[str]) -> Predictions:
        """The same predictions restricted to ``patient_ids`` (all of which must be present)."""
        keep = set(patient_ids)
        raw = self.raw.select(np.array([pid in keep for pid in self.raw.patient_ids])) if self.raw is not None else None
        return Predictions({pid: self.rows[pid] for pid in patient_ids}, raw, self.config)


@dataclass(frozen=True)
class Match:
    """One image matched at one IoU threshold: which predictions and truth boxes found a partner."""

    predicted: np.ndarray
    truth: np.ndarray
    iou: np.ndarray
    """IoU of each matched truth box with its prediction (0 for a missed box)."""


def match_image(truth: np.ndarray, rows: np.ndarray, threshold: float = GALLERY_IOU) -> Match:
    """Greedy matching of one image as the metric does it; predictions are taken in descending confidence.

    >>> m = match_image(np.array([[0, 0, 10, 10.0]]), np.array([[0.2, 50, 50, 5, 5], [0.9, 0, 0, 10, 10.0]]))
    >>> m.predicted.tolist(), m.truth.tolist(), m.iou.tolist()
    ([False, True], [True], [1.0])
    """
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    order = np.argsort(-rows[:, 0], kind="stable")
    overlap = iou_xyxy(ltwh_to_xyxy(truth), ltwh_to_xyxy(rows[order, 1:]))
    used = np.zeros(len(rows), dtype=bool)
    truth_hit = np.zeros(len(truth), dtype=bool)
    truth_iou = np.zeros(len(truth))
    for g in range(len(truth)):
        free = np.flatnonzero((overlap[g] >= threshold) & ~used)
        if len(free):
            used[free[0]] = True
            truth_hit[g] = True
            truth_iou[g] = overlap[g, free[0]]
    predicted = np.zeros(len(rows), dtype=bool)
    predicted[order] = used
    return Match(predicted, truth_hit, truth_iou)


def image_scores(truth: Sequence[np.ndarray], rows: Sequence[np.ndarray]) -> np.ndarray:
    """Each image's metric score (mean over the IoU thresholds); ``nan`` for an image left out (no truth, no prediction)."""
    gt_image, gt_boxes, _ = flatten_ground_truth(truth)
    preds = [np.asarray(r, dtype=np.float64).reshape(-1, 5) for r in rows]
    pred_image = np.repeat(np.arange(len(preds)), [len(p) for p in preds])
    flat = np.concatenate(preds) if preds else np.zeros((0, 5))
    per_threshold = score_images(len(preds), gt_image, gt_boxes, pred_image, flat[:, 0], flat[:, 1:])
    return per_threshold.mean(axis=1)


def score_by_confidence(
    predictions: Predictions, truth: Mapping[str, np.ndarray], thresholds: Sequence[float] = DEFAULT_CONF
) -> np.ndarray:
    """The metric at each confidence threshold, over the patients of ``truth``.

    Raw detections are post-processed anew at each threshold (with :func:`~pneumo_yolo.eval.tune.tune`'s
    shared work), so merging sees what ``predict --conf t`` would; a submission's boxes are filtered.
    """
    raw = predictions.select(list(truth)).raw
    if raw is not None and predictions.config is not None:
        config = predictions.config
        grid = TuneGrid(conf=tuple(thresholds), merges=((config.merge, config.merge_iou),), shrink=(config.shrink,))
        table = tune(raw, truth, config, grid).table
        return table.sort_values("conf")["score"].to_numpy()
    return np.array(
        [
            evaluate(
                truth, {pid: rows[rows[:, 0] >= t] for pid, rows in predictions.rows.items() if pid in truth}
            ).score
            for t in thresholds
        ]
    )


def count_boxes(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """Images with 0, 1, 2, 3 and 4 or more boxes (:data:`COUNT_BINS`).

    >>> count_boxes([np.zeros((0, 4)), np.zeros((2, 4)), np.zeros((7, 4))]).tolist()
    [1, 0, 1, 0, 1]
    """
    return np.bincount(np.minimum([len(b) for b in boxes], len(COUNT_BINS) - 1).astype(int), minlength=len(COUNT_BINS))


@dataclass(frozen=True)
class Tile:
    """One gallery picture: the patient and the line under it."""

    patient_id: str
    caption: str


@dataclass(frozen=True)
class Galleries:
    """Tiles of each gallery, worst or best first; without labels only ``predictions`` is filled."""

    false_positives: list[Tile] = field(default_factory=list)
    missed: list[Tile] = field(default_factory=list)
    best: list[Tile] = field(default_factory=list)
    predictions: list[Tile] = field(default_factory=list)

    def patient_ids(self) -> list[str]:
        """Every patient shown, once."""
        tiles = self.false_positives + self.missed + self.best + self.predictions
        return list(dict.fromkeys(tile.patient_id for tile in tiles))


def _top(candidates: list[tuple[tuple, Tile]], size: int) -> list[Tile]:
    return [tile for _, tile in sorted(candidates, key=lambda item: item[0])[:size]]


def labelled_galleries(truth: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray], size: int) -> Galleries:
    """The ``size`` worst false-positive images, worst missed opacities and best hits.

    - false positives: ranked by the highest confidence among the unmatched predictions;
    - missed: ranked by the area of the largest unmatched truth box;
    - best hits: images with a matched box, ranked by image score, then mean IoU of the matches.
    """
    ids = list(truth)
    scores = image_scores([truth[pid] for pid in ids], [rows.get(pid, np.zeros((0, 5))) for pid in ids])
    false_positives, missed, best = [], [], []
    for pid, score in zip(ids, scores):
        boxes, preds = truth[pid], rows.get(pid, np.zeros((0, 5)))
        match = match_image(boxes, preds)
        shown = "n/a" if np.isnan(score) else f"{score:.2f}"
        if (~match.predicted).any():
            conf = float(preds[~match.predicted, 0].max())
            false_positives.append(((-conf, pid), Tile(pid, f"false positive {conf:.2f} · image score {shown}")))
        if (~match.truth).any():
            lost = boxes[~match.truth]
            largest = lost[np.argmax(lost[:, 2] * lost[:, 3])]
            missed.append(
                (
                    (-largest[2] * largest[3], pid),
                    Tile(pid, f"missed {largest[2]:.0f}×{largest[3]:.0f} px · image score {shown}"),
                )
            )
        if match.truth.any():
            mean_iou = float(match.iou[match.truth].mean())
            best.append(((-score, -mean_iou, pid), Tile(pid, f"image score {shown} · IoU {mean_iou:.2f}")))
    return Galleries(_top(false_positives, size), _top(missed, size), _top(best, size))


def prediction_gallery(rows: Mapping[str, np.ndarray], size: int) -> Galleries:
    """Without labels: the ``size`` images with the most confident predictions."""
    candidates = [
        (
            (-float(r[:, 0].max()), pid),
            Tile(pid, f"top confidence {r[:, 0].max():.2f} · {len(r)} box{'es' if len(r) > 1 else ''}"),
        )
        for pid, r in rows.items()
        if len(r)
    ]
    return Galleries(predictions=_top(candidates, size))


@dataclass(frozen=True)
class Scored:
    """What the page shows of the predictions against the labels."""

    result: MetricResult
    conf_thresholds: np.ndarray
    conf_scores: np.ndarray
    true_counts: np.ndarray


@dataclass(frozen=True)
class Analysis:
    """Everything the page shows except pictures; ``scored`` is ``None`` without labels."""

    n_images: int
    predicted_counts: np.ndarray
    galleries: Galleries
    scored: Scored | None = None


def analyse(predictions: Predictions, truth: Mapping[str, np.ndarray] | None, gallery_size: int) -> Analysis:
    """Metric, confidence curve, box counts and galleries of ``predictions`` (all to be reported) against ``truth``.

    ``truth`` holds the patients to score (a subset of the predictions); ``None`` without labels.
    """
    counts = count_boxes(list(predictions.rows.values()))
    if truth is None:
        return Analysis(len(predictions.rows), counts, prediction_gallery(predictions.rows, gallery_size))
    scored = {pid: predictions.rows[pid] for pid in truth}
    thresholds = np.asarray(DEFAULT_CONF)
    return Analysis(
        n_images=len(predictions.rows),
        predicted_counts=counts,
        galleries=labelled_galleries(truth, scored, gallery_size),
        scored=Scored(
            result=evaluate(truth, scored),
            conf_thresholds=thresholds,
            conf_scores=score_by_confidence(predictions, truth, list(thresholds))
            if truth
            else np.full(len(thresholds), np.nan),
            true_counts=count_boxes(list(truth.values())),
        ),
    )
