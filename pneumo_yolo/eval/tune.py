"""Search the post-processing settings that maximise the RSNA metric on raw detections.

The grid spans the confidence threshold, the merge method with its IoU, and the shrink
factor; where the detections hold several passes per image (TTA, or an ensemble's models
fused all at once), also the fusion IoU, and where they hold an image classifier's
probability, the gate's ``alpha`` and threshold. An ensemble whose models are voted
(``model_fusion: vote``) searches the vote instead (:mod:`.tune_vote`). ``max_boxes`` and ``min_relative_score`` come from the base configuration. Every
grid point scores exactly what :func:`~pneumo_yolo.eval.postprocess.postprocess` followed by
:func:`~pneumo_yolo.eval.metric.evaluate` would, but work is shared between points:

- a threshold keeps a prefix of each image's boxes sorted by score, so each image is merged
  once per distinct prefix, not once per threshold;
- greedy NMS of a prefix is the full NMS cut to that prefix, so NMS runs once per image;
- shrinking and scoring run on flat arrays of all images at once;
- passes are fused once per fusion IoU, and gated once per gate setting, before all that.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..boxes import shrink_xyxy, xyxy_to_ltwh
from .detections import RawDetections
from .gate import apply_gate
from .merging import clean, fuse_passes, nms_keep
from .metric import MetricResult, evaluate, flatten_ground_truth, score_images, summarise
from .postprocess import MergeMethod, PostprocessConfig, limit, merge, postprocess_image
from .scoring import ScoringSet
from .tune_vote import vote_points
from .vote import Votes

DEFAULT_CONF = tuple(round(0.05 * i, 2) for i in range(1, 20))
DEFAULT_MERGES: tuple[tuple[MergeMethod, float], ...] = (
    ("none", 0.0),
    ("nms", 0.3),
    ("nms", 0.4),
    ("nms", 0.5),
    ("wbf", 0.4),
    ("wbf", 0.5),
    ("wbf", 0.6),
)
DEFAULT_SHRINK = (1.0, 0.95, 0.9, 0.875, 0.85, 0.83, 0.8)
DEFAULT_FUSION_IOU = (0.4, 0.5, 0.6)
DEFAULT_GATE_ALPHA = (0.0, 0.5, 1.0)
DEFAULT_GATE_THRESHOLD = (0.0, 0.1, 0.2, 0.3, 0.4)
DEFAULT_MODEL_IOU = (0.3, 0.4, 0.5)


class TuneError(ValueError):
    """Tuning inputs that cannot work (a bad grid, detections without ground truth); the message says which."""


@dataclass(frozen=True)
class TuneGrid:
    """Values to try. ``merges`` holds ``(method, iou)`` pairs; the IoU of ``"none"`` is ignored."""

    conf: tuple[float, ...] = DEFAULT_CONF
    merges: tuple[tuple[MergeMethod, float], ...] = DEFAULT_MERGES
    shrink: tuple[float, ...] = DEFAULT_SHRINK
    fusion_iou: tuple[float, ...] = DEFAULT_FUSION_IOU
    gate_alpha: tuple[float, ...] = DEFAULT_GATE_ALPHA
    gate_threshold: tuple[float, ...] = DEFAULT_GATE_THRESHOLD
    model_iou: tuple[float, ...] = DEFAULT_MODEL_IOU
    model_votes: tuple[Votes, ...] | None = None
    """``None``: every count from 1 to the most models an image of the detections has."""

    def __post_init__(self) -> None:
        axes = (
            self.conf,
            self.merges,
            self.shrink,
            self.fusion_iou,
            self.gate_alpha,
            self.gate_threshold,
            self.model_iou,
            self.model_votes is None or self.model_votes,
        )
        if not all(axes):
            raise TuneError(
                "every grid axis (conf, merges, shrink, fusion IoU, gate alpha and threshold, model IoU and votes) needs at least one value"
            )
        for method, iou in self.merges:
            PostprocessConfig(merge=method, merge_iou=iou if method != "none" else 0.5)
        for conf in self.conf:
            PostprocessConfig(conf=conf)
        for factor in self.shrink:
            PostprocessConfig(shrink=factor)
        for key in ("fusion_iou", "gate_alpha", "gate_threshold", "model_iou", "model_votes"):
            for value in getattr(self, key) or ():
                PostprocessConfig(**{key: value})

    def __len__(self) -> int:
        return len(self.conf) * len(self.merges) * len(self.shrink)


def _describe(config: PostprocessConfig) -> str:
    merge = "no merge" if config.merge == "none" else f"{config.merge} at IoU {config.merge_iou:g}"
    gate = f"gate p^{config.gate_alpha:g} from p ≥ {config.gate_threshold:g}"
    text = f"conf ≥ {config.conf:g}, {merge}, shrink {config.shrink:g}, fusion IoU {config.fusion_iou:g}, {gate}"
    if config.model_fusion == "vote":
        text += f", models voted: {config.model_votes} at IoU {config.model_iou:g}"
    return text


@dataclass(frozen=True)
class TuneReport:
    """All grid points (``table``, best first) and the best and base configurations with their scores.

    ``n_images`` counts the images tuned on, including negatives left out of the mean
    because no box was kept on them.
    """

    n_images: int
    table: pd.DataFrame
    best: PostprocessConfig
    best_result: MetricResult
    base: PostprocessConfig
    base_result: MetricResult
    elapsed_s: float

    def caveats(self) -> list[str]:
        """What the best score does not say on its own: that several configurations tie for it, or that it is 0."""
        scores = self.table["score"].to_numpy(dtype=float)
        best = self.best_result.score
        notes = []
        if not best > 0:
            notes.append(
                f"the best score is {best:.4f}: no configuration finds an opacity that the metric counts on these "
                f"{self.n_images:,} image(s), so the configuration written is no better than any other"
            )
        ties = int(np.isclose(scores, scores[0], rtol=0, atol=1e-9).sum()) if len(scores) else 0
        if ties > 1:
            notes.append(
                f"{ties:,} of the {len(scores):,} configurations tie for the best score {scores[0]:.4f}: "
                "the first of them in the search order is written, and these images cannot tell them apart"
            )
        return notes

    def summary(self, top: int = 10) -> str:
        """The base and best configurations with their scores, then the ``top`` best grid points."""
        gain = self.best_result.score - self.base_result.score
        lines = [
            f"scored {len(self.table):,} configurations on {self.n_images:,} image(s) in {self.elapsed_s:.1f} s",
            "(the best score is optimistic: it is measured on the images it was tuned on; score held-out images with evaluate)",
            f"default  {self.base_result.score:.4f}  {_describe(self.base)}",
            f"best     {self.best_result.score:.4f}  {_describe(self.best)}  ({gain:+.4f})",
            "",
        ]
        vote = self.best.model_fusion == "vote"
        lines.append(
            " rank   score   conf  "
            + ("   votes  model IoU  shrink" if vote else "merge      shrink  fusion  gate a  gate t")
            + "  positives  negatives with boxes"
        )
        for rank, row in enumerate(self.table.head(top).itertuples(), start=1):
            merge = "none" if row.merge == "none" else f"{row.merge} {row.merge_iou:.2f}"
            middle = (
                f"{row.model_votes!s:>8}  {row.model_iou:9.2f}  {row.shrink:6.3f}"
                if vote
                else f"{merge:<9}  {row.shrink:6.3f}  {row.fusion_iou:6.2f}  {row.gate_alpha:6.2f}  {row.gate_threshold:6.2f}"
            )
            lines.append(
                f"{rank:5d}  {row.score:.4f}  {row.conf:5.2f}  {middle}  {row.score_positive:9.4f}  {row.negative_fp_share:20.1%}"
            )
        return "\n".join(lines)


@dataclass
class _Merged:
    """Detections after merge and limit, for every (image, prefix length) pair that a threshold needs."""

    image: list[np.ndarray] = field(default_factory=list)
    prefix: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)

    def add(self, image: int, prefix: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        self.image.append(np.full(len(scores), image, dtype=np.int64))
        self.prefix.append(np.full(len(scores), prefix, dtype=np.int64))
        self.scores.append(scores)
        self.boxes.append(boxes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.scores:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4))
        return (
            np.concatenate(self.image),
            np.concatenate(self.prefix),
            np.concatenate(self.scores),
            np.concatenate(self.boxes),
        )


def _merge_prefixes(
    images: Sequence[tuple[np.ndarray, np.ndarray, tuple[float, float]]],
    prefixes: np.ndarray,
    method: MergeMethod,
    iou: float,
    base: PostprocessConfig,
) -> _Merged:
    """Merge and limit each image's ``k`` best boxes for every distinct ``k`` in its row of ``prefixes``."""
    merged = _Merged()
    for i, (boxes, scores, size) in enumerate(images):
        wanted = np.unique(prefixes[i])
        wanted = wanted[wanted > 0]
        if method == "nms" and len(wanted):
            keep = nms_keep(boxes[: wanted[-1]], iou)
        for k in wanted:
            if method == "nms":
                b, s = boxes[:k][keep[:k]], scores[:k][keep[:k]]
            else:
                b, s = merge(boxes[:k], scores[:k], size, method, iou)
            b, s = limit(b, s, base.max_boxes, base.min_relative_score)
            merged.add(i, int(k), b, s)
    return merged


def images_to_score(raw: RawDetections, scoring: ScoringSet) -> tuple[RawDetections, list[str]]:
    """The raw images that ``scoring`` covers, and notes on what was left out.

    A raw patient outside the labels raises :class:`TuneError`; one in the labels but outside the
    scored set (another split) is left out, as is a scored patient with no raw row.
    """
    unknown = [pid for pid in raw.patient_ids if pid not in scoring.label_ids]
    if unknown:
        raise TuneError(f"{len(unknown)} patient(s) of the raw detections are not in the labels, e.g. {unknown[0]}")
    keep = np.array([pid in scoring.boxes for pid in raw.patient_ids], dtype=bool)
    notes = []
    if not keep.all():
        notes.append(f"{int((~keep).sum()):,} raw patient(s) outside the scored set left out")
    absent = len(scoring.boxes) - int(keep.sum())
    if absent:
        notes.append(f"{absent:,} scored patient(s) have no raw rows and are left out")
    return raw.select(keep), notes


def score_config(raw: RawDetections, ground_truth: Mapping[str, np.ndarray], config: PostprocessConfig) -> MetricResult:
    """Score one configuration by running :func:`postprocess` image by image (the reference for :func:`tune`)."""
    predictions = {}
    for image in raw.images():
        boxes, scores = postprocess_image(image, config)
        predictions[image.patient_id] = np.c_[scores, xyxy_to_ltwh(boxes)]
    return evaluate({pid: ground_truth[pid] for pid in raw.patient_ids}, predictions)


def _figures(per_image: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """The table's figures of one grid point from :func:`score_images` output: what :func:`summarise` gives, for less."""
    scored = ~np.isnan(per_image[:, 0])
    image_scores = per_image[scored].mean(axis=1)
    on_positive = image_scores[positive[scored]]
    negatives = int((~positive).sum())
    return {
        "score": float(image_scores.mean()) if len(image_scores) else float("nan"),
        "score_positive": float(on_positive.mean()) if len(on_positive) else float("nan"),
        "negative_fp_share": float((scored & ~positive).sum() / negatives) if negatives else float("nan"),
    }


def _flat_points(
    raw: RawDetections, base: PostprocessConfig, grid: TuneGrid, score: Callable[..., np.ndarray]
) -> Iterator[tuple[dict, np.ndarray]]:
    """Every grid point of fusing all of an image's passes at once: its settings and per-image scores."""
    fusions = grid.fusion_iou if (raw.models * raw.passes > 1).any() else (base.fusion_iou,)
    gates = (
        tuple(itertools.product(grid.gate_alpha, grid.gate_threshold))
        if (~np.isnan(raw.p_opacity)).any()
        else ((base.gate_alpha, base.gate_threshold),)
    )
    conf = np.asarray(grid.conf, dtype=np.float64)
    for fusion in fusions:
        fused = [
            (
                *fuse_passes(i.boxes, i.scores, i.flat_pass, i.models * i.passes, (i.width, i.height), fusion),
                (i.width, i.height),
                i.p_opacity,
            )
            for i in raw.images()
        ]
        for alpha, gate_threshold in gates:
            images = [(*clean(*apply_gate(b, s, p, alpha, gate_threshold), size), size) for b, s, size, p in fused]
            prefixes = np.array(
                [np.searchsorted(-scores, -conf, side="right") for _, scores, _ in images], dtype=np.int64
            )
            for method, iou in grid.merges:
                image, prefix, scores, boxes = _merge_prefixes(images, prefixes, method, iou, base).arrays()
                for c in range(len(conf)):
                    chosen = prefix == prefixes[image, c]
                    for factor in grid.shrink:
                        settings = {
                            "conf": float(conf[c]),
                            "merge": method,
                            "merge_iou": iou if method != "none" else base.merge_iou,
                            "shrink": float(factor),
                            "fusion_iou": fusion,
                            "gate_alpha": alpha,
                            "gate_threshold": gate_threshold,
                        }
                        yield settings, score(image[chosen], scores[chosen], shrink_xyxy(boxes[chosen], factor))


def tune(
    raw: RawDetections,
    ground_truth: Mapping[str, np.ndarray],
    base: PostprocessConfig | None = None,
    grid: TuneGrid | None = None,
) -> TuneReport:
    """Score every grid point on the images of ``raw`` (each must be in ``ground_truth``, else :class:`TuneError`).

    ``base`` (default :class:`PostprocessConfig`) gives the settings outside the grid and is
    scored too, for comparison. With ``base.model_fusion`` ``vote`` and detections of several
    models, the grid is the vote's (:func:`~.tune_vote.vote_points`: threshold, ``model_iou``,
    ``model_votes``, shrink), each model's other settings taken from ``base``.
    """
    start = time.perf_counter()
    base = base or PostprocessConfig()
    grid = grid or TuneGrid()
    missing = [pid for pid in raw.patient_ids if pid not in ground_truth]
    if missing:
        raise TuneError(f"{len(missing)} patient(s) of the raw detections have no ground truth, e.g. {missing[0]}")
    if not len(raw):
        raise TuneError("the raw detections hold no image to tune on")
    gt_image, gt_boxes, positive = flatten_ground_truth([ground_truth[pid] for pid in raw.patient_ids])

    def score(image: np.ndarray, scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return score_images(len(raw), gt_image, gt_boxes, image, scores, xyxy_to_ltwh(boxes))

    if base.model_fusion == "vote" and (raw.models > 1).any():
        votes = grid.model_votes or tuple(range(1, int(raw.models.max()) + 1))
        points = vote_points(
            raw, base, score=score, conf=grid.conf, model_iou=grid.model_iou, model_votes=votes, shrink=grid.shrink
        )
    else:
        points = _flat_points(raw, base, grid, score)
    base_fields = asdict(base)
    rows: list[dict] = []
    best: dict = {}
    best_scores, top = np.zeros((0, 0)), -np.inf
    for settings, per_image in points:
        rows.append({**base_fields, **settings, **_figures(per_image, positive)})
        if not best or rows[-1]["score"] > top:  # the first of equal scores, as the stable sort below
            best, best_scores, top = rows[-1], per_image, np.nan_to_num(rows[-1]["score"], nan=-np.inf)
    table = pd.DataFrame(rows).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table.loc[table["merge"] == "none", "merge_iou"] = float("nan")
    columns = [
        "score",
        *(key for key in base_fields if key not in ("max_boxes", "min_relative_score")),
        "score_positive",
        "negative_fp_share",
    ]
    return TuneReport(
        n_images=len(raw),
        table=table[columns],
        best=PostprocessConfig(**{key: best[key] for key in base_fields}),
        best_result=summarise(best_scores, positive),
        base=base,
        base_result=score_config(raw, ground_truth, base),
        elapsed_s=time.perf_counter() - start,
    )
