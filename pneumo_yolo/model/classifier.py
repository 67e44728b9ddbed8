"""The image-level gate: an opacity / no-opacity classifier, trained by ``train`` and giving P(opacity) to ``predict``.

The winners of the challenge multiplied every box score by the image's P(opacity). ``train --model
yolo11n-cls.yaml`` (any model Ultralytics builds for its ``classify`` task) trains such a
classifier on the PNGs of a converted dataset, through the symlinked view of
:mod:`pneumo_yolo.data.classify_view` (class 1 is opacity), and scores it on the validation
images: Ultralytics' top-1 accuracy and our ROC AUC of P(opacity), in ``classifier_val.json``.

**Three input channels, a choice.** Ultralytics 8.4 classifies 3-channel images only:
``check_cls_dataset`` always returns ``channels: 3``, ``ClassificationDataset`` reads every image
as BGR, and its transforms normalise three channels. A model config with ``channels: 1`` builds,
then fails on the first batch ("expected input[16, 3, 256, 256] to have 1 channels"). A 1-channel
classifier needs a subclassed trainer and dataset, and the checkpoint it makes fails in
Ultralytics' own predictor (same error), so it would need our own preprocessing as well. What
it would save, measured for yolo11n-cls at 256 px, batch 16, on this project's shared 2-core CPU
(3 vs 1 channels, medians of two runs of 15 and 25 interleaved repetitions): 0.522 vs 0.512
GFLOPs (1.8 %, the first convolution only); a training step 38.8/47.1 vs 43.6/48.2 ms per image
and inference 11.1/12.8 vs 10.9/12.6 ms per image, within the noise; reading and augmenting an
image 3.3/3.8 vs 1.7/2.0 ms, in the data-loader workers. Whole epochs through Ultralytics'
trainer (64 images) took 20 to 95 s either way: the machine's load drowned any difference. So
the grayscale PNGs are read as three equal channels: under 2 ms more per training image, for
Ultralytics' own, tested pipeline and checkpoints that its ``val`` and ``predict`` take as they are.

Classifier-specific training defaults (:data:`CLASSIFIER_DEFAULTS`) sit between the chest X-ray
defaults and the command line: RandAugment (Ultralytics' default) rotates, shears and solarises,
which radiographs never are, and random erasing can erase the very opacity that makes the label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.classify_view import CLASS_NAMES, has_opacity
from ..data.dataset import ConvertedDataset, listed_images
from ..files import atomic_write_text
from .inputs import load_image

CLASSIFY_TASK = "classify"
CLASSIFIER_VAL_JSON = "classifier_val.json"
CLASSIFIER_DEFAULTS: Mapping[str, Any] = {"auto_augment": None, "erasing": 0.0}
"""Ultralytics' classification augmentations that do not fit radiographs (see the module doc)."""
TOP1_KEY = "metrics/accuracy_top1"
DEFAULT_BATCH = 32
MIN_IMGSZ = 64


def default_classifier_imgsz(dataset_imgsz: int) -> int:
    """The size a classifier trains at unless told: half the dataset's (a multiple of 32, at least 64).

    An opacity covers a good part of a lung, so the image-level question needs fewer pixels than
    the boxes. At the detector's own size, yolo11n-cls added 47–54 % to a 512 px yolo11n's predict
    time on the CPU; at 256 px, 15 % (``bench/ensemble.py``, 1,000 images).

    >>> default_classifier_imgsz(512), default_classifier_imgsz(192), default_classifier_imgsz(64)
    (256, 96, 64)
    """
    return max(MIN_IMGSZ, dataset_imgsz // 2 // 32 * 32)


class ClassifierError(RuntimeError):
    """Weights that cannot serve as the opacity classifier; the message says why."""


class ImageClassifier:
    """An Ultralytics classifier trained by ``train``, giving P(opacity) per grayscale image.

    Only a weights file that exists on disk is loaded: ``.pt`` files are pickles, so load only
    weights you trust.

    Example::

        gate = ImageClassifier(Path("runs/gate/weights/best.pt"))
        p_opacity = gate.probabilities([load_image(path, 512).pixels for path in paths])
    """

    def __init__(self, weights: Path, *, imgsz: int | None = None, device: str | None = None, batch: int = DEFAULT_BATCH) -> None:
        from .offline import import_ultralytics, resolve_device

        weights = Path(weights)
        if not weights.is_file():
            raise ClassifierError(f"{weights}: no such weights file")
        ultralytics = import_ultralytics()
        try:
            self.model = ultralytics.YOLO(str(weights))
        except Exception as error:  # torch and Ultralytics raise many types for a file that is not a checkpoint
            raise ClassifierError(f"{weights}: cannot be loaded as YOLO weights ({type(error).__name__}: {error})") from None
        if self.model.task != CLASSIFY_TASK:
            raise ClassifierError(f"{weights}: a {self.model.task} model, not an image classifier (train one with --model yolo11n-cls.yaml)")
        names = list(self.model.names.values())
        if "opacity" not in names:
            raise ClassifierError(f"{weights}: its classes are {names}, not {list(CLASS_NAMES)}")
        self.opacity = names.index("opacity")
        train_args = (getattr(self.model, "ckpt", None) or {}).get("train_args", {})
        self.imgsz = int(imgsz or train_args.get("imgsz") or 224)
        self.device = resolve_device(device)
        self.batch = max(1, batch)

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(opacity) of each uint8 H×W image, in order, as a float64 array of ``len(images)``."""
        found = np.empty(len(images), dtype=np.float64)
        for start in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(image) for image in images[start : start + self.batch]]
            results = self.model.predict(chunk, imgsz=self.imgsz, device=self.device, verbose=False, save=False)
            found[start : start + len(chunk)] = [float(result.probs.data[self.opacity]) for result in results]
        return found


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance that a positive scores above a negative, ties counting half.

    ``None`` unless ``labels`` hold both classes.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([False, True, True], [0.5, 0.5, 0.9])
    0.75
    >>> roc_auc([1, 0], [0.9, 0.1]), roc_auc([1, 0], [0.1, 0.9]), roc_auc([1, 1], [0.2, 0.9])
    (1.0, 0.0, None)
    """
    positive = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if positive.shape != scores.shape or positive.ndim != 1:
        raise ValueError(f"labels {positive.shape} and scores {scores.shape} must be two lists of the same length")
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if not n_positive or not n_negative:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank of each distinct score, ties averaged
    rank_sum = mean_rank[inverse][positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def score_classifier(
    weights: Path,
    data_yaml: Path,
    out_dir: Path,
    *,
    top1: float | None,
    imgsz: int | None = None,
    device: str | None = None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Score a classifier on the validation images of ``data_yaml``; write ``classifier_val.json`` to ``out_dir``.

    ``top1`` is Ultralytics' validation top-1 accuracy of ``weights``; the ROC AUC of P(opacity)
    is computed here, on the images as :func:`~pneumo_yolo.model.inputs.load_image` decodes them.
    """
    classifier = ImageClassifier(weights, imgsz=imgsz, device=device, batch=batch)
    images = listed_images(data_yaml, "val")
    labels, scores, unreadable = [], [], []
    for start in range(0, len(images), classifier.batch):
        loaded = [(path, load_image(path, None)) for path in images[start : start + classifier.batch]]
        unreadable += [f"{path}: {image.problem}" for path, image in loaded if image.pixels is None]
        readable = [(path, image.pixels) for path, image in loaded if image.pixels is not None]
        scores.extend(classifier.probabilities([pixels for _, pixels in readable]))
        labels.extend(has_opacity(path) for path, _ in readable)
    summary = {
        "weights": str(weights),
        "dataset": str(ConvertedDataset.from_yaml(data_yaml).root),
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


def classifier_line(best: Path, summary: Mapping[str, Any], run_dir: Path) -> str:
    """The last line of a classifier's training: ``best.pt``, its top-1 accuracy and ROC AUC on the validation images."""
    top1, auc = summary["top1_accuracy"], summary["roc_auc"]
    return (
        f"Best weights: {best} | val top-1 accuracy {'n/a' if top1 is None else f'{top1:.3f}'} | "
        f"ROC AUC of P(opacity) {'n/a (one class only)' if auc is None else f'{auc:.3f}'} "
        f"on {summary['n_images']} validation images | {run_dir / CLASSIFIER_VAL_JSON}"
    )
