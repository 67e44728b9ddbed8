"""The dataset folder that ``convert`` writes, and everything the later stages read from it.

::

    <root>/data.yaml                           what Ultralytics reads (``path`` is <root>)
    <root>/images/{train,val}/<patientId>.png  8-bit grayscale, longest side ``imgsz``
    <root>/labels/{train,val}/<patientId>.txt  ``0 cx cy w h`` per box, normalised; empty: no box
    <root>/manifest.csv                        one row per patient: split, original size, class...
    <root>/.pneumo_yolo_convert.json           the conversion settings

With ``--folds K`` every image is still written once, in the folder of its fold
(``images/fold0`` … ``images/fold{K-1}``); fold ``i`` is then a pair of image lists,
``folds/fold{i}/train.txt`` (every other fold) and ``folds/fold{i}/val.txt``, named by
``data_fold{i}.yaml``. ``data.yaml`` is ``data_fold0.yaml``'s twin, so that every command
that takes a dataset works on a fold dataset too.

The folder can be moved: the YAMLs it is written with name no ``path`` (Ultralytics then takes
the YAML's own folder), and the lists name their images relative to themselves (``./../../images/…``,
Ultralytics' rule for list files). A YAML of an older ``convert`` names an absolute ``path``; once
that folder is gone, :meth:`ConvertedDataset.from_yaml` says how to rewrite it.

:class:`ConvertedDataset` is the one place that knows this layout and the one reader of a
dataset YAML (:meth:`ConvertedDataset.from_yaml`, read once and passed on); ``converters/rsna.py``
writes it, and ``train``, its validation scoring, ``evaluate`` and ``tune`` read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from ..boxes import yolo_to_ltwh
from ..files import atomic_write_text
from ..limits import InputSizeError, read_yaml
from .labels import LabelFileError, read_csv_table

SPLITS = ("train", "val")
CLASS_NAMES = {0: "opacity"}
DATA_YAML = "data.yaml"
SETTINGS_FILE = ".pneumo_yolo_convert.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("patientId", "split", "width", "height", "n_boxes", "class", "view_position", "sex", "age")
"""The columns ``convert`` writes; readers need only the first four (:data:`MANIFEST_SIZE_COLUMNS`)."""
MANIFEST_SIZE_COLUMNS = MANIFEST_COLUMNS[:4]


class DatasetError(ValueError):
    """A dataset YAML that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class ConvertedDataset:
    """A dataset folder written by ``convert``: its layout, settings, image sizes and ground truth.

    Opened from a dataset YAML (:meth:`from_yaml`), it also knows which images that YAML lists
    for training and validation (:meth:`listed`): ``data.yaml``, or one fold's ``data_fold<i>.yaml``.

    >>> ConvertedDataset(Path("/data/rsna")).label_path("val", "p-1")
    PosixPath('/data/rsna/labels/val/p-1.txt')
    """

    root: Path
    yaml: Path | None = None
    """The dataset YAML it was opened from; ``None``: the folder alone."""
    parts: Mapping[str, str] = field(default_factory=dict, compare=False)
    """What the YAML names for ``train`` and ``val``: a folder of PNGs or a list file, relative to :attr:`root`."""

    @classmethod
    def from_yaml(cls, data_yaml: Path) -> ConvertedDataset:
        """Read a dataset YAML once: the dataset it names in ``path`` (else the YAML's own folder) and its parts.

        Raises :class:`DatasetError` for a missing or unreadable file, one without ``train`` and
        ``val``, or a ``path`` that does not exist (a moved dataset: the message says what to
        rewrite). Whether its parts hold images is :meth:`check_parts`.
        """
        path = Path(data_yaml).expanduser().resolve()
        if not path.is_file():
            raise DatasetError(f"{path}: dataset YAML not found (make one with `pneumo-yolo convert`)")
        try:
            content = read_yaml(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, InputSizeError) as error:
            raise DatasetError(f"{path}: cannot read the dataset YAML ({error})") from error
        if not isinstance(content, dict) or not set(SPLITS) <= content.keys():
            raise DatasetError(f"{path}: not a YOLO dataset YAML (needs 'train' and 'val' entries)")
        root = Path(content.get("path") or path.parent)
        if not root.is_dir():
            raise DatasetError(
                f"{path}: its path {root} does not exist (was the dataset folder moved?). Rerun the same `pneumo-yolo convert` "
                f"with --out {path.parent}: it keeps the converted images and rewrites the YAMLs and fold lists so that the folder can move"
            )
        return cls(root, path, {part: str(content[part]) for part in SPLITS})

    def check_parts(self) -> None:
        """Raise :class:`DatasetError` unless the YAML's ``train`` and ``val`` parts both exist and hold images (before training on them)."""
        for part in SPLITS:
            if not self.listed(part):
                raise DatasetError(
                    f"{self.yaml}: its {part} part, {self.parts[part]}, holds no image, so there is nothing to "
                    f"{'train' if part == 'train' else 'validate'} on (convert again with a --val-fraction above 0, or fewer --folds)"
                )

    def listed(self, part: str) -> list[Path]:
        """The PNGs that the YAML names for ``part`` (``train`` or ``val``): a folder of them, or a list file.

        A list file's lines starting with ``./`` are relative to its own folder, as Ultralytics reads them.
        Raises :class:`DatasetError` for a part that does not exist, or a listed image that does not.
        """
        if self.yaml is None:
            raise DatasetError(f"{self.root}: open the dataset from its YAML to know what it lists for {part}")
        entry = self.root / self.parts[part]
        if entry.is_dir():
            return sorted(entry.glob("*.png"))
        if not entry.is_file():
            raise DatasetError(f"{self.yaml}: its {part} part, {entry}, does not exist (convert the dataset again)")
        images = [
            entry.parent / line[2:] if line.startswith("./") else Path(line)
            for line in entry.read_text().splitlines()
            if line.strip()
        ]
        missing = [image for image in images if not image.is_file()]
        if missing:
            raise DatasetError(
                f"{entry}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]} (was the dataset folder moved?). "
                f"Rerun the same `pneumo-yolo convert` with --out {self.root}: it keeps the images and rewrites the lists"
            )
        return images

    def fold(self, fold: int) -> ConvertedDataset:
        """The same dataset opened from fold ``fold``'s YAML."""
        return ConvertedDataset.from_yaml(self.fold_yaml(fold))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @cached_property
    def settings(self) -> dict:
        """The conversion settings (empty: not written by ``convert``)."""
        return json.loads(self.settings_file.read_text()) if self.settings_file.is_file() else {}

    @property
    def imgsz(self) -> int | None:
        """The ``--imgsz`` it was converted at (``None``: original size, or not written by ``convert``)."""
        return self.settings.get("imgsz")

    @property
    def folds(self) -> int | None:
        """K of ``convert --folds K`` (``None``: a plain train/val split)."""
        return self.settings.get("folds")

    def image_path(self, split: str, patient_id: str) -> Path:
        return self.root / "images" / split / f"{patient_id}.png"

    def label_path(self, split: str, patient_id: str) -> Path:
        return self.root / "labels" / split / f"{patient_id}.txt"

    def images(self, split: str) -> list[Path]:
        """The PNGs of ``split`` (``train``, ``val`` or ``fold<i>``), sorted."""
        return sorted((self.root / "images" / split).glob("*.png"))

    def fold_yaml(self, fold: int) -> Path:
        return self.root / f"data_fold{fold}.yaml"

    def fold_list(self, fold: int, part: str) -> Path:
        """``folds/fold<i>/train.txt`` or ``val.txt``: PNG paths relative to the list (``./../../images/fold<k>/<id>.png``), one per line."""
        return self.root / "folds" / f"fold{fold}" / f"{part}.txt"

    def write_yamls(self, channels: int, folds: int | None) -> None:
        """Write ``data.yaml`` and, with ``folds``, each fold's image lists and ``data_fold<i>.yaml``."""
        if not folds:
            atomic_write_text(self.root / DATA_YAML, data_yaml_text("images/train", "images/val", channels))
            return
        for fold in range(folds):
            for part, members in (("train", [f for f in range(folds) if f != fold]), ("val", [fold])):
                listing = self.fold_list(fold, part)
                paths = [
                    Path(os.path.relpath(path, listing.parent)).as_posix()
                    for member in members
                    for path in self.images(f"fold{member}")
                ]
                atomic_write_text(listing, "".join(f"./{path}\n" for path in paths))
            text = data_yaml_text(
                self.fold_list(fold, "train").relative_to(self.root).as_posix(),
                self.fold_list(fold, "val").relative_to(self.root).as_posix(),
                channels,
            )
            atomic_write_text(self.fold_yaml(fold), text)
            if fold == 0:
                atomic_write_text(self.root / DATA_YAML, text)

    def original_sizes(self, images: list[Path]) -> dict[str, tuple[float, float]]:
        """``(W, H)`` of each image's original DICOM from the manifest; an image it does not list keeps its PNG size."""
        sizes = read_manifest(self.manifest) if self.manifest.is_file() else {}
        for path in images:
            if path.stem not in sizes:
                picture = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if picture is None:
                    raise DatasetError(f"{path}: cannot be read as an image")
                height, width = picture.shape
                sizes[path.stem] = (width, height)
        return sizes

    @staticmethod
    def ground_truth(images: list[Path], sizes: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
        """``ltwh`` boxes in original pixels of each PNG's label file (Ultralytics' rule: ``images/`` → ``labels/``)."""
        truth = {}
        for image in images:
            label = label_path_of(image)
            if label.is_file():
                width, height = sizes[image.stem]
                rows = np.array(label.read_text().split(), dtype=np.float64).reshape(-1, 5)
                truth[image.stem] = yolo_to_ltwh(rows[:, 1:], width, height)
        return truth


def label_path_of(image: Path) -> Path:
    """The label file of a dataset PNG, found as Ultralytics finds it.

    >>> label_path_of(Path("/d/images/fold2/p-1.png"))
    PosixPath('/d/labels/fold2/p-1.txt')
    """
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:index], "labels", *parts[index + 1 :]).with_suffix(".txt")


def data_yaml_text(train: str, val: str, channels: int) -> str:
    """A ``data.yaml`` that Ultralytics reads, without ``path``: Ultralytics then takes the YAML's own folder, so the dataset can move.

    (A relative ``path`` would not do: Ultralytics resolves it against the working folder or its own datasets folder.)
    """
    data = {"train": train, "val": val, "names": CLASS_NAMES, "channels": channels}
    header = (
        "# Written by `pneumo-yolo convert`. Template and field notes: data.yaml at the repository root.\n"
        "# No `path`: the dataset is this file's folder, wherever it is moved.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)


def split_names(folds: int | None) -> tuple[str, ...]:
    """The image folders of a dataset: ``train``/``val``, or one per fold.

    >>> split_names(None), split_names(3)
    (('train', 'val'), ('fold0', 'fold1', 'fold2'))
    """
    return tuple(f"fold{fold}" for fold in range(folds)) if folds else SPLITS


def read_manifest(path: Path, split: str | None = None) -> dict[str, tuple[float, float]]:
    """``{patientId: (width, height)}`` of a ``manifest.csv``, only ``split`` when given.

    Raises :class:`~pneumo_yolo.data.labels.LabelFileError` for a missing column, an unknown
    split or a size that is not a positive number.
    """
    path = Path(path)
    table = read_csv_table(path, MANIFEST_SIZE_COLUMNS)
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
