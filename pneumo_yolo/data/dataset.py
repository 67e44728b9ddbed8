"""The dataset folder that ``convert`` writes, and everything the later stages read from it.

::

    <root>/data.yaml                           what Ultralytics reads (``path`` is <root>)
    <root>/images/{train,val}/<patientId>.png  8-bit grayscale, longest side ``imgsz``
    <root>/labels/{train,val}/<patientId>.txt  ``0 cx cy w h`` per box, normalised; empty: no box
    <root>/manifest.csv                        one row per patient: split, original size, class...
    <root>/.pneumo_yolo_convert.json           the conversion settings

:class:`ConvertedDataset` is the one place that knows this layout; ``converters/rsna.py``
writes it, and ``train``, its validation scoring, ``evaluate`` and ``tune`` read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from ..boxes import yolo_to_ltwh
from .labels import LabelFileError, read_csv_table

SPLITS = ("train", "val")
CLASS_NAMES = {0: "opacity"}
SETTINGS_FILE = ".pneumo_yolo_convert.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("patientId", "split", "width", "height", "n_boxes", "class", "view_position", "sex", "age")
"""The columns ``convert`` writes; readers need only the first four (:data:`MANIFEST_SIZE_COLUMNS`)."""
MANIFEST_SIZE_COLUMNS = MANIFEST_COLUMNS[:4]


@dataclass(frozen=True)
class ConvertedDataset:
    """A dataset folder written by ``convert``: its layout, settings, image sizes and ground truth.

    >>> ConvertedDataset(Path("/data/rsna")).label_path("val", "p-1")
    PosixPath('/data/rsna/labels/val/p-1.txt')
    """

    root: Path

    @classmethod
    def from_yaml(cls, data_yaml: Path) -> ConvertedDataset:
        """The dataset that ``data.yaml`` names in ``path`` (else the YAML's own folder)."""
        data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8")) or {}
        return cls(Path(data.get("path") or Path(data_yaml).parent))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def imgsz(self) -> int | None:
        """The ``--imgsz`` it was converted at (``None``: original size, or not written by ``convert``)."""
        return json.loads(self.settings_file.read_text()).get("imgsz") if self.settings_file.is_file() else None

    def image_path(self, split: str, patient_id: str) -> Path:
        return self.root / "images" / split / f"{patient_id}.png"

    def label_path(self, split: str, patient_id: str) -> Path:
        return self.root / "labels" / split / f"{patient_id}.txt"

    def images(self, split: str) -> list[Path]:
        """The PNGs of ``split``, sorted."""
        return sorted((self.root / "images" / split).glob("*.png"))

    def original_sizes(self, images: list[Path]) -> dict[str, tuple[float, float]]:
        """``(W, H)`` of each image's original DICOM from the manifest; an image it does not list keeps its PNG size."""
        sizes = read_manifest(self.manifest) if self.manifest.is_file() else {}
        for path in images:
            if path.stem not in sizes:
                height, width = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
                sizes[path.stem] = (width, height)
        return sizes

    def ground_truth(self, split: str, sizes: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
        """``ltwh`` boxes in original pixels for each patient of ``sizes`` that has a label file in ``split``."""
        truth = {}
        for pid, (width, height) in sizes.items():
            label = self.label_path(split, pid)
            if label.is_file():
                rows = np.array(label.read_text().split(), dtype=np.float64).reshape(-1, 5)
                truth[pid] = yolo_to_ltwh(rows[:, 1:], width, height)
        return truth


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
