"""RSNA Pneumonia Detection Challenge → Ultralytics YOLO dataset.

Before::

    stage_2_train_images/<patientId>.dcm   (searched recursively)
    stage_2_train_labels.csv               patientId,x,y,width,height,Target
    stage_2_detailed_class_info.csv        patientId,class   (optional, for stratification)

After::

    OUT/data.yaml                           path, train, val, names {0: opacity}, channels
    OUT/images/{train,val}/<patientId>.png  8-bit grayscale, longest side --imgsz
    OUT/labels/{train,val}/<patientId>.txt  "0 cx cy w h" per box; empty for a negative image
                                            (with --folds K: images/fold<k>, labels/fold<k>, folds/, data_fold<i>.yaml)
    OUT/manifest.csv                        one row per converted patient
    OUT/errors.csv                          file,problem (only when something failed)
    OUT/.pneumo_yolo_convert.json           the settings, checked on every rerun

Every file is written under a temporary name and renamed into place, and a rerun skips
images whose PNG and label file both exist, so an interrupted run can simply be rerun.

Example:
    >>> from converters.rsna import ConvertSettings, convert_rsna
    >>> report = convert_rsna(Path("stage_2_train_images"), Path("stage_2_train_labels.csv"),
    ...                       Path("datasets/rsna"), settings=ConvertSettings(imgsz=512))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from collections.abc import Generator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from converters.rsna_outputs import ConvertError, clear_outputs, must_clear, refuse_inputs_in_outputs
from converters.settings import ConvertSettings
from pneumo_yolo.boxes import clip_ltwh, ltwh_to_yolo
from pneumo_yolo.data.dataset import (
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    SETTINGS_FILE,
    ConvertedDataset,
    split_names,
)
from pneumo_yolo.data.labels import read_class_info, read_labels
from pneumo_yolo.data.split import assign_folds, assign_split, smallest_stratum
from pneumo_yolo.dicom.read import DicomReadError, Radiograph, find_dicoms, read_header, read_radiograph
from pneumo_yolo.files import (
    Interrupted,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
    write_errors_csv,
)
from pneumo_yolo.runtime.lifetime import (
    Janitor,
    exit_with_parent,
    interrupts_held_off,
    name_semaphores,
    remove_stale_shared_memory,
)
from pneumo_yolo.settings import SettingError


@dataclass(frozen=True)
class Task:
    """One patient to convert: its DICOM, its split, and its boxes (``ltwh``, original pixels)."""

    patient_id: str
    dicom: Path
    split: str
    boxes: np.ndarray
    image_path: Path
    label_path: Path


@dataclass
class Outcome:
    """What a worker did with one :class:`Task`."""

    patient_id: str
    status: str  # "converted", "skipped" or "failed"
    record: dict | None = None
    warnings: list[str] = field(default_factory=list)
    problem: str = ""


@dataclass
class ConvertReport:
    """Counts, problems and timing of one run."""

    out: Path
    converted: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def images_per_s(self) -> float:
        return (self.converted + self.skipped) / self.elapsed_s if self.elapsed_s else 0.0


def yolo_label_text(boxes_ltwh: np.ndarray, width: int, height: int) -> str:
    """YOLO label file content: one ``0 cx cy w h`` line per box, 6 decimals; ``""`` for none.

    >>> yolo_label_text(np.array([[256.0, 256.0, 512.0, 256.0]]), 1024, 1024)
    '0 0.500000 0.375000 0.500000 0.250000\\n'
    """
    return "".join(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cx, cy, w, h in ltwh_to_yolo(boxes_ltwh, width, height))


def _clip_boxes(task: Task, width: int, height: int) -> tuple[np.ndarray, list[str]]:
    """Clip boxes to the image; drop (with a warning) those left with no area."""
    clipped = clip_ltwh(task.boxes, width, height)
    keep = (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
    warnings = [
        f"{task.patient_id}: box {tuple(float(v) for v in box)} lies outside the {width}x{height} image, dropped"
        for box in task.boxes[~keep]
    ]
    return clipped[keep], warnings


def _record(task: Task, image: Radiograph, n_boxes: int) -> dict:
    return {
        "patientId": task.patient_id,
        "split": task.split,
        "width": image.width,
        "height": image.height,
        "n_boxes": n_boxes,
        "view_position": image.view_position,
        "sex": image.sex,
        "age": image.age,
    }


def _refresh(task: Task) -> Outcome:
    """An image converted by an earlier run: keep its PNG, rewrite its labels if the CSV changed."""
    header = read_header(task.dicom)
    boxes, warnings = _clip_boxes(task, header.width, header.height)
    text = yolo_label_text(boxes, header.width, header.height)
    if task.label_path.read_text() != text:
        atomic_write_text(task.label_path, text)
    return Outcome(task.patient_id, "skipped", _record(task, header, len(boxes)), warnings)


def convert_one(task: Task, settings: ConvertSettings) -> Outcome:
    """Convert one DICOM into a PNG and a label file; an image already converted is only checked (:func:`_refresh`)."""
    try:
        if task.image_path.exists() and task.label_path.exists():
            return _refresh(task)
        image = read_radiograph(task.dicom, settings.imgsz)
    except DicomReadError as error:
        return Outcome(task.patient_id, "failed", problem=error.problem)
    boxes, warnings = _clip_boxes(task, image.width, image.height)
    ok, png = cv2.imencode(".png", image.pixels, settings.png_params)
    if not ok:
        return Outcome(task.patient_id, "failed", problem="PNG encoding failed")
    atomic_write_bytes(task.image_path, png.tobytes())
    atomic_write_text(task.label_path, yolo_label_text(boxes, image.width, image.height))
    return Outcome(task.patient_id, "converted", _record(task, image, len(boxes)), warnings)


def _worker(parent: int) -> None:
    """Pool initializer: the worker dies with its parent, which alone handles Ctrl-C; one OpenCV thread, the pool being the parallelism."""
    exit_with_parent(parent, ignore_interrupt=True)
    cv2.setNumThreads(1)


def run_tasks(tasks: list[Task], settings: ConvertSettings, workers: int) -> Generator[Outcome, None, None]:
    """Convert ``tasks`` in a pool of ``workers`` processes (in this process for 1, never more than the tasks), streaming outcomes.

    The pool's semaphores are named for this process (:func:`~pneumo_yolo.runtime.lifetime.name_semaphores`),
    so that what a killed run leaves in ``/dev/shm`` is removed by its janitor or the next run. However the
    pool ends (done, Ctrl-C, an error, the generator closed), its workers get SIGTERM, perhaps between a
    temporary file and its rename; once they are gone, their temporary files are removed.
    """
    workers = min(workers, len(tasks))
    if workers <= 1:
        yield from (convert_one(task, settings) for task in tasks)
        return
    name_semaphores()
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(16, len(tasks) // (workers * 8)))
    pool = context.Pool(workers, initializer=_worker, initargs=(os.getpid(),))
    try:
        yield from pool.imap_unordered(functools.partial(convert_one, settings=settings), tasks, chunksize=chunksize)
    finally:
        with interrupts_held_off():
            pool.terminate()  # returns once its workers are gone
            for folder in {path.parent for task in tasks for path in (task.image_path, task.label_path)}:
                remove_stale_temp_files(folder)


def _remove_unplanned(out: Path, tasks: Iterable[Task], splits: tuple[str, ...]) -> None:
    """Delete images and labels left from earlier runs that this plan does not write there."""
    planned = {p for task in tasks for p in (task.image_path, task.label_path)}
    for split in splits:
        for folder, suffix in (("images", ".png"), ("labels", ".txt")):
            for path in (out / folder / split).glob(f"*{suffix}"):
                if path not in planned:
                    path.unlink()


def _plan(
    images_dir: Path,
    labels_csv: Path,
    out: Path,
    class_info: Path | None,
    settings: ConvertSettings,
    report: ConvertReport,
) -> tuple[list[Task], dict[str, str]]:
    """Match DICOMs with labels, split patients, and list the work; problems go to ``report``."""
    dicoms, scan_errors = find_dicoms(images_dir)
    if not dicoms:
        raise SettingError(
            "images",
            "holds no usable .dcm file (searched recursively): give the folder of the DICOMs",
            value=images_dir,
        )
    report.errors.extend(scan_errors)
    labels = read_labels(labels_csv)
    classes = read_class_info(class_info) if class_info else {}
    report.errors.extend(
        (str(labels_csv), f"line {p.line}: patient {p.patient_id!r}: {p.problem}") for p in labels.problems
    )
    report.warnings.extend(f"{labels_csv} line {p.line}: patient {p.patient_id}: {p.problem}" for p in labels.dropped)
    report.errors.extend(
        (str(labels_csv), f"patient {pid} has label rows but no DICOM under {images_dir}")
        for pid in sorted(set(labels.boxes) - set(dicoms))
    )
    bad_label_ids = {p.patient_id for p in labels.problems}
    report.errors.extend(
        (str(path), "no label row for this patient in " + str(labels_csv))
        for pid, path in sorted(dicoms.items())
        if pid not in labels.boxes and pid not in bad_label_ids
    )
    usable = sorted(set(dicoms) & set(labels.boxes))
    if not usable:
        raise ConvertError(
            f"no patient has both a DICOM under --images {images_dir} and label rows in --labels {labels_csv}: check that they belong together"
        )
    strata = {pid: classes.get(pid) or f"Target {int(len(labels.boxes[pid]) > 0)}" for pid in usable}
    if settings.folds:
        smallest, size = smallest_stratum(strata)
        if size < settings.folds:  # every fold must hold some patients of every class
            advice = f"use {size} or fewer, or convert without folds" if size >= 2 else "convert without folds"
            raise SettingError(
                "folds",
                f"only {size} patient(s) are {smallest}, so some folds would hold none of them; {advice}",
                value=settings.folds,
            )
        split = {pid: f"fold{fold}" for pid, fold in assign_folds(strata, settings.folds, settings.seed).items()}
    else:
        split = assign_split(strata, settings.val_fraction, settings.seed)
        empty = [name for name in ("train", "val") if name not in split.values()]
        if split and empty and (settings.val_fraction > 0 or empty == ["train"]):
            report.warnings.append(
                f"--val-fraction {settings.val_fraction} leaves the {empty[0]} split empty "
                f"({len(split)} patient(s), all in {'val' if empty[0] == 'train' else 'train'}): "
                "train needs patients in both; choose another --val-fraction"
            )
    dataset = ConvertedDataset(out)
    tasks = [
        Task(
            patient_id=pid,
            dicom=dicoms[pid],
            split=split[pid],
            boxes=labels.boxes[pid],
            image_path=dataset.image_path(split[pid], pid),
            label_path=dataset.label_path(split[pid], pid),
        )
        for pid in usable
    ]
    return tasks, {pid: classes.get(pid, "") for pid in usable}


def _write_tables(out: Path, records: list[dict], classes: dict[str, str], errors: list[tuple[str, str]]) -> None:
    manifest = pd.DataFrame(records, columns=[c for c in MANIFEST_COLUMNS if c != "class"])
    manifest["class"] = manifest["patientId"].map(classes).fillna("")
    manifest["age"] = manifest["age"].astype("Int64")
    manifest = manifest[list(MANIFEST_COLUMNS)].sort_values("patientId", kind="stable")
    atomic_write_text(out / MANIFEST_FILE, manifest.to_csv(index=False, lineterminator="\n"))
    write_errors_csv(out / "errors.csv", sorted(errors))


def convert_rsna(
    images_dir: Path,
    labels_csv: Path,
    out: Path,
    *,
    class_info: Path | None = None,
    settings: ConvertSettings = ConvertSettings(),
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert RSNA DICOMs and labels into a YOLO dataset under ``out`` (see the module docstring).

    Bad inputs (corrupt DICOMs, unusable label rows, unmatched patients, unsafe IDs) are
    listed in the report and ``errors.csv``; everything else is converted. Raises
    :class:`ConvertError` only for problems that stop the whole run.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    images_dir, labels_csv, out = Path(images_dir), Path(labels_csv), Path(out).absolute()
    if not images_dir.is_dir():
        raise SettingError("images", "is not a folder", value=images_dir)
    refuse_inputs_in_outputs(out, {"--images": images_dir, "--labels": labels_csv, "--class-info": class_info})
    report = ConvertReport(out=out)
    clear = must_clear(out, asdict(settings), overwrite)
    tasks, classes = _plan(images_dir, labels_csv, out, class_info, settings, report)
    if clear:
        clear_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SETTINGS_FILE, json.dumps(asdict(settings), indent=2, sort_keys=True) + "\n")
    remove_stale_temp_files(out)
    splits = split_names(settings.folds)
    _remove_unplanned(out, tasks, splits)
    for split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)

    records: list[dict] = []
    task_files = {task.patient_id: task.dicom for task in tasks}
    remove_stale_shared_memory()
    outcomes = run_tasks(tasks, settings, workers or os.cpu_count() or 1)
    try:
        with Janitor([out]):
            try:
                for outcome in tqdm(outcomes, total=len(tasks), desc="convert", unit="img", disable=not progress):
                    report.warnings.extend(outcome.warnings)
                    if outcome.status == "failed":
                        report.errors.append((str(task_files[outcome.patient_id]), outcome.problem))
                        continue
                    records.append(outcome.record)
                    report.converted += outcome.status == "converted"
                    report.skipped += outcome.status == "skipped"
            finally:
                outcomes.close()  # the pool ends here, inside the janitor's watch, wherever an interrupt landed
    except KeyboardInterrupt as stopped:
        done = report.converted + report.skipped
        raise Interrupted(f"{done} of {len(tasks)} images converted into {out}") from stopped
    enlarged = [
        record for record in records if settings.imgsz and max(record["width"], record["height"]) < settings.imgsz
    ]
    if enlarged:
        example = enlarged[0]
        report.warnings.append(
            f"--imgsz {settings.imgsz} enlarged {len(enlarged)} image(s) smaller than it (e.g. {example['patientId']}, "
            f"{example['width']}x{example['height']}): that adds pixels but no detail; RSNA's images are 1024 px"
        )

    _write_tables(out, records, classes, report.errors)
    ConvertedDataset(out).write_yamls(settings.channels, settings.folds)
    report.elapsed_s = time.perf_counter() - started
    return report
