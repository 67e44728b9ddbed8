"""The raw detections table: every box a model found, before post-processing.

``predict --save-raw`` writes it and ``tune`` reads it. One row per detection::

    patientId,conf,x1,y1,x2,y2,width,height,model,pass,models,passes,p_opacity
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,0.8123,264.0,152.0,477.5,531.0,1024,1024,0,0,3,2,0.91
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,0.7710,270.5,149.0,480.0,529.0,1024,1024,0,1,3,2,0.91
    00313ee0-9eaa-42f4-b0ab-c148ed3241cd,,,,,,1024,1024,,,3,2,0.08

- ``x1 y1 x2 y2``: box corners in pixels of the original image;
- ``width``, ``height``: the original image size, the same on every row of a patient;
- ``model``: which of the image's ``models`` detectors (an ensemble's) found the box;
- ``pass``: which of that model's ``passes`` found it: 0 the plain image, 1 the flipped one
  with ``--tta``. Models and passes are fused only in post-processing, so that ``tune`` can
  search the fusion;
- ``p_opacity``: the image-level classifier's probability of opacity (empty without one);
- a patient with no detection has one row with empty ``conf``, box, ``model`` and ``pass``
  fields, so the set of predicted patients is known.

Tables of the earlier formats are read as one model: the first format (without the last five
columns) with one pass and no classifier, the second (``member``, ``members``, ``p_opacity``)
with its ``members`` as that model's passes, which post-processing fuses as it did then.

The format follows the file suffix: ``.csv`` or ``.parquet``. :class:`RawWriter` appends
image by image; :func:`read_raw` checks the table and returns :class:`RawDetections`.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..boxes import as_boxes
from ..files import check_patient_id, named, temporary_sibling
from ..limits import read_input
from .raw_format import RAW_COLUMNS, VALUE_COLUMNS, RawFileError, parse_frame

__all__ = [
    "RAW_COLUMNS",
    "RawDetections",
    "RawFileError",
    "RawImage",
    "RawWriter",
    "concatenate_raw",
    "read_raw",
    "write_raw",
]

_FORMATS = (".csv", ".parquet")
_ROWS_PER_FLUSH = 8_192
"""Rows buffered as Python lists before they are written: a few MB, whatever the number of images."""


class RawImage(NamedTuple):
    """Detections of one image: ``(N, 4)`` ``xyxy`` original pixels, ``(N,)`` scores, original size.

    ``model`` and ``pass_index`` (``(N,)`` ints, ``None``: all 0) say which of the ``models``
    detectors, and which of its ``passes`` (0 plain, 1 flipped), found each box; ``p_opacity``
    is the image classifier's probability (NaN: no classifier).
    """

    patient_id: str
    boxes: np.ndarray
    scores: np.ndarray
    width: float
    height: float
    model: np.ndarray | None = None
    pass_index: np.ndarray | None = None
    models: int = 1
    passes: int = 1
    p_opacity: float = math.nan

    @property
    def model_ids(self) -> np.ndarray:
        """Each box's model (all 0 when ``model`` is ``None``)."""
        return _ids(self.model, len(self.scores))

    @property
    def pass_ids(self) -> np.ndarray:
        """Each box's pass within its model (all 0 when ``pass_index`` is ``None``)."""
        return _ids(self.pass_index, len(self.scores))

    @property
    def flat_pass(self) -> np.ndarray:
        """Each box's pass counted across models (``model × passes + pass``): what flat fusion fuses."""
        return self.model_ids * self.passes + self.pass_ids


def _ids(values: np.ndarray | None, n: int) -> np.ndarray:
    """``(n,)`` whole numbers; ``None`` reads as all 0."""
    return np.zeros(n, np.int64) if values is None else np.asarray(values).reshape(-1).astype(np.int64)


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
    ids = []
    for name, given in (("model", image.model), ("pass", image.pass_index)):
        values = np.zeros(len(scores)) if given is None else np.asarray(given, dtype=np.float64).reshape(-1)
        if len(values) != len(scores):
            raise ValueError(f"patient {image.patient_id}: {len(scores)} scores but {len(values)} {name} ids")
        ids.append(values)
    values = np.c_[scores, boxes, ids[0], ids[1]] if len(scores) else np.full((1, 7), np.nan)
    n = len(values)
    columns: dict[str, list] = {"patientId": [image.patient_id] * n}
    columns.update({name: values[:, i].tolist() for i, name in enumerate(VALUE_COLUMNS)})
    columns["width"] = [float(image.width)] * n
    columns["height"] = [float(image.height)] * n
    columns["model"] = values[:, 5].tolist()
    columns["pass"] = values[:, 6].tolist()
    columns["models"] = [float(image.models)] * n
    columns["passes"] = [float(image.passes)] * n
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
        self._seen: set[str] = set()
        self._buffer: dict[str, list] = {name: [] for name in RAW_COLUMNS}
        self._parquet: Any = None
        self._csv: Any = None
        if self._format == ".csv":  # created by the open itself: one that fails leaves no file
            self._csv = open(self._tmp, "x", encoding="utf-8", newline="\n")
            self._csv.write(",".join(RAW_COLUMNS) + "\n")
        else:
            self._tmp.touch(exist_ok=False)

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

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.close()
        except OSError as failure:  # a full disk: the partial table goes, and the error names the table
            self.abort()
            raise named(failure, self.path) from None
        if kind is not None:
            self.abort()
            if isinstance(error, OSError):
                raise named(error, self.path) from None


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

    ``patient_ids``, ``sizes`` (``(n, 2)`` width, height), ``models``, ``passes`` (per model)
    and ``p_opacity`` are per image, in first-seen order; ``image`` (index into
    ``patient_ids``), ``scores``, ``boxes`` (``xyxy``), ``model`` and ``pass_index`` are per
    detection.
    """

    patient_ids: tuple[str, ...]
    sizes: np.ndarray
    image: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    model: np.ndarray
    pass_index: np.ndarray
    models: np.ndarray
    passes: np.ndarray
    p_opacity: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str) -> RawDetections:
        """Check a table in this format or an earlier one (``source`` names it in errors) and convert it."""
        return cls(**parse_frame(frame, source))  # type: ignore[arg-type]  # parse_frame checks each column

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
        return replace(
            self._rows(rows),
            patient_ids=tuple(pid for pid, k in zip(self.patient_ids, keep) if k),
            sizes=self.sizes[keep],
            image=new_index[self.image[rows]],
            models=self.models[keep],
            passes=self.passes[keep],
            p_opacity=self.p_opacity[keep],
        )

    def _rows(self, rows: np.ndarray) -> RawDetections:
        """The same images with only the detections where ``rows`` is true."""
        return replace(
            self,
            image=self.image[rows],
            scores=self.scores[rows],
            boxes=self.boxes[rows],
            model=self.model[rows],
            pass_index=self.pass_index[rows],
        )

    def only_passes(self, passes: Sequence[int]) -> RawDetections:
        """Every model's detections of ``passes`` alone, renumbered ``0..len(passes)-1`` in that order.

        For example ``[0]`` keeps the plain pass of a ``--tta`` table.
        """
        renumber = np.full(int(self.passes.max(initial=1)), -1, np.int64)
        renumber[[p for p in passes if p < len(renumber)]] = [i for i, p in enumerate(passes) if p < len(renumber)]
        kept = self._rows(renumber[self.pass_index] >= 0)
        return replace(
            kept, pass_index=renumber[kept.pass_index], passes=np.full(len(self), len(passes), dtype=np.int64)
        )

    def only_model(self, model: int) -> RawDetections:
        """The detections of one model of the ensemble, as a table of one model."""
        kept = self._rows(self.model == model)
        return replace(kept, model=np.zeros(len(kept.scores), np.int64), models=np.ones(len(self), np.int64))

    def without_probability(self) -> RawDetections:
        """The same detections as if no image classifier had run."""
        return replace(self, p_opacity=np.full(len(self), np.nan))

    def images(self) -> Iterable[RawImage]:
        """Each image's detections, in table order."""
        order = np.argsort(self.image, kind="stable")
        bounds = np.searchsorted(self.image[order], np.arange(len(self) + 1))
        for i, pid in enumerate(self.patient_ids):
            rows = order[bounds[i] : bounds[i + 1]]
            yield RawImage(
                pid,
                self.boxes[rows],
                self.scores[rows],
                float(self.sizes[i, 0]),
                float(self.sizes[i, 1]),
                self.model[rows],
                self.pass_index[rows],
                int(self.models[i]),
                int(self.passes[i]),
                float(self.p_opacity[i]),
            )


def read_raw(path: Path) -> RawDetections:
    """Read and check a raw detections table (``.csv`` or ``.parquet``, at most :data:`~pneumo_yolo.limits.MAX_TABLE_BYTES`)."""
    path = Path(path)
    kind = raw_format(path)
    try:
        data = io.BytesIO(read_input(path))  # bounded, and a pipe is read once
        if kind == ".csv":
            frame = pd.read_csv(data, dtype={"patientId": str}, encoding="utf-8")
        else:
            frame = pd.read_parquet(data)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RawFileError(f"{path}: cannot be read as a {kind[1:]} table ({error})") from error
    return RawDetections.from_frame(frame, source=str(path))
