"""The raw detections table: every box a model found, before post-processing.

``predict --save-raw`` writes it and ``tune`` reads it. One row per detection::

    patientId,conf,x1,y1,x2,y2,width,height,member,members,p_opacity
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,0.8123,264.0,152.0,477.5,531.0,1024,1024,0,2,0.91
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,0.7710,270.5,149.0,480.0,529.0,1024,1024,1,2,0.91
    00313ee0-9eaa-42f4-b0ab-c148ed3241cd,,,,,,1024,1024,,2,0.08

- ``x1 y1 x2 y2``: box corners in pixels of the original image;
- ``width``, ``height``: the original image size, the same on every row of a patient;
- ``member``: which of the image's ``members`` passes found the box (each model of an
  ensemble, and its flipped pass with ``--tta``): they are fused only in post-processing, so
  that ``tune`` can search the fusion;
- ``p_opacity``: the image-level classifier's probability of opacity (empty without one);
- a patient with no detection has one row with empty ``conf``, box and ``member`` fields, so
  the set of predicted patients is known.

Tables of the first format (without the last three columns) are read as one member and no
classifier.

The format follows the file suffix: ``.csv`` or ``.parquet``. :class:`RawWriter` appends
image by image; :func:`read_raw` checks the table and returns :class:`RawDetections`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..boxes import as_boxes
from ..files import UnsafeIdError, check_patient_id, temporary_sibling

RAW_COLUMNS = ("patientId", "conf", "x1", "y1", "x2", "y2", "width", "height", "member", "members", "p_opacity")
_VALUE_COLUMNS = ["conf", "x1", "y1", "x2", "y2"]
_LEGACY_DEFAULTS = {"member": 0.0, "members": 1.0, "p_opacity": np.nan}
"""The columns a first-format table lacks, with the values that read it as before."""
_FORMATS = (".csv", ".parquet")
_ROWS_PER_FLUSH = 8_192
"""Rows buffered as Python lists before they are written: a few MB, whatever the number of images."""


class RawFileError(ValueError):
    """A raw detections table that cannot be used; the message names the file and the problem."""


class RawImage(NamedTuple):
    """Detections of one image: ``(N, 4)`` ``xyxy`` original pixels, ``(N,)`` scores, original size.

    ``member`` (``(N,)`` ints, ``None``: all 0) says which of the ``members`` passes found each
    box; ``p_opacity`` is the image classifier's probability (NaN: no classifier).
    """

    patient_id: str
    boxes: np.ndarray
    scores: np.ndarray
    width: float
    height: float
    member: np.ndarray | None = None
    members: int = 1
    p_opacity: float = math.nan


def raw_format(path: Path) -> str:
    """The format of a raw detections file, from its suffix (``.csv``, ``.parquet``); :class:`RawFileError` for any other."""
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise RawFileError(f"{path}: unknown raw detections format {path.suffix!r}; use .csv or .parquet")
    return suffix


def _image_columns(image: RawImage) -> dict[str, list]:
    """Columns of one image's rows: one row per box, or one empty row when there is none."""
    check_patient_id(image.patient_id)
    boxes = as_boxes(image.boxes)
    scores = np.asarray(image.scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"patient {image.patient_id}: {len(boxes)} boxes but {len(scores)} scores")
    if not (math.isfinite(image.width) and math.isfinite(image.height) and image.width > 0 and image.height > 0):
        raise ValueError(f"patient {image.patient_id}: image size {image.width}×{image.height} is not positive")
    member = np.zeros(len(scores)) if image.member is None else np.asarray(image.member, dtype=np.float64).reshape(-1)
    if len(member) != len(scores):
        raise ValueError(f"patient {image.patient_id}: {len(scores)} scores but {len(member)} member ids")
    values = np.c_[scores, boxes, member] if len(scores) else np.full((1, 6), np.nan)
    n = len(values)
    columns: dict[str, list] = {"patientId": [image.patient_id] * n}
    columns.update({name: values[:, i].tolist() for i, name in enumerate(_VALUE_COLUMNS)})
    columns["width"] = [float(image.width)] * n
    columns["height"] = [float(image.height)] * n
    columns["member"] = values[:, 5].tolist()
    columns["members"] = [float(image.members)] * n
    columns["p_opacity"] = [float(image.p_opacity)] * n
    return columns


def _arrow_schema():
    """Parquet schema of the table: ``patientId`` string, every other column float64."""
    import pyarrow as pa

    return pa.schema([("patientId", pa.string())] + [(name, pa.float64()) for name in RAW_COLUMNS[1:]])


class RawWriter:
    """Append detections image by image to a ``.csv`` or ``.parquet`` table.

    The table is written under a temporary name and renamed into place on :meth:`close`, so an
    interrupted run leaves no half-written table. A patient may be added only once.

    >>> with RawWriter(Path("raw.parquet")) as writer:  # doctest: +SKIP
    ...     writer.add(RawImage("patient-1", boxes_xyxy, scores, 1024, 1024))
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._format = raw_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        self._tmp.touch(exist_ok=False)
        self._seen: set[str] = set()
        self._buffer: dict[str, list] = {name: [] for name in RAW_COLUMNS}
        self._parquet = None
        self._csv = None
        if self._format == ".csv":
            self._csv = open(self._tmp, "w", encoding="utf-8", newline="\n")
            self._csv.write(",".join(RAW_COLUMNS) + "\n")

    def add(self, image: RawImage) -> None:
        """Append one image's detections (an empty ``boxes`` records a patient with none)."""
        if image.patient_id in self._seen:
            raise ValueError(f"{self.path}: patient {image.patient_id} was already written")
        columns = _image_columns(image)
        self._seen.add(image.patient_id)
        for name in RAW_COLUMNS:
            self._buffer[name].extend(columns[name])
        if len(self._buffer["patientId"]) >= _ROWS_PER_FLUSH:
            self._flush()

    def add_all(self, images: Iterable[RawImage]) -> None:
        """Append every image of ``images``."""
        for image in images:
            self.add(image)

    def _flush(self) -> None:
        if not self._buffer["patientId"]:
            return
        frame = pd.DataFrame(self._buffer, columns=list(RAW_COLUMNS))
        if self._csv is not None:
            frame.to_csv(self._csv, header=False, index=False, lineterminator="\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, _arrow_schema())
            self._parquet.write_table(pa.Table.from_pandas(frame, schema=_arrow_schema(), preserve_index=False))
        self._buffer = {name: [] for name in RAW_COLUMNS}

    def close(self) -> None:
        """Write what is buffered and move the table into place."""
        self._flush()
        if self._csv is not None:
            self._csv.close()
        elif self._parquet is None:
            import pyarrow.parquet as pq

            pq.write_table(_arrow_schema().empty_table(), self._tmp)
        else:
            self._parquet.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial table."""
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_raw(path: Path, images: Iterable[RawImage] | pd.DataFrame) -> None:
    """Write a whole table at once, from :class:`RawImage` items or from a DataFrame in this format."""
    if isinstance(images, pd.DataFrame):
        images = RawDetections.from_frame(images, source="DataFrame").images()
    with RawWriter(path) as writer:
        writer.add_all(images)


def concatenate_raw(parts: Sequence[Path], path: Path) -> None:
    """Write the tables ``parts`` (by :class:`RawWriter`, in the format of ``path``) one after another as ``path``.

    Streamed, so memory does not grow with the tables; written under a temporary name and renamed into place.
    """
    kind = raw_format(Path(path))
    tmp = temporary_sibling(Path(path))
    try:
        if kind == ".csv":
            with open(tmp, "xb") as joined:
                joined.write((",".join(RAW_COLUMNS) + "\n").encode())
                for part in parts:
                    with open(part, "rb") as handle:
                        handle.readline()
                        shutil.copyfileobj(handle, joined)
        else:
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, _arrow_schema()) as joined:
                for part in parts:
                    for batch in pq.ParquetFile(part).iter_batches():
                        joined.write_batch(batch)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RawDetections:
    """A checked raw table as flat arrays.

    ``patient_ids``, ``sizes`` (``(n, 2)`` width, height), ``members`` and ``p_opacity`` are
    per image, in first-seen order; ``image`` (index into ``patient_ids``), ``scores``,
    ``boxes`` (``xyxy``) and ``member`` are per detection.
    """

    patient_ids: tuple[str, ...]
    sizes: np.ndarray
    image: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    member: np.ndarray
    members: np.ndarray
    p_opacity: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str) -> RawDetections:
        """Check a table in this format (``source`` names it in errors) and convert it."""
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
        values = numbers[_VALUE_COLUMNS].to_numpy()
        blank = np.isnan(values).all(axis=1)
        sizes = numbers[["width", "height"]].to_numpy()
        member, members, p_opacity = (numbers[name].to_numpy() for name in ("member", "members", "p_opacity"))
        checks = [
            (np.isnan(values).any(axis=1) & ~blank, "conf and box fields must all be given, or all be empty"),
            (~blank & ~np.isfinite(values).all(axis=1), "conf or box value is infinite"),
            (~blank & ((values[:, 0] < 0) | (values[:, 0] > 1)), "conf outside [0, 1]"),
            (~blank & ((values[:, 3] < values[:, 1]) | (values[:, 4] < values[:, 2])), "x2 < x1 or y2 < y1"),
            (~(np.isfinite(sizes).all(axis=1) & (sizes > 0).all(axis=1)), "width and height must be positive numbers"),
            (~(np.isfinite(members) & (members >= 1) & (members == np.round(members))), "members must be a whole number ≥ 1"),
            (~blank & ~((member >= 0) & (member < members) & (member == np.round(member))), "member must be a whole number in [0, members)"),
            (~np.isnan(p_opacity) & ~((p_opacity >= 0) & (p_opacity <= 1)), "p_opacity outside [0, 1]"),
        ]
        for bad, problem in checks:
            if bad.any():
                raise RawFileError(f"{source}: {_where(frame, bad)}: {problem}")
        codes, uniques = pd.factorize(ids, sort=False)
        first = np.unique(codes, return_index=True)[1]
        per_image = np.c_[sizes, members, p_opacity]
        first_rows = per_image[first]
        inconsistent = ~((per_image == first_rows[codes]) | (np.isnan(per_image) & np.isnan(first_rows[codes]))).all(axis=1)
        if inconsistent.any():
            raise RawFileError(f"{source}: {_where(frame, inconsistent)}: width, height, members or p_opacity differ between rows of one patient")
        detection = ~blank
        return cls(
            patient_ids=tuple(uniques),
            sizes=first_rows[:, :2],
            image=codes[detection].astype(np.int64),
            scores=values[detection, 0],
            boxes=values[detection, 1:],
            member=member[detection].astype(np.int64),
            members=first_rows[:, 2].astype(np.int64),
            p_opacity=first_rows[:, 3],
        )

    @classmethod
    def from_images(cls, images: Iterable[RawImage]) -> RawDetections:
        """Build from :class:`RawImage` items (checked like a table)."""
        columns: dict[str, list] = {name: [] for name in RAW_COLUMNS}
        seen: set[str] = set()
        for image in images:
            if image.patient_id in seen:
                raise ValueError(f"patient {image.patient_id} appears in more than one RawImage")
            seen.add(image.patient_id)
            for name, values in _image_columns(image).items():
                columns[name].extend(values)
        return cls.from_frame(pd.DataFrame(columns, columns=list(RAW_COLUMNS)), source="detections")

    def __len__(self) -> int:
        return len(self.patient_ids)

    def select(self, keep: np.ndarray) -> RawDetections:
        """The images where the boolean ``keep`` (one per image) is true, with their detections."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        rows = keep[self.image]
        return RawDetections(
            patient_ids=tuple(pid for pid, k in zip(self.patient_ids, keep) if k),
            sizes=self.sizes[keep],
            image=new_index[self.image[rows]],
            scores=self.scores[rows],
            boxes=self.boxes[rows],
            member=self.member[rows],
            members=self.members[keep],
            p_opacity=self.p_opacity[keep],
        )

    def only_members(self, members: Sequence[int]) -> RawDetections:
        """The detections of ``members`` alone, renumbered ``0..len(members)-1`` in that order.

        For example ``[0]`` keeps the plain pass of a ``--tta`` table.
        """
        order = {member: index for index, member in enumerate(members)}
        rows = np.isin(self.member, list(order))
        renumber = np.vectorize(order.__getitem__, otypes=[np.int64])
        return replace(
            self,
            image=self.image[rows],
            scores=self.scores[rows],
            boxes=self.boxes[rows],
            member=renumber(self.member[rows]) if rows.any() else np.zeros(0, np.int64),
            members=np.full(len(self), len(members), dtype=np.int64),
        )

    def without_probability(self) -> RawDetections:
        """The same detections as if no image classifier had run."""
        return replace(self, p_opacity=np.full(len(self), np.nan))

    def images(self) -> Iterable[RawImage]:
        """Each image's detections, in table order."""
        order = np.argsort(self.image, kind="stable")
        bounds = np.searchsorted(self.image[order], np.arange(len(self) + 1))
        for i, pid in enumerate(self.patient_ids):
            rows = order[bounds[i] : bounds[i + 1]]
            width, height = float(self.sizes[i, 0]), float(self.sizes[i, 1])
            yield RawImage(pid, self.boxes[rows], self.scores[rows], width, height, self.member[rows], int(self.members[i]), float(self.p_opacity[i]))


def _where(frame: pd.DataFrame, bad: np.ndarray | pd.Series) -> str:
    """``row N (patient ID)`` of the first bad row; N counts data rows from 1."""
    position = int(np.flatnonzero(np.asarray(bad))[0])
    return f"row {position + 1} (patient {frame['patientId'].iloc[position]})"


def read_raw(path: Path) -> RawDetections:
    """Read and check a raw detections table (``.csv`` or ``.parquet``)."""
    path = Path(path)
    kind = raw_format(path)
    try:
        if kind == ".csv":
            frame = pd.read_csv(path, dtype={"patientId": str}, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RawFileError(f"{path}: cannot be read as a {kind[1:]} table ({error})") from error
    return RawDetections.from_frame(frame, source=str(path))
