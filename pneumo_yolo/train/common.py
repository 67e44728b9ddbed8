"""What every trainer shares: the result of a run, its errors, the files every run folder holds, and the checks of the options.

A run folder, whatever trained it (:mod:`.yolo` or :mod:`.lightning`)::

    <project>/<name>/weights/best.pt          the model to predict with
    <project>/<name>/trained_on.txt           the patients it trained on, which it must never be scored on
    <project>/<name>/rsna_val.json            a detector's RSNA metric on the validation split (:mod:`.validation`)
    <project>/<name>/postprocess_tuned.yaml   the post-processing tuned there
    <project>/<name>/classifier_val.json      instead, a classifier's top-1 accuracy and ROC AUC (:mod:`.classifier`)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text

if TYPE_CHECKING:
    from ..data.dataset import ConvertedDataset

DEFAULT_IMGSZ = 1024
DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 16
"""Training images per step (all GPUs together)."""
DEFAULT_NAME = "exp"
TRAINED_ON = "trained_on.txt"
"""In every run folder: the patientIds the model trained on, one per line, which it must never be scored on."""
VAL_JSON = "rsna_val.json"
TUNED_YAML = "postprocess_tuned.yaml"
CLASSIFIER_VAL_JSON = "classifier_val.json"
_METRIC_LABELS = {
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
}


class TrainConfigError(ValueError):
    """Training options that cannot work; the message says which and why."""


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run left its outputs, its validation figures and (when scored) its RSNA or classifier scores."""

    run_dir: Path
    best: Path
    dataset: ConvertedDataset
    imgsz: int
    device: str
    metrics: Mapping[str, float]
    rsna_val: Mapping[str, Any] | None = None
    classifier_val: Mapping[str, Any] | None = None

    def final_line(self) -> str:
        """One line naming ``best.pt``, its validation mAP, precision and recall, and its RSNA scores (or its classifier figures)."""
        if self.classifier_val is not None:
            top1, auc = self.classifier_val["top1_accuracy"], self.classifier_val["roc_auc"]
            return (
                f"Best weights: {self.best} | val top-1 accuracy {'n/a' if top1 is None else f'{top1:.3f}'} | "
                f"ROC AUC of P(opacity) {'n/a (one class only)' if auc is None else f'{auc:.3f}'} "
                f"on {self.classifier_val['n_images']} validation images | {self.run_dir / CLASSIFIER_VAL_JSON}"
            )
        figures = " ".join(
            f"{label} {self.metrics[key]:.3f}" for key, label in _METRIC_LABELS.items() if key in self.metrics
        )
        line = f"Best weights: {self.best}" + (f" | val {figures}" if figures else "")
        if self.rsna_val is None:
            return line
        default, tuned = self.rsna_val["default"]["score"], self.rsna_val["tuned"]["score"]
        return (
            f"{line} | RSNA val score {default or 0:.4f} (default post-processing), "
            f"{tuned or 0:.4f} (tuned: {self.rsna_val['tuned']['postprocess_yaml']}) | {self.run_dir / VAL_JSON}"
        )


def write_trained_on(run_dir: Path, dataset: ConvertedDataset) -> None:
    """``trained_on.txt``: the patients of ``dataset``'s training part."""
    atomic_write_text(Path(run_dir) / TRAINED_ON, "".join(f"{path.stem}\n" for path in dataset.listed("train")))


def check_run_name(name: str) -> str:
    """A run name must be one plain folder name, so the run stays inside the project folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise TrainConfigError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (one folder name)")
    return name


def check_sizes(imgsz: int, epochs: int, batch: int, imgsz_from: str = "--imgsz") -> None:
    """Reject sizes Ultralytics would only fail on later; ``imgsz_from`` names where the size came from."""
    if imgsz < 32:
        raise TrainConfigError(f"{imgsz_from} {imgsz}: must be at least 32 (a multiple of 32)")
    if epochs < 1:
        raise TrainConfigError(f"--epochs {epochs}: must be at least 1")
    if batch < 1 and batch != -1:
        raise TrainConfigError(f"--batch {batch}: must be at least 1, or -1 for Ultralytics' AutoBatch")
