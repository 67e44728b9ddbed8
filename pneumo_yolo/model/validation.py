"""The RSNA metric on a converted dataset's validation split, for a trained model.

Ground truth comes from the dataset itself (``labels/val/*.txt`` scaled by the original image
sizes in ``manifest.csv``), detections from :mod:`pneumo_yolo.model.predict` on ``images/val``.
The result is scored at the default post-processing and at the configuration that
:func:`pneumo_yolo.eval.tune.tune` finds on the same images (so the tuned figure is optimistic:
confirm it on held-out data).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..boxes import yolo_to_xywh
from ..files import atomic_write_text
from .predict import Detector, detect_files
from ..eval.detections import RawDetections
from ..eval.submission import read_manifest
from ..eval.tune import tune

VAL_JSON = "rsna_val.json"
TUNED_YAML = "postprocess_tuned.yaml"


def dataset_root(data_yaml: Path) -> Path:
    """The dataset folder named by ``data.yaml``'s ``path`` (else the YAML's own folder)."""
    data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8")) or {}
    return Path(data.get("path") or Path(data_yaml).parent)


def converted_imgsz(root: Path) -> int | None:
    """The ``--imgsz`` that ``convert`` wrote ``root`` with (``None``: original size, or not our dataset)."""
    from converters.rsna import SETTINGS_FILE

    settings = root / SETTINGS_FILE
    return json.loads(settings.read_text()).get("imgsz") if settings.is_file() else None


def original_sizes(root: Path, images: list[Path]) -> dict[str, tuple[float, float]]:
    """``(W, H)`` per image from ``manifest.csv``; an image it does not list keeps its PNG size."""
    manifest = root / "manifest.csv"
    sizes = read_manifest(manifest) if manifest.is_file() else {}
    for path in images:
        if path.stem not in sizes:
            height, width = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
            sizes[path.stem] = (width, height)
    return sizes


def ground_truth(root: Path, split: str, sizes: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """``xywh`` boxes in original pixels per image of ``split``, from its YOLO label files."""
    truth = {}
    for pid, (width, height) in sizes.items():
        label = root / "labels" / split / f"{pid}.txt"
        if label.is_file():
            rows = np.array(label.read_text().split(), dtype=np.float64).reshape(-1, 5)
            truth[pid] = yolo_to_xywh(rows[:, 1:], width, height)
    return truth


def score_validation(
    weights: Path,
    data_yaml: Path,
    out_dir: Path,
    *,
    imgsz: int | None = None,
    device: str | None = None,
    batch: int = 16,
    progress: bool = True,
) -> dict:
    """Score ``weights`` on the validation split; write ``rsna_val.json`` and ``postprocess_tuned.yaml`` to ``out_dir``."""
    root = dataset_root(data_yaml)
    images = sorted((root / "images" / "val").glob("*.png"))
    if not images:
        raise FileNotFoundError(f"{root / 'images' / 'val'}: no validation images to score")
    sizes = original_sizes(root, images)
    truth = ground_truth(root, "val", {p.stem: sizes[p.stem] for p in images})
    detector = Detector(weights, imgsz=imgsz, device=device)
    raw = RawDetections.from_images(
        found for _, found in detect_files(detector, images, batch=batch, original_sizes=sizes, progress=progress) if found
    )
    report = tune(raw, truth)
    comment = f"Tuned by `pneumo-yolo train` on {len(raw.patient_ids)} validation images of {root}."
    report.best.to_yaml(out_dir / TUNED_YAML, comment=comment)
    summary = {
        "weights": str(weights),
        "dataset": str(root),
        "split": "val",
        "n_images": report.n_images,
        "default": {"postprocess": asdict(report.base), **report.base_result.to_dict()},
        "tuned": {"postprocess": asdict(report.best), "postprocess_yaml": str(out_dir / TUNED_YAML), **report.best_result.to_dict()},
        "note": "tuned on the same validation images it is scored on: confirm on held-out data",
    }
    atomic_write_text(out_dir / VAL_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
