"""The columns of the raw detections table (:mod:`.detections`), its earlier formats, and the checks of a table read back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..files import UnsafeIdError, check_patient_id

RAW_COLUMNS = (
    "patientId",
    "conf",
    "x1",
    "y1",
    "x2",
    "y2",
    "width",
    "height",
    "model",
    "pass",
    "models",
    "passes",
    "p_opacity",
)
VALUE_COLUMNS = ["conf", "x1", "y1", "x2", "y2"]
_SECOND_FORMAT = {"member": "pass", "members": "passes"}
"""The second format's columns, renamed: its members were the passes of what is read as one model."""
_LEGACY_DEFAULTS = {"model": 0.0, "pass": 0.0, "models": 1.0, "passes": 1.0, "p_opacity": np.nan}
"""The columns an earlier table lacks, with the values that read it as before."""


class RawFileError(ValueError):
    """A raw detections table that cannot be used; the message names the file and the problem."""


def _where(frame: pd.DataFrame, bad: np.ndarray | pd.Series) -> str:
    """``row N (patient ID)`` of the first bad row; N counts data rows from 1."""
    position = int(np.flatnonzero(np.asarray(bad))[0])
    return f"row {position + 1} (patient {frame['patientId'].iloc[position]})"


def _whole(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values == np.round(values))


def parse_frame(frame: pd.DataFrame, source: str) -> dict[str, object]:
    """Check a table of this format or an earlier one (``source`` names it in errors): the fields of a ``RawDetections``.

    Raises :class:`RawFileError` naming the first bad row and its problem.
    """
    if "member" in frame.columns and "pass" not in frame.columns:
        frame = frame.rename(columns=_SECOND_FORMAT)
    frame = frame.assign(**{name: value for name, value in _LEGACY_DEFAULTS.items() if name not in frame.columns})
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        raise RawFileError(f"{source}: missing column(s) {', '.join(missing)}; expected {','.join(RAW_COLUMNS)}")
    ids = frame["patientId"]
    if ids.isna().any():
        raise RawFileError(f"{source}: {_where(frame, ids.isna())}: patientId is empty")
    ids = ids.astype(str)
    for pid in ids.unique():
        try:
            check_patient_id(pid)
        except UnsafeIdError as error:
            raise RawFileError(f"{source}: {_where(frame, ids == pid)}: {error}") from None
    try:
        numbers = frame[list(RAW_COLUMNS[1:])].apply(pd.to_numeric, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as error:
        raise RawFileError(f"{source}: a value column holds something that is not a number ({error})") from None
    values = numbers[VALUE_COLUMNS].to_numpy()
    blank = np.isnan(values).all(axis=1)
    sizes = numbers[["width", "height"]].to_numpy()
    model, pass_index, models, passes, p_opacity = (
        numbers[name].to_numpy() for name in ("model", "pass", "models", "passes", "p_opacity")
    )
    checks = [
        (np.isnan(values).any(axis=1) & ~blank, "conf and box fields must all be given, or all be empty"),
        (~blank & ~np.isfinite(values).all(axis=1), "conf or box value is infinite"),
        (~blank & ((values[:, 0] < 0) | (values[:, 0] > 1)), "conf outside [0, 1]"),
        (~blank & ((values[:, 3] < values[:, 1]) | (values[:, 4] < values[:, 2])), "x2 < x1 or y2 < y1"),
        (~(np.isfinite(sizes).all(axis=1) & (sizes > 0).all(axis=1)), "width and height must be positive numbers"),
        (~(_whole(models) & (models >= 1)), "models must be a whole number ≥ 1"),
        (~(_whole(passes) & (passes >= 1)), "passes must be a whole number ≥ 1"),
        (~blank & ~(_whole(model) & (model >= 0) & (model < models)), "model must be a whole number in [0, models)"),
        (
            ~blank & ~(_whole(pass_index) & (pass_index >= 0) & (pass_index < passes)),
            "pass must be a whole number in [0, passes)",
        ),
        (~np.isnan(p_opacity) & ~((p_opacity >= 0) & (p_opacity <= 1)), "p_opacity outside [0, 1]"),
    ]
    for bad, problem in checks:
        if bad.any():
            raise RawFileError(f"{source}: {_where(frame, bad)}: {problem}")
    codes, uniques = pd.factorize(ids, sort=False)
    first = np.unique(codes, return_index=True)[1]
    per_image = np.c_[sizes, models, passes, p_opacity]
    first_rows = per_image[first]
    inconsistent = ~((per_image == first_rows[codes]) | (np.isnan(per_image) & np.isnan(first_rows[codes]))).all(axis=1)
    if inconsistent.any():
        raise RawFileError(
            f"{source}: {_where(frame, inconsistent)}: width, height, models, passes or p_opacity differ between rows of one patient"
        )
    detection = ~blank
    return {
        "patient_ids": tuple(uniques),
        "sizes": first_rows[:, :2],
        "image": codes[detection].astype(np.int64),
        "scores": values[detection, 0],
        "boxes": values[detection, 1:],
        "model": model[detection].astype(np.int64),
        "pass_index": pass_index[detection].astype(np.int64),
        "models": first_rows[:, 2].astype(np.int64),
        "passes": first_rows[:, 3].astype(np.int64),
        "p_opacity": first_rows[:, 4],
    }
