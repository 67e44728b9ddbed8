"""Scoring submissions: the ground truth to score, taken from the label CSV, and the RSNA metric on a file.

The ground truth is every labelled patient, or only the patients of a converted dataset's
``manifest.csv`` (of one split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import read_manifest
from ..data.labels import LabelFileError, read_labels
from .metric import MetricResult, evaluate
from .submission import SubmissionError, read_submission


@dataclass
class ScoringSet:
    """The ground truth to score (``boxes``: ``{patientId: (N, 4) ltwh}``) and what it was taken from.

    ``label_ids`` holds every patient of the label CSV, those of unusable rows too (not scored,
    and named in ``notes``, rather than reported as missing from the labels); ``sizes`` the manifest's image
    sizes (empty without a manifest); ``notes`` what was left out and why.
    """

    boxes: dict[str, np.ndarray]
    label_ids: frozenset[str]
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_scoring_set(labels: Path, manifest: Path | None = None, split: str | None = None) -> ScoringSet:
    """Ground truth of every labelled patient, or only of the manifest's patients (of ``split``).

    Raises :class:`~pneumo_yolo.data.labels.LabelFileError` for unreadable files, an unknown
    split, a split without a manifest, or manifest patients missing from the labels.
    """
    if split is not None and manifest is None:
        raise LabelFileError("--split needs --manifest (the converter's OUT/manifest.csv)")
    parsed = read_labels(Path(labels))
    notes = []
    if parsed.problems:
        first = parsed.problems[0]
        notes.append(
            f"{labels}: {len(parsed.problems)} unusable row(s), their patients are not scored "
            f"(first: line {first.line}, {first.patient_id}: {first.problem})"
        )
    known = frozenset(parsed.boxes) | {problem.patient_id for problem in parsed.problems}
    if manifest is None:
        return ScoringSet(parsed.boxes, known, notes=notes)
    sizes = read_manifest(Path(manifest), split)
    unknown = [pid for pid in sizes if pid not in known]
    if unknown:
        raise LabelFileError(f"{manifest}: {len(unknown)} patient(s) are not in {labels}, e.g. {unknown[0]}")
    boxes = {pid: parsed.boxes[pid] for pid in sizes if pid in parsed.boxes}
    return ScoringSet(boxes, known, sizes, notes)


def evaluate_submission(path: Path, scoring: ScoringSet) -> MetricResult:
    """Score a submission file. A scored patient missing from it has no prediction; a patient
    outside the labels is an error (:class:`SubmissionError`); labelled patients outside the
    scored set are ignored."""
    predictions = read_submission(path)
    unknown = [pid for pid in predictions if pid not in scoring.label_ids]
    if unknown:
        raise SubmissionError(f"{path}: {len(unknown)} patient(s) are not in the labels, e.g. {unknown[0]}")
    return evaluate(scoring.boxes, {pid: rows for pid, rows in predictions.items() if pid in scoring.boxes})
