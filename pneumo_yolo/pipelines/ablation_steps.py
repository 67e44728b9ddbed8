"""The ablation's expensive steps, each reused on a rerun when it finished with the same settings.

A training run or a raw detections table is reused when the settings it was made with,
recorded beside it (``.pneumo_yolo_ablation.json`` in a run folder, ``<table>.json`` beside a
table: the model, its sizes, epochs and seed, the digest of the patients it trained on or
predicted, and the fingerprints of the models it predicted with), equal this run's, and it
finished: a run folder holds ``trained_on.txt``, which training writes last, and a table is
renamed into place only once complete, its record written after it. Anything else is made
again from scratch, so an interrupted run is simply run again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import ConvertedDataset
from ..eval.detections import RawDetections, read_raw
from ..files import atomic_write_text

if TYPE_CHECKING:
    from ..train.common import TrainSettings

RUN_RECORD = ".pneumo_yolo_ablation.json"
TRAIN_OVERRIDES: Mapping[str, Any] = {"exist_ok": True, "val": False, "plots": False, "deterministic": True}
"""Ultralytics arguments of every ablation training: no validation between epochs (the last epoch's
weights are kept, so no epoch is chosen on the out-of-fold images that tuning uses later), no plots."""


def digest(value: Any) -> str:
    """A short, stable fingerprint of a JSON-able value.

    >>> digest({"b": 1, "a": [2]}) == digest({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def ids_digest(patient_ids: Iterable[str]) -> str:
    """The fingerprint of a set of patients, whatever their order."""
    return digest(sorted(patient_ids))


def _record_matches(path: Path, settings: Mapping[str, Any]) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(settings))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class TrainedModel:
    """A finished training run: its weights, folder and the fingerprint of what made it."""

    best: Path
    run_dir: Path
    fingerprint: str


def train_models(
    dataset: ConvertedDataset, folds: Sequence[int], settings: TrainSettings, *, log: Callable[[str], None]
) -> list[TrainedModel]:
    """One model per fold of ``dataset`` in ``<project>/<name>-fold<i>``; finished runs of the same settings are reused.

    ``settings`` (their ``overrides`` hold :data:`TRAIN_OVERRIDES` and the seed) train each
    fold; several devices train several folds at once.
    """
    from ..train.common import TRAINED_ON
    from ..train.folds import fold_name, train_folds

    trained, todo = [], []
    for fold in folds:
        run_dir = settings.project / fold_name(settings.name, fold)
        trained_on = [path.stem for path in dataset.fold(fold).listed("train")]
        record_settings = {
            "model": settings.model,
            "imgsz": settings.imgsz,
            "batch": settings.batch,
            "epochs": settings.epochs,
            "overrides": dict(settings.overrides),
            "trained_on": ids_digest(trained_on),
        }
        record = run_dir / RUN_RECORD
        weights = run_dir / "weights" / "best.pt"
        if _record_matches(record, record_settings) and (run_dir / TRAINED_ON).is_file() and weights.is_file():
            log(f"      fold {fold}: reusing {run_dir} (finished with the same settings)")
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            atomic_write_text(record, json.dumps(record_settings, indent=2, sort_keys=True) + "\n")
            todo.append(fold)
        trained.append(TrainedModel(weights, run_dir, digest(record_settings)))
    if todo:
        train_folds(dataset, settings, folds=todo, log=log)
    return trained


def predicted_table(
    table: Path, settings: Mapping[str, Any], predict: Callable[[], None], log: Callable[[str], None]
) -> RawDetections:
    """The raw table ``table``: reused when its record says it was made with ``settings``, else made by ``predict()``."""
    record = table.with_suffix(".json")
    if _record_matches(record, settings) and table.is_file():
        log(f"      reusing {table.name} (predicted with the same models and images)")
        return read_raw(table)
    record.unlink(missing_ok=True)
    predict()
    atomic_write_text(record, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return read_raw(table)
