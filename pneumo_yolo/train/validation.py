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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data.dataset import ConvertedDataset
from ..eval.detections import RawDetections
from ..eval.tune import tune
from ..files import atomic_write_text
from ..nets.detector import Detector
from ..nets.load import load_detector
from ..predict.ensemble import Ensemble, detect_files
from ..report import REPORT_DIR, Predictions, write_report
from ..runtime.devices import Devices
from .common import DEFAULT_BATCH, TUNED_YAML, VAL_JSON


def validation_detections(
    detector: Detector,
    dataset: ConvertedDataset,
    *,
    batch: int = DEFAULT_BATCH,
    workers: int = 1,
    progress: bool = True,
) -> tuple[RawDetections, dict[str, np.ndarray]]:
    """``detector``'s raw detections on ``dataset``'s validation images, in original pixels, and their ground truth.

    ``workers`` decoding processes (:func:`~pneumo_yolo.predict.ensemble.detect_files`; 0: in this process).
    """
    images = dataset.listed("val")
    if not images:
        raise FileNotFoundError(f"{dataset.yaml}: no validation images to score")
    sizes = dataset.original_sizes(images)
    raw = RawDetections.from_images(
        found
        for _, found in detect_files(
            Ensemble([detector]), images, batch=batch, workers=workers, original_sizes=sizes, progress=progress
        )
        if found
    )
    return raw, dataset.ground_truth(images, sizes)


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
    """Score ``weights`` on ``dataset``'s validation split; write ``rsna_val.json`` and ``postprocess_tuned.yaml`` to ``out_dir``."""
    root = dataset.root
    images = dataset.listed("val")
    raw, truth = validation_detections(
        load_detector(weights, imgsz=imgsz, device=device), dataset, batch=batch, progress=progress
    )
    sizes = dataset.original_sizes(images)
    report = tune(raw, truth)
    title = f"Validation split of {root.name} (best.pt, tuned post-processing)"
    write_report(
        out_dir / REPORT_DIR,
        {p.stem: p for p in images},
        Predictions.from_raw(raw, report.best),
        truth,
        sizes=sizes,
        title=title,
    )
    comment = f"Tuned by `pneumo-yolo train` on {len(raw.patient_ids)} validation images of {root}."
    report.best.to_yaml(out_dir / TUNED_YAML, comment=comment)
    summary = {
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
    atomic_write_text(out_dir / VAL_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
