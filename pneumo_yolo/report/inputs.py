"""Reading what ``pneumo-yolo report`` is given: predictions, an image folder, labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data.labels import read_labels
from ..eval.detections import read_raw
from ..eval.postprocess import PostprocessConfig
from ..eval.submission import read_submission
from ..files import DICOM_SUFFIXES, PICTURE_SUFFIXES, UnsafeIdError, check_patient_id
from ..limits import InputSizeError, first_line
from . import ReportError, ReportUsageError
from .analysis import Predictions


def read_predictions(path: Path, config: PostprocessConfig) -> Predictions:
    """A submission CSV (``patientId,PredictionString``) as it is, or a raw detection table
    (``.parquet``, or ``.csv`` with a ``conf`` column) post-processed with ``config``.

    Raises :class:`ReportError` for a file of neither kind, or one that holds no patient.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        found = Predictions.from_raw(read_raw(path), config)
    else:
        try:
            header = first_line(path)
        except (OSError, UnicodeDecodeError, InputSizeError) as error:
            raise ReportError(f"{path}: cannot be read ({error})") from None
        if "PredictionString" in header:
            found = Predictions(read_submission(path))
        elif "conf" in header:
            found = Predictions.from_raw(read_raw(path), config)
        else:
            raise ReportError(
                f"{path}: neither a submission (patientId,PredictionString) nor raw detections (patientId,conf,x1,y1,x2,y2,width,height)"
            )
    if not found.rows:
        raise ReportError(f"{path}: holds no patient, only a header: nothing to report")
    return found


def list_images(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """``{patientId: file}`` of the DICOM, PNG and JPEG files below ``folder``, and notes on files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportUsageError(f"--images {folder}: not a folder")
    suffixes = DICOM_SUFFIXES | PICTURE_SUFFIXES
    images: dict[str, Path] = {}
    notes = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()):
        try:
            pid = check_patient_id(path.stem)
        except UnsafeIdError as error:
            notes.append(f"{path.name} skipped: {error}")
            continue
        if pid in images:
            notes.append(f"{path} skipped: patientId {pid} already has {images[pid].name}")
            continue
        images[pid] = path
    if not images:
        raise ReportUsageError(
            f"--images {folder} holds no .dcm, .png or .jpg files (searched recursively): give the folder of the images"
        )
    return images, notes


def read_truth(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Ground truth boxes per patient from an RSNA label CSV, and a note on unusable rows."""
    labels = read_labels(Path(path))
    notes = []
    if labels.problems:
        first = labels.problems[0]
        notes.append(
            f"{path}: {len(labels.problems):,} unusable row(s), their patients are not scored (first: line {first.line}, {first.problem})"
        )
    return labels.boxes, notes


def pictures_without_size(
    images: Mapping[str, Path], predictions: Predictions, sizes: Mapping[str, tuple[float, float]] | None
) -> list[str]:
    """The patients whose picture (PNG/JPEG) has no known original size, so their boxes cannot be placed on it.

    A DICOM knows its size, and raw detections carry each image's; a submission's boxes on a
    converted PNG need the converter's manifest, or they land where a resized picture's pixels are not.

    >>> pictures_without_size({"a": Path("a.png"), "b": Path("b.dcm")}, Predictions({}), None)
    ['a']
    """
    known = {**(sizes or {}), **predictions.sizes()}
    return sorted(pid for pid, path in images.items() if path.suffix.lower() not in DICOM_SUFFIXES and pid not in known)
