"""Kaggle submission CSVs: writing, reading, validating and scoring them.

A submission is ``patientId,PredictionString`` with one row for every patient asked for;
the PredictionString is ``conf x y w h conf x y w h …`` in original pixels, empty when the
patient has no box. Reading and scoring also need the ground truth of the patients to
score: :func:`load_scoring_set` takes it from the label CSV, optionally restricted to one
split of the converter's ``manifest.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.labels import LabelFileError, read_csv_table, read_labels
from .metric import MetricResult, evaluate
from ..files import UnsafeIdError, atomic_write_text, check_patient_id

SUBMISSION_COLUMNS = ("patientId", "PredictionString")
MANIFEST_COLUMNS = ("patientId", "split", "width", "height")
RSNA_IMAGE_SIZE = (1024.0, 1024.0)
BORDER_TOLERANCE = 1e-6
_SHOWN = 10


class SubmissionError(ValueError):
    """A submission that cannot be used; the message names the file and the problems."""


@dataclass(frozen=True)
class SubmissionProblem:
    """One problem of a submission; ``line`` is the 1-based line in the file (``None``: not in the file).

    A ``warning`` does not make the submission invalid: Kaggle accepts and scores it.
    """

    line: int | None
    patient_id: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.patient_id}: {self.message}" if self.patient_id else f"{where}{self.message}"


def parse_prediction_string(text: str) -> np.ndarray:
    """``"conf x y w h …"`` → ``(M, 5)`` float array; raises ``ValueError`` naming what is wrong.

    Rejected: a count of numbers that is not a multiple of 5, a token that is not a number,
    NaN or infinity, a negative width or height, a confidence outside [0, 1].

    >>> parse_prediction_string("0.5 10 20 30 40").tolist()
    [[0.5, 10.0, 20.0, 30.0, 40.0]]
    >>> parse_prediction_string("").shape
    (0, 5)
    """
    tokens = text.split()
    if len(tokens) % 5:
        raise ValueError(f"PredictionString has {len(tokens)} numbers, not a multiple of 5 (conf x y w h per box)")
    values = np.empty(len(tokens), dtype=np.float64)
    for i, token in enumerate(tokens):
        try:
            values[i] = float(token)
        except ValueError:
            raise ValueError(f"PredictionString value {token!r} is not a number") from None
    rows = values.reshape(-1, 5)
    conf, w, h = rows[:, 0], rows[:, 3], rows[:, 4]
    checks = (
        (~np.isfinite(rows).all(axis=1), "has a NaN or infinite value"),
        ((w < 0) | (h < 0), "has a negative width or height"),
        ((conf < 0) | (conf > 1), "has a confidence outside [0, 1]"),
    )
    for bad, problem in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"PredictionString box {k + 1} ({' '.join(tokens[5 * k : 5 * k + 5])}) {problem}")
    return rows


def outside_image(rows: np.ndarray, size: tuple[float, float]) -> list[int]:
    """1-based numbers of the boxes of ``(M, 5)`` rows that reach outside an image of ``size = (W, H)``."""
    width, height = size
    x, y, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    tol = BORDER_TOLERANCE
    bad = (x < -tol) | (y < -tol) | (x + w > width + tol) | (y + h > height + tol)
    return (np.flatnonzero(bad) + 1).tolist()


def write_submission(path: Path, prediction_strings: Mapping[str, str], patient_ids: Iterable[str]) -> None:
    """Write one row per patient of ``patient_ids``, in that order; a patient without a string gets an empty one.

    Raises ``ValueError`` for a duplicate patient, a string for a patient not asked for, or
    a malformed string.
    """
    ids = list(patient_ids)
    asked = set(ids)
    if len(asked) != len(ids):
        duplicate = next(pid for pid in ids if ids.count(pid) > 1)
        raise ValueError(f"patient {duplicate} is asked for more than once")
    extra = [pid for pid in prediction_strings if pid not in asked]
    if extra:
        raise ValueError(f"{len(extra)} patient(s) have predictions but are not asked for, e.g. {extra[0]}")
    lines = [",".join(SUBMISSION_COLUMNS)]
    for pid in ids:
        check_patient_id(pid)
        text = prediction_strings.get(pid, "")
        try:
            parse_prediction_string(text)
        except ValueError as error:
            raise ValueError(f"patient {pid}: {error}") from None
        lines.append(f"{pid},{text}")
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def _read_table(path: Path) -> pd.DataFrame:
    try:
        table = read_csv_table(Path(path), SUBMISSION_COLUMNS)
    except LabelFileError as error:
        raise SubmissionError(str(error)) from None
    return table.fillna("")


def _row_problems(table: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, int], list[SubmissionProblem]]:
    """Parse every row: parsed strings and first line per usable id, and the problems of the others."""
    parsed: dict[str, np.ndarray] = {}
    lines: dict[str, list[int]] = {}
    problems: list[SubmissionProblem] = []
    for line, pid, text in zip(table.index + 2, table["patientId"], table["PredictionString"]):
        line = int(line)
        if not pid:
            problems.append(SubmissionProblem(line, "", "patientId is empty"))
            continue
        try:
            check_patient_id(pid)
        except UnsafeIdError as error:
            problems.append(SubmissionProblem(line, pid, str(error)))
            continue
        lines.setdefault(pid, []).append(line)
        try:
            rows = parse_prediction_string(text)
        except ValueError as error:
            problems.append(SubmissionProblem(line, pid, str(error)))
            continue
        parsed.setdefault(pid, rows)
    for pid, where in lines.items():
        if len(where) > 1:
            problems.append(SubmissionProblem(where[1], pid, f"duplicate patientId (lines {', '.join(map(str, where))})"))
    first_line = {pid: where[0] for pid, where in lines.items()}
    return parsed, first_line, problems


def _summary(path: Path, problems: Sequence[SubmissionProblem]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:_SHOWN])
    more = f"\n  … and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return f"{path}: {len(problems)} problem(s):\n{shown}{more}"


def read_submission(path: Path) -> dict[str, np.ndarray]:
    """Read a submission into ``{patientId: (M, 5) conf x y w h}``.

    Raises :class:`SubmissionError` naming the malformed strings and the invalid or duplicate ids
    (the first 10, and how many in all).
    """
    parsed, _, problems = _row_problems(_read_table(path))
    if problems:
        raise SubmissionError(_summary(Path(path), problems))
    return parsed


def validate_submission(
    path: Path,
    expected_ids: Sequence[str],
    image_sizes: Mapping[str, tuple[float, float]] | None = None,
    default_size: tuple[float, float] = RSNA_IMAGE_SIZE,
) -> list[SubmissionProblem]:
    """Every problem of a submission against the patients it must cover; valid when none is an error.

    Errors: the header; missing, duplicate, extra and invalid ids; malformed strings. Warnings:
    boxes reaching outside the image (``image_sizes[patientId]``, else ``default_size``: every
    RSNA image is 1024 × 1024), which Kaggle accepts and scores. Raises
    :class:`SubmissionError` only for an unreadable file.
    """
    table = _read_table(path)
    parsed, first_line, problems = _row_problems(table)
    expected = dict.fromkeys(expected_ids)
    for pid, line in first_line.items():
        if pid not in expected:
            problems.append(SubmissionProblem(line, pid, "extra patientId: not in the expected ids"))
    for pid in expected:
        if pid not in first_line:
            problems.append(SubmissionProblem(None, pid, "missing patientId: no row for this expected patient"))
    sizes = image_sizes or {}
    for pid, rows in parsed.items():
        if pid not in expected or not len(rows):
            continue
        size = sizes.get(pid, default_size)
        outside = outside_image(rows, size)
        if outside:
            problems.append(
                SubmissionProblem(
                    first_line[pid],
                    pid,
                    f"box {', '.join(map(str, outside))} reaches outside the {size[0]:g}×{size[1]:g} image",
                    warning=True,
                )
            )
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def errors_only(problems: Sequence[SubmissionProblem]) -> list[SubmissionProblem]:
    """The problems that make a submission invalid (not the warnings)."""
    return [problem for problem in problems if not problem.warning]


def read_patient_ids(path: Path) -> list[str]:
    """Patient ids from a CSV with a ``patientId`` column (e.g. the sample submission) or a file of one id per line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            header = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise SubmissionError(f"{path}: cannot be read ({error})") from error
    if "patientId" in header:
        try:
            ids = read_csv_table(path, ("patientId",))["patientId"]
        except LabelFileError as error:
            raise SubmissionError(str(error)) from None
        ids = ids.tolist()
    else:
        ids = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    return list(dict.fromkeys(pid for pid in ids if pid))


def read_manifest(path: Path, split: str | None = None) -> dict[str, tuple[float, float]]:
    """``{patientId: (width, height)}`` of the converter's ``manifest.csv``, only ``split`` when given."""
    path = Path(path)
    table = read_csv_table(path, MANIFEST_COLUMNS)
    if split is not None:
        splits = sorted(set(table["split"]))
        table = table[table["split"] == split]
        if table.empty:
            raise LabelFileError(f"{path}: no patient in split {split!r} (splits found: {', '.join(splits) or 'none'})")
    sizes = table[["width", "height"]].apply(pd.to_numeric, errors="coerce")
    bad = sizes.isna().any(axis=1) | (sizes <= 0).any(axis=1)
    if bad.any():
        line = int(table.index[bad.to_numpy()][0]) + 2
        raise LabelFileError(f"{path}: line {line}: width and height must be positive numbers")
    return dict(zip(table["patientId"], zip(sizes["width"].astype(float), sizes["height"].astype(float))))


@dataclass
class ScoringSet:
    """The ground truth to score (``boxes``: ``{patientId: (N, 4) xywh}``) and what it was taken from.

    ``label_ids`` holds every usable patient of the label CSV; ``sizes`` the manifest's image
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
    if manifest is None:
        return ScoringSet(parsed.boxes, frozenset(parsed.boxes), notes=notes)
    sizes = read_manifest(Path(manifest), split)
    unknown = [pid for pid in sizes if pid not in parsed.boxes]
    if unknown:
        raise LabelFileError(f"{manifest}: {len(unknown)} patient(s) are not in {labels}, e.g. {unknown[0]}")
    boxes = {pid: parsed.boxes[pid] for pid in sizes}
    return ScoringSet(boxes, frozenset(parsed.boxes), sizes, notes)


def evaluate_submission(path: Path, scoring: ScoringSet) -> MetricResult:
    """Score a submission file. A scored patient missing from it has no prediction; a patient
    outside the labels is an error (:class:`SubmissionError`); labelled patients outside the
    scored set are ignored."""
    predictions = read_submission(path)
    unknown = [pid for pid in predictions if pid not in scoring.label_ids]
    if unknown:
        raise SubmissionError(f"{path}: {len(unknown)} patient(s) are not in the labels, e.g. {unknown[0]}")
    return evaluate(scoring.boxes, {pid: rows for pid, rows in predictions.items() if pid in scoring.boxes})
