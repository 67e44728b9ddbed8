"""The RSNA metric on a converted dataset's validation split, for a trained model.

Ground truth comes from the dataset itself (``labels/val/*.txt`` scaled by the original image
sizes in ``manifest.csv``), detections from :func:`pneumo_yolo.predict.ensemble.detect_files` on
the validation images.
An HTML report of the tuned predictions (:mod:`pneumo_yolo.report`) goes to ``<run>/report/``.
The result is scored at the default post-processing and at the configuration that
:func:`pneumo_yolo.eval.tune.tune` finds on the same images (so the tuned figure is optimistic:
confirm it on held-out data).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.dataset import ConvertedDataset
from ..eval.detections import RawDetections
from ..eval.tune import TuneReport, tune
from ..files import atomic_write_text
from ..nets.detector import Detector
from ..nets.load import load_detector
from ..predict.ensemble import Ensemble, detect_files
from ..report import REPORT_DIR, Predictions, write_report
from ..runtime.devices import Devices
from .common import DEFAULT_BATCH, TUNED_YAML, VAL_JSON


@dataclass(frozen=True)
class ValidationSplit:
    """A dataset's validation images, their original sizes and their ground truth: listed and read once."""

    images: list[Path]
    sizes: dict[str, tuple[float, float]]
    truth: dict[str, np.ndarray]

    @classmethod
    def of(cls, dataset: ConvertedDataset) -> ValidationSplit:
        images = dataset.listed("val")
        if not images:
            raise FileNotFoundError(f"{dataset.yaml}: no validation images to score")
        sizes = dataset.original_sizes(images)
        return cls(images, sizes, dataset.ground_truth(images, sizes))


def validation_detections(
    detector: Detector,
    split: ValidationSplit,
    *,
    batch: int = DEFAULT_BATCH,
    workers: int = 1,
    progress: bool = True,
) -> RawDetections:
    """``detector``'s raw detections on the images of ``split``, in original pixels.

    ``workers`` decoding processes (:func:`~pneumo_yolo.predict.ensemble.detect_files`; 0: in this process).
    """
    return RawDetections.from_images(
        found
        for _, found in detect_files(
            Ensemble([detector]),
            split.images,
            batch=batch,
            workers=workers,
            original_sizes=split.sizes,
            progress=progress,
        )
        if found
    )


def score_validation(
    weights: Path,
    dataset: ConvertedDataset,
    out_dir: Path,
    *,
    imgsz: int | None = None,
    device: Devices = Devices(),
    batch: int = DEFAULT_BATCH,
    progress: bool = True,
) -> dict:
    """Score ``weights`` on ``dataset``'s validation split, tune there, and write ``rsna_val.json``, ``postprocess_tuned.yaml`` and the report to ``out_dir``."""
    split = ValidationSplit.of(dataset)
    raw = validation_detections(
        load_detector(weights, imgsz=imgsz, device=device), split, batch=batch, progress=progress
    )
    report = tune(raw, split.truth)
    write_validation_report(out_dir, dataset.root, split, Predictions.from_raw(raw, report.best), weights.name)
    comment = f"Tuned by `pneumo-yolo train` on {len(raw.patient_ids)} validation images of {dataset.root}."
    report.best.to_yaml(out_dir / TUNED_YAML, comment=comment)
    summary = validation_summary(weights, dataset.root, out_dir, report)
    atomic_write_text(out_dir / VAL_JSON, json.dumps(summary, indent=2) + "\n")
    return summary


def write_validation_report(
    out_dir: Path, root: Path, split: ValidationSplit, predictions: Predictions, weights_name: str
) -> None:
    """The HTML report of the tuned predictions on the validation split, in ``out_dir/report``."""
    title = f"Validation split of {root.name} ({weights_name}, tuned post-processing)"
    write_report(
        out_dir / REPORT_DIR,
        {p.stem: p for p in split.images},
        predictions,
        split.truth,
        sizes=split.sizes,
        title=title,
    )


def validation_summary(weights: Path, root: Path, out_dir: Path, report: TuneReport) -> dict:
    """What ``rsna_val.json`` holds: the scores at the default and the tuned post-processing."""
    return {
        "weights": str(weights),
        "dataset": str(root),
        "split": "val",
        "n_images": report.n_images,
        "default": {"postprocess": asdict(report.base), **report.base_result.to_dict()},
        "tuned": {
            "postprocess": asdict(report.best),
            "postprocess_yaml": str(out_dir / TUNED_YAML),
            **report.best_result.to_dict(),
        },
        "note": "tuned on the same validation images it is scored on: confirm on held-out data",
    }
