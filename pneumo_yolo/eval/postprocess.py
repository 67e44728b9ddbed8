"""From a detector's raw boxes to the boxes of a submission: pure functions on arrays.

The steps, in order, each switched off by its neutral value in :class:`PostprocessConfig`:

0. fuse the box lists of an image's passes (a model's plain and flipped TTA passes) by weighted
   boxes fusion at ``fusion_iou`` (:func:`fuse_passes`), then gate the scores with the image
   classifier's probability (``gate_alpha``, ``gate_threshold``: :mod:`pneumo_yolo.eval.gate`);
1. map boxes from the model input grid back to the original image, then clip
   (:func:`to_original_grid`, :func:`clean`);
2. drop boxes below the confidence threshold ``conf`` (0 keeps all);
3. merge overlapping boxes by greedy NMS or by weighted boxes fusion (from the
   ``ensemble-boxes`` package) at ``merge_iou`` (``merge: none`` skips);
4. keep the ``max_boxes`` best boxes (``null``: all) and drop boxes below
   ``min_relative_score`` × the image's top score (0 keeps all);
5. shrink each box about its centre by ``shrink`` (1 keeps the size).

An ensemble of several models (:func:`postprocess_image`) is fused as ``model_fusion`` says:
``passes`` runs the steps once on every pass of every model, so step 0 fuses them all at
once; ``vote`` runs steps 0–4 on each model's passes alone, votes the models' boxes
(:func:`pneumo_yolo.eval.vote.vote_models`: boxes that ``model_votes`` models found, matched
at IoU ``model_iou``, each scoring the mean of their scores), then keeps ``max_boxes`` and shrinks.

:func:`pneumo_yolo.eval.submission.prediction_string` then formats the result.

Boxes are ``(N, 4)`` ``x1 y1 x2 y2`` pixel arrays with ``(N,)`` scores. Every function
returns boxes sorted by descending score (equal scores keep their order).
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from ..boxes import as_boxes, scale_xyxy, shrink_xyxy
from ..files import atomic_write_text
from ..limits import InputSizeError, read_yaml, shorten
from .detections import RawImage
from .gate import apply_gate
from .merging import clean, fuse, fuse_passes, nms, sort_by_score
from .vote import MAJORITY, Votes, vote_models

MergeMethod = Literal["none", "nms", "wbf"]
MERGE_METHODS: tuple[str, ...] = ("none", "nms", "wbf")
ModelFusion = Literal["passes", "vote"]
MODEL_FUSIONS: tuple[str, ...] = ("passes", "vote")


class ConfigError(ValueError):
    """A post-processing configuration that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class PostprocessConfig:
    """Settings of :func:`postprocess`; ``pneumo-yolo tune`` searches ``conf``, ``merge``, ``merge_iou`` and ``shrink``.

    The defaults follow the RSNA winners (DATA.md): boxes fused by WBF at IoU 0.4, at most 3
    boxes per image (97.8 % of positive images have ≤ 2), every box shrunk to 0.875 of its
    width and height. The threshold 0.3 is only a starting point: the score depends mostly
    on false positives on negative images, so tune it on validation detections.

    >>> PostprocessConfig(conf=0.5, merge="nms").merge_iou
    0.4
    """

    conf: float = 0.3
    merge: MergeMethod = "wbf"
    merge_iou: float = 0.4
    max_boxes: int | None = 3
    min_relative_score: float = 0.0
    shrink: float = 0.875
    fusion_iou: float = 0.4
    gate_alpha: float = 1.0
    gate_threshold: float = 0.0
    model_fusion: ModelFusion = "passes"
    model_iou: float = 0.4
    model_votes: Votes = MAJORITY

    def __post_init__(self) -> None:
        def check(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {shorten(getattr(self, key))} is invalid; {rule}")

        def number(key: str) -> bool:
            value = getattr(self, key)
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

        check(number("conf") and 0 <= self.conf <= 1, "conf", "use a number in [0, 1] (0 keeps every box)")
        check(self.merge in MERGE_METHODS, "merge", f"use one of {', '.join(MERGE_METHODS)}")
        check(number("merge_iou") and 0 < self.merge_iou <= 1, "merge_iou", "use a number in (0, 1]")
        check(
            self.max_boxes is None
            or (
                isinstance(self.max_boxes, numbers.Integral)
                and not isinstance(self.max_boxes, bool)
                and self.max_boxes >= 1
            ),
            "max_boxes",
            "use a whole number ≥ 1, or null for no limit",
        )
        check(
            number("min_relative_score") and 0 <= self.min_relative_score <= 1,
            "min_relative_score",
            "use a number in [0, 1] (0 keeps every box)",
        )
        check(
            number("shrink") and 0 < self.shrink <= 1,
            "shrink",
            "use a factor in (0, 1] (1 keeps the size; the RSNA winners used 0.83-0.875), so boxes stay inside the image",
        )
        check(number("fusion_iou") and 0 < self.fusion_iou <= 1, "fusion_iou", "use a number in (0, 1]")
        check(
            number("gate_alpha") and 0 <= self.gate_alpha <= 10,
            "gate_alpha",
            "use a number in [0, 10] (0: the probability does not scale the scores)",
        )
        check(
            number("gate_threshold") and 0 <= self.gate_threshold <= 1,
            "gate_threshold",
            "use a number in [0, 1] (0: no image is gated out)",
        )
        check(self.model_fusion in MODEL_FUSIONS, "model_fusion", f"use one of {', '.join(MODEL_FUSIONS)}")
        check(number("model_iou") and 0 < self.model_iou <= 1, "model_iou", "use a number in (0, 1]")
        whole = (
            isinstance(self.model_votes, numbers.Integral)
            and not isinstance(self.model_votes, bool)
            and self.model_votes >= 1
        )
        check(
            whole or self.model_votes == MAJORITY,
            "model_votes",
            "use majority (more than half of the models) or a whole number ≥ 1",
        )
        if whole:
            object.__setattr__(self, "model_votes", int(self.model_votes))
        for key in (
            "conf",
            "merge_iou",
            "min_relative_score",
            "shrink",
            "fusion_iou",
            "gate_alpha",
            "gate_threshold",
            "model_iou",
        ):
            object.__setattr__(self, key, float(getattr(self, key)))
        if self.max_boxes is not None:
            object.__setattr__(self, "max_boxes", int(self.max_boxes))

    @classmethod
    def from_dict(cls, values: dict, source: str = "configuration") -> PostprocessConfig:
        """Build from a mapping; an unknown key is named, with the nearest valid one."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"{source}: unknown key {shorten(key)}{hint}; valid keys: {', '.join(known)}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: Path) -> PostprocessConfig:
        """Read a YAML file written by :meth:`to_yaml` (or by hand); missing keys take the defaults.

        Example file::

            conf: 0.35
            merge: wbf
            merge_iou: 0.5
            max_boxes: 3
            min_relative_score: 0.0
            shrink: 0.875
            fusion_iou: 0.4        # a model's passes (plain and flipped with --tta)
            gate_alpha: 1.0        # score × p(opacity) ** gate_alpha, with an image classifier
            gate_threshold: 0.0    # no box where p(opacity) < gate_threshold
            model_fusion: passes   # several models: passes (all passes fused at once) or vote
            model_iou: 0.4         # vote: boxes of two models overlapping above it are one finding
            model_votes: majority  # vote: keep a finding that more than half of the models (or this many) made
        """
        path = Path(path)
        try:
            values = read_yaml(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, InputSizeError) as error:
            raise ConfigError(f"{path}: cannot be read as YAML ({error})") from error
        return cls.from_dict({} if values is None else values, source=str(path))

    def to_yaml(self, path: Path, comment: str = "") -> None:
        """Write the configuration as YAML (atomically), with optional ``#`` comment lines first."""
        header = "".join(f"# {line}\n" for line in comment.splitlines())
        atomic_write_text(Path(path), header + yaml.safe_dump(asdict(self), sort_keys=False))


def to_original_grid(
    boxes: np.ndarray, input_size: tuple[float, float], original_size: tuple[float, float]
) -> np.ndarray:
    """Map ``xyxy`` boxes from the model input ``(w, h)``, the whole image resized, to the original image ``(W, H)``.

    Ultralytics returns boxes in the pixels of the image it was given, its own letterbox
    already undone, so only the resize to the model's size remains to undo.

    >>> to_original_grid(np.array([[10, 20, 30, 40]]), (512, 512), (1024, 1024)).tolist()
    [[20.0, 40.0, 60.0, 80.0]]
    """
    (w, h), (width, height) = input_size, original_size
    return scale_xyxy(boxes, width / w, height / h)


def threshold(boxes: np.ndarray, scores: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the boxes whose score is ≥ ``conf``."""
    s = np.asarray(scores, dtype=np.float64)
    keep = s >= conf
    return as_boxes(boxes)[keep], s[keep]


def merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    size: tuple[float, float],
    method: MergeMethod,
    iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping boxes of one image by ``"nms"`` or ``"wbf"``; ``"none"`` only sorts."""
    if method == "nms":
        return nms(boxes, scores, size, iou)
    if method == "wbf":
        return fuse([boxes], [scores], size, iou)
    if method == "none":
        return sort_by_score(boxes, scores)
    raise ConfigError(f"merge: {shorten(method)} is invalid; use one of {', '.join(MERGE_METHODS)}")


def limit(
    boxes: np.ndarray, scores: np.ndarray, max_boxes: int | None, min_relative_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_boxes`` best boxes, and only those scoring ≥ ``min_relative_score`` × the top score."""
    b, s = sort_by_score(boxes, scores)
    keep = np.ones(len(s), dtype=bool)
    if max_boxes is not None:
        keep[max_boxes:] = False
    if len(s) and min_relative_score > 0:
        keep &= s >= min_relative_score * s[0]
    return b[keep], s[keep]


def postprocess(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    config: PostprocessConfig,
    *,
    original_size: tuple[float, float],
    input_size: tuple[float, float] | None = None,
    pass_index: np.ndarray | None = None,
    passes: int = 1,
    p_opacity: float = math.nan,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply steps 0–5 to one image's detections; returns ``xyxy`` boxes in original pixels and scores.

    ``input_size`` is the ``(w, h)`` of the image the model saw (``None``: boxes already in
    original pixels); ``original_size`` is the original ``(W, H)``. ``pass_index`` says which of
    ``passes`` passes found each box (``None``: one pass); ``p_opacity`` is the image
    classifier's probability (NaN: no gate).

    >>> config = PostprocessConfig(conf=0.5, merge="none", shrink=0.5)
    >>> boxes, scores = postprocess(np.array([[0, 0, 50, 50], [0, 0, 9, 9]]), np.array([0.9, 0.1]), config,
    ...                             original_size=(1024, 1024), input_size=(512, 512))
    >>> boxes.tolist(), scores.tolist()
    ([[25.0, 25.0, 75.0, 75.0]], [0.9])
    """
    b = as_boxes(boxes_xyxy)
    if input_size is not None:
        b = to_original_grid(b, input_size, original_size)
    b, s = postprocess_model(b, scores, config, original_size, pass_index, passes, p_opacity)
    return shrink_xyxy(b, config.shrink), s


def postprocess_model(
    boxes: np.ndarray,
    scores: np.ndarray,
    config: PostprocessConfig,
    size: tuple[float, float],
    pass_index: np.ndarray | None,
    passes: int,
    p_opacity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 0–4 (all but the shrink) on one model's boxes in original pixels: what it alone would submit, unshrunk."""
    b, s = fuse_and_gate(boxes, scores, config, size, pass_index, passes, p_opacity)
    return select(b, s, config, size)


def fuse_and_gate(
    boxes: np.ndarray,
    scores: np.ndarray,
    config: PostprocessConfig,
    size: tuple[float, float],
    pass_index: np.ndarray | None,
    passes: int,
    p_opacity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 0, then :func:`clean`: one model's passes fused and gated, clipped and sorted."""
    b, s = boxes, scores
    if passes > 1 and pass_index is not None:
        b, s = fuse_passes(b, s, pass_index, passes, size, config.fusion_iou)
    b, s = apply_gate(b, s, p_opacity, config.gate_alpha, config.gate_threshold)
    return clean(b, s, size)


def select(
    boxes: np.ndarray, scores: np.ndarray, config: PostprocessConfig, size: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2–4 on clean, sorted boxes: threshold, merge, limit."""
    b, s = threshold(boxes, scores, config.conf)
    b, s = merge(b, s, size, config.merge, config.merge_iou)
    return limit(b, s, config.max_boxes, config.min_relative_score)


def postprocess_image(image: RawImage, config: PostprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Post-process one image of a raw detections table (boxes already in original pixels), its models fused as ``config.model_fusion`` says."""
    size = (image.width, image.height)
    if image.models <= 1 or config.model_fusion == "passes":
        passes = image.models * image.passes
        return postprocess(
            image.boxes,
            image.scores,
            config,
            original_size=size,
            pass_index=image.flat_pass,
            passes=passes,
            p_opacity=image.p_opacity,
        )
    model = image.model if image.model is not None else np.zeros(len(image.scores), np.int64)
    pass_index = image.pass_index if image.pass_index is not None else np.zeros(len(image.scores), np.int64)
    boxes = as_boxes(image.boxes)
    found = [
        postprocess_model(
            boxes[model == k],
            np.asarray(image.scores)[model == k],
            config,
            size,
            pass_index[model == k],
            image.passes,
            image.p_opacity,
        )
        for k in range(image.models)
    ]
    b, s = vote_models(found, config.model_iou, config.model_votes)
    b, s = limit(b, s, config.max_boxes, 0.0)
    return shrink_xyxy(b, config.shrink), s
