"""The ablation's data: a folder in the Kaggle layout, split by patient into test images and the folds.

The folder holds what the RSNA download holds for training::

    DIR/stage_2_train_images/<patientId>.dcm   (searched recursively)
    DIR/stage_2_train_labels.csv
    DIR/stage_2_detailed_class_info.csv        (optional: the strata of the splits)

The split is stratified by class (or by opacity without the class file) and by patient
(:func:`pneumo_yolo.data.split.pick_stratified`), and drawn with a fixed key, so every seed of
``--seeds`` scores the same test images; the folds (``convert --folds K``) change with the seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.labels import LABEL_COLUMNS, label_rows, read_class_info, read_labels
from ..data.split import pick_stratified, smallest_stratum
from ..files import atomic_write_text

TRAIN_IMAGES = "stage_2_train_images"
TRAIN_LABELS = "stage_2_train_labels.csv"
CLASS_INFO = "stage_2_detailed_class_info.csv"
TEST_SPLIT_KEY = 0
"""The key of the test split's order, whatever ``--seeds`` says: every seed scores the same test images."""


class AblationDataError(ValueError):
    """A data folder the ablation cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class KaggleFolder:
    """The usable patients of a folder in the Kaggle layout: each one's DICOM, boxes (``ltwh`` pixels) and stratum."""

    root: Path
    dicoms: Mapping[str, Path]
    boxes: Mapping[str, np.ndarray]
    strata: Mapping[str, str]
    left_out: int
    """Patients with a DICOM or label rows but not both, or with unusable label rows."""

    @classmethod
    def read(cls, root: Path) -> KaggleFolder:
        """Read ``root``'s labels and find its DICOMs; raises :class:`AblationDataError` naming what is missing, and ``LabelFileError`` for an unreadable label file."""
        from converters.rsna import find_dicoms

        root = Path(root).expanduser().absolute()
        images, labels_csv, class_csv = root / TRAIN_IMAGES, root / TRAIN_LABELS, root / CLASS_INFO
        for needed in (images, labels_csv):
            if not needed.exists():
                raise AblationDataError(
                    f"--rsna {root}: {needed.name} not found; expected the Kaggle layout ({TRAIN_IMAGES}/, {TRAIN_LABELS})"
                )
        labels = read_labels(labels_csv)
        classes = read_class_info(class_csv) if class_csv.is_file() else {}
        dicoms, _ = find_dicoms(images)
        usable = sorted(set(dicoms) & set(labels.boxes))
        if not usable:
            raise AblationDataError(
                f"--rsna {root}: no patient has both a DICOM under {TRAIN_IMAGES}/ and label rows in {TRAIN_LABELS}"
            )
        strata = {pid: classes.get(pid) or f"Target {int(len(labels.boxes[pid]) > 0)}" for pid in usable}
        left_out = len(set(dicoms) | set(labels.boxes) | {p.patient_id for p in labels.problems}) - len(usable)
        return cls(
            root, {pid: dicoms[pid] for pid in usable}, {pid: labels.boxes[pid] for pid in usable}, strata, left_out
        )

    @property
    def images(self) -> Path:
        return self.root / TRAIN_IMAGES


def count_of(size: float, of: int, option: str) -> int:
    """A size (``--test-fraction`` or ``--n-test``) as a number of patients out of ``of``: a fraction in ``[0, 1)`` of them (rounded), or a count.

    >>> count_of(0.1, 1000, "--test-fraction"), count_of(600, 1000, "--n-test")
    (100, 600)
    """
    if 0 <= size < 1:
        return round(size * of)
    if size >= 1 and size == int(size) and size < of:
        return int(size)
    raise AblationDataError(f"{option} {size:g}: give a fraction in [0, 1) or a whole number of patients below {of}")


@dataclass(frozen=True)
class Split:
    """Patients of the test images and of the folds, each sorted."""

    test: tuple[str, ...]
    folds: tuple[str, ...]


def split_patients(strata: Mapping[str, str], test_size: float) -> Split:
    """Stratified patient-level split: exactly ``test_size`` of the patients (a fraction, or a count: :func:`count_of`) for the test images.

    >>> split = split_patients({f"p{i}": "x" for i in range(10)}, 0.2)
    >>> len(split.test), len(split.folds)
    (2, 8)
    """
    option = "--test-fraction" if test_size < 1 else "--n-test"
    test = pick_stratified(strata, count_of(test_size, len(strata), option), TEST_SPLIT_KEY)
    if not test or len(test) == len(strata):
        raise AblationDataError(
            f"{option} {test_size:g} leaves no patient for the {'test images' if not test else 'folds'}"
        )
    return Split(tuple(sorted(test)), tuple(sorted(set(strata) - test)))


def check_fold_strata(strata: Mapping[str, str], folds: int) -> None:
    """Refuse ``folds`` folds that some stratum of the fold patients cannot fill (each fold needs one patient of every stratum).

    >>> check_fold_strata({"a": "x", "b": "x", "c": "y"}, 2)
    Traceback (most recent call last):
    ...
    pneumo_yolo.pipelines.ablation_data.AblationDataError: --folds 2: only 1 fold patient(s) are y, so some folds would hold none of them; add patients or hold out fewer test patients
    """
    stratum, count = smallest_stratum(strata)
    if count < folds:
        fix = f"use --folds {count} or fewer" if count >= 2 else "add patients"
        raise AblationDataError(
            f"--folds {folds}: only {count} fold patient(s) are {stratum}, so some folds would hold none of them; {fix} or hold out fewer test patients"
        )


def label_text(patients: Iterable[str], boxes: Mapping[str, np.ndarray]) -> str:
    """``stage_2_train_labels.csv`` text for ``patients``, their boxes written exactly.

    >>> print(label_text(["a", "b"], {"a": np.array([[1.0, 2.0, 30.0, 40.0]]), "b": np.zeros((0, 4))}), end="")
    patientId,x,y,width,height,Target
    a,1.0,2.0,30.0,40.0,1
    b,,,,,0
    """
    lines = [",".join(LABEL_COLUMNS), *(row for pid in patients for row in label_rows(pid, boxes[pid]))]
    return "\n".join(lines) + "\n"


def write_fold_inputs(folder: KaggleFolder, patients: Iterable[str], where: Path) -> tuple[Path, Path, Path]:
    """The folds' patients as a Kaggle folder of their own in ``where``: DICOM symlinks, labels and classes.

    Returns ``(images, labels_csv, class_info_csv)`` for :func:`converters.rsna.convert_rsna`.
    Rewritten on every run (links kept where they already point right), so a rerun after a
    change of split converts exactly the new patients.
    """
    patients = sorted(patients)
    images = Path(where) / TRAIN_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    wanted = {f"{pid}.dcm": folder.dicoms[pid].absolute() for pid in patients}
    for link in images.iterdir():
        if link.name not in wanted or not link.is_symlink() or Path(os.readlink(link)) != wanted[link.name]:
            link.unlink()
    for name, target in wanted.items():
        if not (images / name).is_symlink():
            (images / name).symlink_to(target)
    labels_csv, class_csv = Path(where) / TRAIN_LABELS, Path(where) / CLASS_INFO
    atomic_write_text(labels_csv, label_text(patients, folder.boxes))
    atomic_write_text(class_csv, "patientId,class\n" + "".join(f"{pid},{folder.strata[pid]}\n" for pid in patients))
    return images, labels_csv, class_csv
