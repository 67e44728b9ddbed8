"""Training the image-level gate: an opacity / no-opacity classifier on the same PNGs as the detector.

``train --model yolo11n-cls.yaml`` (any model Ultralytics builds for its ``classify`` task) trains
such a classifier on the symlinked view of :mod:`pneumo_yolo.data.classify_view` (class 1 is
opacity), with :data:`CLASSIFIER_DEFAULTS` between the chest X-ray defaults and the command line:
RandAugment (Ultralytics' default) rotates, shears and solarises, which radiographs never are,
and random erasing can erase the very opacity that makes the label. :func:`score_classifier`
then scores it on the validation images: Ultralytics' top-1 accuracy and the ROC AUC of
P(opacity), in ``classifier_val.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.classify_view import CLASS_NAMES, has_opacity
from ..data.dataset import ConvertedDataset
from ..files import atomic_write_text
from ..nets.classifier import PREDICT_BATCH, ImageClassifier
from ..predict.decoding import load_image
from ..runtime.devices import Devices
from .common import CLASSIFIER_VAL_JSON

CLASSIFIER_DEFAULTS: Mapping[str, Any] = {"auto_augment": None, "erasing": 0.0}
"""Ultralytics' classification augmentations that do not fit radiographs (see the module doc)."""
TOP1_KEY = "metrics/accuracy_top1"
MIN_IMGSZ = 64


def default_classifier_imgsz(dataset_imgsz: int) -> int:
    """The size a classifier trains at unless told: half the dataset's (a multiple of 32, at least 64).

    An opacity covers a good part of a lung, so the image-level question needs fewer pixels than
    the boxes, and the gate then costs predict far less (docs/train.md).

    >>> default_classifier_imgsz(512), default_classifier_imgsz(192), default_classifier_imgsz(64)
    (256, 96, 64)
    """
    return max(MIN_IMGSZ, dataset_imgsz // 2 // 32 * 32)


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (torchmetrics' ``binary_auroc``); ``None`` unless ``labels`` hold both classes.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), roc_auc([False, True, True], [0.5, 0.5, 0.9])
    (0.75, 0.75)
    >>> roc_auc([1, 0], [0.9, 0.1]), roc_auc([1, 0], [0.1, 0.9]), roc_auc([1, 1], [0.2, 0.9])
    (1.0, 0.0, None)
    """
    import torch
    from torchmetrics.functional.classification import binary_auroc

    target = torch.as_tensor([bool(label) for label in labels], dtype=torch.long)
    preds = torch.as_tensor(list(scores), dtype=torch.float64)
    if target.shape != preds.shape:
        raise ValueError(
            f"labels {tuple(target.shape)} and scores {tuple(preds.shape)} must be two lists of the same length"
        )
    if target.unique().numel() < 2:
        return None
    return float(binary_auroc(preds, target))


def score_classifier(
    weights: Path,
    dataset: ConvertedDataset,
    out_dir: Path,
    *,
    top1: float | None,
    imgsz: int | None = None,
    device: Devices = Devices(),
    batch: int = PREDICT_BATCH,
) -> dict[str, Any]:
    """Score a classifier on ``dataset``'s validation images; write ``classifier_val.json`` to ``out_dir``.

    ``top1`` is Ultralytics' validation top-1 accuracy of ``weights``; the ROC AUC of P(opacity)
    is computed here, on the images as :func:`~pneumo_yolo.predict.decoding.load_image` decodes them.
    """
    classifier = ImageClassifier(weights, imgsz=imgsz, device=device, batch=batch)
    images = dataset.listed("val")
    labels: list[bool] = []
    scores: list[float] = []
    unreadable: list[str] = []
    for start in range(0, len(images), classifier.batch):
        loaded = [(path, load_image(path, None)) for path in images[start : start + classifier.batch]]
        unreadable += [f"{path}: {image.problem}" for path, image in loaded if image.pixels is None]
        readable = [(path, image.pixels) for path, image in loaded if image.pixels is not None]
        scores.extend(classifier.probabilities([pixels for _, pixels in readable]))
        labels.extend(has_opacity(path) for path, _ in readable)
    summary = {
        "weights": str(weights),
        "dataset": str(dataset.root),
        "split": "val",
        "classes": list(CLASS_NAMES),
        "n_images": len(labels),
        "n_opacity": int(sum(labels)),
        "top1_accuracy": top1,
        "roc_auc": roc_auc(labels, scores),
        "unreadable": unreadable,
    }
    atomic_write_text(Path(out_dir) / CLASSIFIER_VAL_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
