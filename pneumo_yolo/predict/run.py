"""A prediction run: a folder of DICOMs (or PNG/JPEG files) → submission CSV, on one device or several.

Images are decoded by the converter's own reader in background processes while the model
runs on the previous batch (:mod:`.decoding`, :func:`.ensemble.detect_files`), so decoding hides
behind inference and memory stays flat: only a few batches are ever in flight. Boxes are
mapped back to each image's original pixel grid and post-processed by
:mod:`pneumo_yolo.eval.postprocess`. One device's work is :func:`.device.predict_paths`; with
several devices, :mod:`.shards` runs it once per device and joins the results.

Nothing is replaced until the run succeeds: the raw table and the DICOM results are written into
fresh hidden folders beside them (:class:`StagedOutputs`) and moved into place at the end, with the
submission; a run that predicts no image writes nothing. What an interrupted run leaves (temporary
files, shared memory) is removed by a janitor process if the run is killed, else by the next run.

Example:
    >>> settings = PredictSettings(weights=(Path("runs/exp/weights/best.pt"),))
    >>> report = predict_folder(Path("stage_2_test_images"), Path("submission.csv"), settings)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

from ..dicom.results import GSPS_FOLDER, SR_FOLDER
from ..eval.submission import errors_only, validate_submission, write_submission
from ..files import remove_stale_parts, staging_folder, write_errors_csv
from ..runtime.devices import Devices
from ..runtime.lifetime import Janitor, interrupts_held_off, remove_stale_shared_memory
from ..settings import SettingError
from .decoding import is_dicom, list_inputs
from .device import PredictSettings, predict_paths
from .shards import predict_on_devices


@dataclass
class PredictReport:
    """What one run wrote, how fast, and which inputs failed."""

    out: Path
    n_rows: int = 0
    """Rows of the submission: the images predicted, plus the expected patients without a usable image."""
    n_images: int = 0
    n_with_boxes: int = 0
    n_not_asked: int = 0
    picture_pixels: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    raw: Path | None = None
    dicom_out: Path | None = None
    written: bool = False
    """False when no image was predicted: then nothing was written, and earlier outputs are as they were."""
    workers: int = 0
    """Decoding processes per device."""
    batch: int = 0
    devices: int = 1

    @property
    def images_per_s(self) -> float:
        """Over the whole run, start-up (imports, model loading) included."""
        return self.n_images / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """Once the model is loaded: decoding, inference, post-processing and writing."""
        busy = self.elapsed_s - self.startup_s
        return self.n_images / busy if busy > 0 else 0.0

    @property
    def errors_path(self) -> Path:
        return errors_path_for(self.out)


def errors_path_for(out: Path) -> Path:
    """``submission.csv`` → ``submission.csv.errors.csv``."""
    return out.with_name(out.name + ".errors.csv")


def predict_folder(
    source: Path,
    out: Path,
    settings: PredictSettings,
    *,
    devices: Devices = Devices(),
    save_raw: Path | None = None,
    expected_ids: Sequence[str] | None = None,
) -> PredictReport:
    """Predict the images under ``source`` with ``settings`` and write the submission CSV ``out``.

    ``settings.weights`` is one detector or several (an ensemble: each image is decoded once and every
    model runs on it, each with its flipped pass under ``tta``); ``classifiers`` gate the boxes
    by their mean probability of opacity. The passes are fused, and the gate applied, by the
    post-processing (``config``: ``fusion_iou``, ``gate_alpha``, ``gate_threshold``).

    ``settings.workers`` decoding processes run beside the model, which takes ``batch`` images at a
    time (``None``: :func:`~pneumo_yolo.runtime.devices.auto_workers` and
    :func:`~pneumo_yolo.runtime.devices.auto_batch` for the device). Several ``devices``
    (``0,1``, or ``cpu,cpu``) split the images between them, one process each
    (:mod:`.shards`); the outputs are the same as with one device.

    Without ``expected_ids`` every readable image gets a row (an empty PredictionString for
    no box). With them (``--sample``/``--ids``) only those patients are predicted and every one
    gets a row: an unreadable or missing image gets an empty one, and is listed with the other
    problems in the report and in ``<out>.errors.csv``.

    ``settings.original_sizes`` (``--manifest``) maps the boxes found on resized pictures (the PNGs of
    ``convert``) to each original image's ``(W, H)`` grid; a picture it does not list is a
    problem. Without it, boxes on pictures are in the pictures' own pixels. DICOMs always map
    to their own original grid.

    ``save_raw`` also writes the raw detections (original pixels, before post-processing, from
    the lower of ``config.conf`` and :data:`~pneumo_yolo.nets.detector.RAW_CONF`) that ``pneumo-yolo tune`` reads. The
    written file is checked by the rules of ``validate-submission`` before this returns.
    ``settings.dicom_out`` (DICOM inputs only) also writes each image's SR and GSPS with the very boxes
    of its CSV row (:mod:`pneumo_yolo.dicom.results`).

    Outputs are replaced only at the end, and only when at least one image was predicted
    (:attr:`PredictReport.written`).
    """
    started = time.time()
    dicom_out, original_sizes = settings.dicom_out, settings.original_sizes
    paths = list_inputs(Path(source))
    pictures = [path for path in paths if not is_dicom(path)]
    if dicom_out and pictures:
        raise SettingError(
            "dicom_out", f"needs DICOM inputs: {pictures[0]} is not a .dcm file (leave it out for PNG/JPEG inputs)"
        )
    report = PredictReport(out=Path(out), raw=save_raw, dicom_out=dicom_out)
    if expected_ids is not None:
        paths, report.n_not_asked, missing = select_expected(paths, expected_ids)
        report.errors += [
            (str(Path(source) / pid), "no image for this expected patientId in --source") for pid in missing
        ]
    if original_sizes is not None:
        paths, unlisted = _split_by(paths, lambda path: is_dicom(path) or path.stem in original_sizes)
        report.errors += [(str(path), "not in --manifest: its original image size is unknown") for path in unlisted]
    report.picture_pixels = original_sizes is None and any(not is_dicom(path) for path in paths)
    outputs = [report.out, report.errors_path, *(path for path in (save_raw, dicom_out) if path)]
    for output in outputs:
        remove_stale_parts(output)
    remove_stale_shared_memory()
    with Janitor(outputs), StagedOutputs(save_raw, dicom_out) as staged:
        staged_settings = replace(settings, dicom_out=staged.dicom_out)
        if len(devices.names) > 1:
            found = predict_on_devices(paths, staged_settings, devices, staged.raw)
        else:
            found = predict_paths(paths, staged_settings, devices, staged.raw)
        report.startup_s = found.loaded_at - started
        report.workers, report.batch, report.devices = found.workers, found.batch, max(1, len(devices.names))
        report.errors += found.errors
        report.n_images = len(found.strings)
        report.elapsed_s = time.time() - started
        if not found.strings:
            return report
        rows = list(expected_ids) if expected_ids is not None else sorted(found.strings)
        with interrupts_held_off():  # all of this run's outputs, or none
            staged.commit()
            write_submission(report.out, found.strings, rows)
            write_errors_csv(report.errors_path, report.errors)
            report.written = True
    report.invalid = [str(problem) for problem in errors_only(validate_submission(report.out, rows, found.sizes))]
    report.n_rows = len(rows)
    report.n_with_boxes = sum(bool(s) for s in found.strings.values())
    report.elapsed_s = time.time() - started
    return report


def select_expected(paths: list[Path], expected_ids: Sequence[str]) -> tuple[list[Path], int, list[str]]:
    """The paths of the expected patients, how many other images were left out, and the expected ids without an image.

    >>> select_expected([Path("a.dcm"), Path("b.dcm")], ["b", "c"])
    ([PosixPath('b.dcm')], 1, ['c'])
    """
    expected = set(expected_ids)
    chosen, others = _split_by(paths, lambda path: path.stem in expected)
    found = {path.stem for path in chosen}
    return chosen, len(others), [pid for pid in expected_ids if pid not in found]


def _split_by(paths: list[Path], keep: Callable[[Path], bool]) -> tuple[list[Path], list[Path]]:
    """``paths`` split into those ``keep`` accepts and the others, in order."""
    kept = [path for path in paths if keep(path)]
    return kept, [path for path in paths if not keep(path)]


class StagedOutputs:
    """The raw table and DICOM results of a run, written into fresh hidden folders beside them until :meth:`commit` moves them into place.

    An interrupted or failed run thus never leaves a mix of two runs' files; the staging folders
    are removed on leaving the ``with`` block, however it is left (a killed run's, by the janitor
    or the next run: :func:`~pneumo_yolo.files.remove_stale_parts`).
    """

    def __init__(self, raw: Path | None, dicom_out: Path | None) -> None:
        self.raw_target, self.dicom_target = raw, dicom_out
        self.folders: list[Path] = []
        self.raw = self._stage(raw) / raw.name if raw else None
        self.dicom_out = self._stage(dicom_out) if dicom_out else None

    def _stage(self, target: Path) -> Path:
        folder = staging_folder(target)
        self.folders.append(folder)
        return folder

    def commit(self) -> None:
        """Move the staged files into place: the raw table whole, and the SR and GSPS of every image of this run.

        The GSPS that an earlier run left for an image now without boxes is removed; the results
        of images outside this run stay.
        """
        if self.raw and self.raw_target:
            os.replace(self.raw, self.raw_target)
        if self.dicom_out and self.dicom_target:
            for folder in (SR_FOLDER, GSPS_FOLDER):
                (self.dicom_target / folder).mkdir(parents=True, exist_ok=True)
            for sr in sorted((self.dicom_out / SR_FOLDER).glob("*.dcm")):
                gsps = self.dicom_out / GSPS_FOLDER / sr.name
                if gsps.is_file():
                    os.replace(gsps, self.dicom_target / GSPS_FOLDER / sr.name)
                else:
                    (self.dicom_target / GSPS_FOLDER / sr.name).unlink(missing_ok=True)
                os.replace(sr, self.dicom_target / SR_FOLDER / sr.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
