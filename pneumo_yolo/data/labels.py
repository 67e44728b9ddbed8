"""Reading the RSNA label CSVs.

``stage_2_train_labels.csv`` has one row per box (``patientId,x,y,width,height,Target``);
a negative patient has one row with empty box fields and ``Target=0``.
``stage_2_detailed_class_info.csv`` has one ``patientId,class`` row per label row, so
patients repeat. Copies re-saved with ``;`` separators (and decimal commas) and CRLF line
ends are read too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import UnsafeIdError, check_patient_id
from ..limits import InputSizeError, read_input_text

LABEL_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
CLASS_COLUMNS = ("patientId", "class")
BOX_COLUMNS = ["x", "y", "width", "height"]


class LabelFileError(ValueError):
    """A CSV that cannot be read as a whole; the message names the file and the problem."""


@dataclass(frozen=True)
class RowProblem:
    """One unusable CSV row. ``line`` is the 1-based line number in the file."""

    patient_id: str
    line: int
    problem: str


@dataclass
class Labels:
    """Boxes per patient (``ltwh`` pixels; ``(0, 4)`` for a negative patient).

    ``problems`` holds rows that make a patient's labels unusable (the patient is left out
    of ``boxes``); ``dropped`` holds degenerate boxes (zero width or height) that were skipped.
    """

    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)
    dropped: list[RowProblem] = field(default_factory=list)


def read_csv_table(path: Path, columns: tuple[str, ...], exact: bool = False) -> pd.DataFrame:
    """Read a CSV with ``,`` or ``;`` separators as strings, checking the header.

    Decimal commas of ``;`` files are turned into points. A row's index + 2 is its line number
    in the file (blank lines, which are skipped, shift it). Raises :class:`LabelFileError`, also
    for a file over :data:`~pneumo_yolo.limits.MAX_TABLE_BYTES`, and with ``exact`` for a column beyond ``columns``.
    A pipe (``<(…)``) is read like a file.
    """
    path = Path(path)
    try:
        text = read_input_text(path)
        header = text.partition("\n")[0]
        separator = ";" if header.count(";") > header.count(",") else ","
        table = pd.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False)
    except InputSizeError as error:
        raise LabelFileError(str(error)) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise LabelFileError(f"{path}: cannot be read as CSV ({error})") from error
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise LabelFileError(
            f"{path}: missing column(s) {', '.join(missing)}; expected a header like {','.join(columns)} "
            f"(found {','.join(table.columns)})"
        )
    extra = [c for c in table.columns if c not in columns]
    if exact and extra:
        raise LabelFileError(
            f"{path}: unexpected column(s) {', '.join(extra)}; expected exactly the header {','.join(columns)}"
        )
    table = table[list(columns)].apply(lambda column: column.str.strip())
    if separator == ";":
        numeric = [c for c in columns if c != "patientId" and c != "class"]
        table[numeric] = table[numeric].apply(lambda column: column.str.replace(",", ".", regex=False))
    return table


def _row_problems(table: pd.DataFrame) -> pd.Series:
    """A problem text per row, or ``""`` for a usable row (vectorised)."""
    values = table[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    blank = (table[BOX_COLUMNS] == "").all(axis=1)
    target = table["Target"]
    positive = target == "1"
    problem = pd.Series("", index=table.index)
    problem[~target.isin(["0", "1"])] = "Target must be 0 or 1"
    problem[(target == "0") & ~blank] = "Target 0 row has box values"
    bad_number = positive & values.isna().any(axis=1)
    problem[bad_number] = "box value is missing, non-numeric or NaN"
    infinite = positive & ~bad_number & ~np.isfinite(values).all(axis=1)
    problem[infinite] = "box value is infinite"
    negative = positive & ~bad_number & ((values["width"] < 0) | (values["height"] < 0))
    problem[negative] = "negative width or height"
    return problem


def parse_labels(table: pd.DataFrame) -> Labels:
    """Group label rows per patient; see :class:`Labels` for what is kept and what is reported."""
    labels = Labels()
    lines = table.index.to_numpy() + 2
    problems = _row_problems(table)
    bad_patients: set[str] = set()
    for pid, line in zip(table["patientId"], lines):
        try:
            check_patient_id(pid)
        except UnsafeIdError as error:
            labels.problems.append(RowProblem(pid, int(line), str(error)))
            bad_patients.add(pid)
    for pid, line, problem in zip(table["patientId"], lines, problems):
        if problem and pid not in bad_patients:
            labels.problems.append(RowProblem(pid, int(line), problem))
            bad_patients.add(pid)

    mixed = table.groupby("patientId", sort=False)["Target"].nunique() > 1
    first_line = pd.Series(lines, index=table.index).groupby(table["patientId"], sort=False).first()
    for pid in mixed.index[mixed]:
        if pid not in bad_patients:
            labels.problems.append(RowProblem(pid, int(first_line[pid]), "patient has both Target 0 and Target 1 rows"))
            bad_patients.add(pid)

    usable = table[~table["patientId"].isin(bad_patients)]
    values = usable[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce")
    positive = usable["Target"] == "1"
    degenerate = positive & ((values["width"] <= 0) | (values["height"] <= 0))
    for pid, line in zip(usable.loc[degenerate, "patientId"], usable.index[degenerate] + 2):
        labels.dropped.append(RowProblem(pid, int(line), "degenerate box (width or height is 0) dropped"))

    keep = positive & ~degenerate
    grouped = values[keep].groupby(usable.loc[keep, "patientId"], sort=False)
    boxes = {pid: group.to_numpy(dtype=np.float64) for pid, group in grouped}
    empty = np.zeros((0, 4), dtype=np.float64)
    labels.boxes = {pid: boxes.get(pid, empty) for pid in usable["patientId"].drop_duplicates()}
    return labels


def label_rows(patient_id: str, boxes: np.ndarray, decimals: int | None = None) -> list[str]:
    """``stage_2_train_labels.csv`` rows of one patient's ``ltwh`` boxes: one per box, or one empty ``Target`` 0 row.

    Each number is written with ``decimals`` places, or exactly (``None``).

    >>> label_rows("p", np.array([[264, 152, 213, 379.25]])), label_rows("p", np.array([[1, 2, 3, 4.25]]), 1), label_rows("p", np.zeros((0, 4)))
    (['p,264.0,152.0,213.0,379.25,1'], ['p,1.0,2.0,3.0,4.2,1'], ['p,,,,,0'])
    """
    number = repr if decimals is None else (lambda value: f"{value:.{decimals}f}")
    rows = np.asarray(boxes, np.float64).reshape(-1, 4).tolist()
    return [",".join([patient_id, *map(number, row), "1"]) for row in rows] or [f"{patient_id},,,,,0"]


def read_labels(path: Path) -> Labels:
    """Read ``stage_2_train_labels.csv`` (or a ``;``/CRLF copy) into :class:`Labels`.

    Raises :class:`LabelFileError` for a file without a single label row.

    >>> labels = read_labels(Path("stage_2_train_labels.csv"))  # doctest: +SKIP
    >>> len(labels.boxes)  # doctest: +SKIP
    26684
    """
    table = read_csv_table(path, LABEL_COLUMNS)
    if table.empty:
        raise LabelFileError(
            f"{path}: holds no label rows, only a header (expected one row per box, or per patient without one)"
        )
    return parse_labels(table)


def read_class_info(path: Path) -> dict[str, str]:
    """Read ``stage_2_detailed_class_info.csv`` into ``{patientId: class}``, one entry per patient.

    A patient listed with two different classes raises :class:`LabelFileError`.
    """
    table = read_csv_table(path, CLASS_COLUMNS).drop_duplicates()
    conflicts = table["patientId"][table["patientId"].duplicated()]
    if len(conflicts):
        raise LabelFileError(f"{path}: patient {conflicts.iloc[0]} is listed with two different classes")
    return dict(zip(table["patientId"], table["class"]))
