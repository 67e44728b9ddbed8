"""The Kaggle submission file format: formatting, writing, reading and validating it.

A submission is ``patientId,PredictionString`` with one row for every patient asked for;
the PredictionString is ``conf x y w h conf x y w h …`` (``ltwh``) in original pixels, empty
when the patient has no box. Scoring a submission is :mod:`pneumo_yolo.eval.scoring`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..data.labels import LabelFileError, read_csv_table
from ..files import UnsafeIdError, atomic_write_text, check_patient_id
from ..limits import InputSizeError, first_line, read_input_text
from .merging import sort_by_score

SUBMISSION_COLUMNS = ("patientId", "PredictionString")
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


def prediction_string(boxes_xyxy: np.ndarray, scores: np.ndarray) -> str:
    """``conf x y w h …`` in descending confidence: confidence with 4 decimals, pixels with 1.

    Corners are rounded before the width and height are taken, so a box that ends on the
    image border still ends there once written.

    >>> prediction_string(np.array([[10, 20, 110.04, 70]]), np.array([0.87654]))
    '0.8765 10.0 20.0 100.0 50.0'
    """
    b, s = sort_by_score(boxes_xyxy, scores)
    corners = np.round(b, 1)
    parts = [f"{conf:.4f} {x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f}" for conf, (x1, y1, x2, y2) in zip(s, corners)]
    return " ".join(parts)


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
        table = read_csv_table(Path(path), SUBMISSION_COLUMNS, exact=True)
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
            problems.append(
                SubmissionProblem(where[1], pid, f"duplicate patientId (lines {', '.join(map(str, where))})")
            )
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


class PatientIds(NamedTuple):
    """The patients a file of ids asks for, in order and once each, and those it lists more than once."""

    ids: list[str]
    duplicates: list[str]


def read_patient_ids(path: Path) -> PatientIds:
    """Patient ids from a CSV with a ``patientId`` column (e.g. the sample submission) or a file of one id per line.

    Every id is checked before any work (:func:`~pneumo_yolo.files.check_patient_id`). Raises
    :class:`SubmissionError` naming the line of an unsafe id, and for a file that looks like a CSV
    (a ``,`` or ``;`` in its first line) without a ``patientId`` column in its header.
    """
    path = Path(path)
    try:
        header = first_line(path)
        if "patientId" in header:
            table = read_csv_table(path, ("patientId",))
            lines, ids = (table.index + 2).tolist(), table["patientId"].tolist()
        elif "," in header or ";" in header:
            raise SubmissionError(
                f"{path}: no patientId column in its header {header.strip()!r}: give a CSV whose header names patientId "
                "(the sample submission starts with patientId,PredictionString), or a file of one id per line"
            )
        else:
            text = read_input_text(path).splitlines()
            lines, ids = list(range(1, len(text) + 1)), [line.strip() for line in text]
    except (OSError, UnicodeDecodeError, InputSizeError) as error:
        raise SubmissionError(f"{path}: cannot be read ({error})") from error
    except LabelFileError as error:
        raise SubmissionError(str(error)) from None
    found: dict[str, None] = {}
    duplicates: dict[str, None] = {}
    for line, pid in zip(lines, ids):
        if not pid:
            continue
        try:
            check_patient_id(pid)
        except UnsafeIdError as error:
            raise SubmissionError(f"{path}: line {line}: {error}") from None
        (duplicates if pid in found else found)[pid] = None
    if not found:
        raise SubmissionError(f"{path}: lists no patientId")
    return PatientIds(list(found), list(duplicates))
