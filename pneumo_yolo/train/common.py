"""What every trainer shares: the result of a run, its errors, the files every run folder holds, and the checks of the options.

A run folder, whatever trained it (:mod:`.yolo` or :mod:`.lightning`)::

    <project>/<name>/weights/best.pt          the model to predict with (YOLO; the Lightning archs: last.pt, the last epoch's)
    <project>/<name>/trained_on.txt           the patients it trained on, which it must never be scored on
    <project>/<name>/rsna_val.json            a detector's RSNA metric on the validation split (:mod:`.validation`)
    <project>/<name>/postprocess_tuned.yaml   the post-processing tuned there
    <project>/<name>/classifier_val.json      instead, a classifier's top-1 accuracy and ROC AUC (:mod:`.classifier`)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write_text
from ..nets import YOLO
from ..runtime.devices import Devices
from ..settings import SettingError

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


ARCH_OPTIONS = {"lr0": float, "weight_decay": float, "seed": int, "workers": int, "exist_ok": bool}
"""The ``overrides`` (``--set``) keys of the non-YOLO archs, with their types."""
OWN_SETTINGS = {
    "data": "data",
    "model": "model",
    "imgsz": "imgsz",
    "epochs": "epochs",
    "batch": "batch",
    "device": "devices",
    "name": "name",
    "project": "project",
    "resume": "resume",
}
"""Ultralytics keys that have a setting of their own (the field named), so ``overrides`` may not give them."""
FIXED_KEYS = frozenset({"mode", "task"})
"""Ultralytics keys that follow the model (a detector, or a classifier such as yolo11n-cls.yaml)."""


class TrainConfigError(ValueError):
    """Training options that cannot work; the message says which and why."""


class TrainingDiverged(RuntimeError):
    """A training step whose loss is not finite; the message names the epoch and the step."""


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How to train, whatever the dataset: built once from the command line (or a pipeline), checked here.

    ``model`` is YOLO's checkpoint or config, or the other archs' backbone or starting weights;
    ``imgsz`` ``None`` takes the dataset's size; ``overrides`` are Ultralytics training arguments
    (YOLO), or the few keys of :data:`ARCH_OPTIONS` (other archs, converted to their types here).
    ``budget_min`` trains for that many minutes instead of ``epochs`` and ``curve_points`` scores
    a learning curve (:mod:`.budget`). A refused setting raises :class:`~pneumo_yolo.settings.SettingError`
    naming its field.

    >>> TrainSettings(arch="unet", overrides={"lr0": "0.01"}).overrides
    {'lr0': 0.01}
    >>> TrainSettings(overrides={"epochs": 3})
    Traceback (most recent call last):
    ...
    pneumo_yolo.settings.SettingError: overrides epochs=3: 'epochs' has a setting of its own: use epochs
    """

    model: str | None = None
    arch: str = YOLO
    imgsz: int | None = None
    epochs: int = DEFAULT_EPOCHS
    batch: int = DEFAULT_BATCH
    devices: Devices = Devices()
    name: str = DEFAULT_NAME
    project: Path = Path("runs")
    resume: bool = False
    online: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    score_val: bool = False
    budget_min: float | None = None
    curve_points: int = 0

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.imgsz is not None:
            check_imgsz(self.imgsz, self.arch, "imgsz")
        if self.epochs < 1:
            raise SettingError("epochs", "must be at least 1", value=self.epochs)
        if self.arch != YOLO and self.batch < 1:
            raise SettingError(
                "batch", f"{self.arch} needs a fixed batch size (AutoBatch is Ultralytics' own)", value=self.batch
            )
        if self.batch < 1 and self.batch != -1:
            raise SettingError("batch", "must be at least 1, or -1 for Ultralytics' AutoBatch", value=self.batch)
        if self.budget_min is not None and (self.budget_min <= 0 or self.resume):
            raise SettingError(
                "budget_min",
                "a budget must be more than 0 minutes, for a new run (not a resumed one)",
                value=self.budget_min,
            )
        if self.curve_points < 0:
            raise SettingError("curve_points", "must be 0 or more", value=self.curve_points)
        overrides = dict(self.overrides)
        object.__setattr__(self, "overrides", overrides if self.arch == YOLO else arch_options(overrides))
        if self.arch == YOLO:
            problems = own_key_problems(overrides)
            if problems:
                raise SettingError("overrides", "; ".join(problems), value=_items(overrides, problems))


def _items(overrides: Mapping[str, Any], problems: list[str]) -> str:
    """The ``key=value`` items that ``problems`` name."""
    return " ".join(f"{key}={value}" for key, value in overrides.items() if any(f"'{key}'" in p for p in problems))


def own_key_problems(keys: Mapping[str, Any] | list[str]) -> list[str]:
    """What is wrong with each Ultralytics key that has a setting of its own, or follows the model."""
    problems = []
    for key in keys:
        if key in OWN_SETTINGS:
            problems.append(f"'{key}' has a setting of its own: use {{field:{OWN_SETTINGS[key]}}}")
        elif key in FIXED_KEYS:
            problems.append(
                f"'{key}' cannot be changed (it follows the model: a detector, or a classifier such as yolo11n-cls.yaml)"
            )
    return problems


def arch_options(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The ``overrides`` the non-YOLO archs take, type-checked; anything else is refused by name.

    >>> arch_options({"lr0": "0.01", "seed": 3})
    {'lr0': 0.01, 'seed': 3}
    """
    unknown = sorted(set(overrides) - set(ARCH_OPTIONS))
    if unknown:
        raise SettingError(
            "overrides", f"not an option of this arch (it takes {', '.join(ARCH_OPTIONS)})", value=", ".join(unknown)
        )
    try:
        return {key: ARCH_OPTIONS[key](value) for key, value in overrides.items()}
    except (TypeError, ValueError) as error:
        given = " ".join(f"{key}={value}" for key, value in overrides.items())
        raise SettingError("overrides", f"holds a value of the wrong type ({error})", value=given) from error


def check_imgsz(imgsz: int, arch: str, field: str) -> None:
    """Refuse a training size Ultralytics or the arch would only fail on later; ``field`` names where it came from."""
    if imgsz < 32:
        raise SettingError(field, "must be at least 32 (a multiple of 32)", value=imgsz)
    if arch != YOLO and imgsz % 32:
        raise SettingError(field, f"{arch} needs a multiple of 32", value=imgsz)


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run left its outputs, its validation figures and (when scored) its RSNA or classifier scores."""

    run_dir: Path
    best: Path
    """The weights to predict with: the best epoch's (``best.pt``), or the last epoch's (``last.pt``) where no epoch is picked."""
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
        named = "Best weights" if self.best.name == "best.pt" else "Weights (last epoch)"
        line = f"{named}: {self.best}" + (f" | val {figures}" if figures else "")
        if self.rsna_val is None:
            return line
        default, tuned = self.rsna_val["default"]["score"], self.rsna_val["tuned"]["score"]
        return (
            f"{line} | RSNA val score {score_text(default)} (default post-processing), "
            f"{score_text(tuned)} (tuned: {self.rsna_val['tuned']['postprocess_yaml']}) | {self.run_dir / VAL_JSON}"
        )


def score_text(score: float | None) -> str:
    """A score to 4 decimals, or ``n/a`` where none was scored (never ``0.0000``, which would be a real score).

    >>> score_text(0.51234), score_text(None), score_text(0.0)
    ('0.5123', 'n/a', '0.0000')
    """
    return "n/a" if score is None else f"{score:.4f}"


def write_trained_on(run_dir: Path, dataset: ConvertedDataset) -> None:
    """``trained_on.txt``: the patients of ``dataset``'s training part."""
    atomic_write_text(Path(run_dir) / TRAINED_ON, "".join(f"{path.stem}\n" for path in dataset.listed("train")))


def check_run_name(name: str) -> str:
    """A run name must be one plain folder name, so the run stays inside the project folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise SettingError("name", "use letters, digits, '.', '_' or '-' (one folder name)", value=repr(name))
    return name
