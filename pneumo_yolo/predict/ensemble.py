"""The models of a prediction run, and detection over files.

An :class:`Ensemble` holds detectors of any family (each with its flipped pass under TTA) and
image classifiers that see the same decoded images. :func:`detect_files` decodes inputs in
background processes (:mod:`.decoding`) while the models run on the previous batch, and yields
each image's raw detections in its original pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..eval.detections import RawImage
from ..eval.postprocess import to_original_grid
from ..nets.classifier import ImageClassifier
from ..nets.detector import RAW_CONF, Detector, DetectorError
from ..nets.load import load_detector
from ..runtime.devices import Devices
from .decoding import LoadedImage, is_dicom, iterate_batches


class Ensemble:
    """Detectors (each with its flipped pass under TTA) and image classifiers that see the same decoded images.

    Images are decoded once, at the largest size any detector was trained at; each model
    resizes them to its own. Every detector makes the same passes (one, or two under TTA), so a
    box is known by its model and its pass. An image's probability of opacity is the
    classifiers' mean (NaN without one).
    """

    def __init__(self, detectors: Sequence[Detector], classifiers: Sequence[ImageClassifier] = ()) -> None:
        self.detectors, self.classifiers = list(detectors), list(classifiers)
        self.imgsz = max(detector.imgsz for detector in self.detectors)
        self.passes = max(detector.passes for detector in self.detectors)

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Every detector's ``(boxes, scores, model, pass)`` per image: which detector found each box, and in which of its passes."""
        found: list[tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = [
            ([], [], [], []) for _ in images
        ]
        for model, detector in enumerate(self.detectors):
            for (boxes, scores, pass_index), (all_boxes, all_scores, all_models, all_passes) in zip(
                detector.detect(images), found
            ):
                all_boxes.append(boxes)
                all_scores.append(scores)
                all_models.append(np.full(len(scores), model, np.int64))
                all_passes.append(pass_index)
        return [
            (np.concatenate(b).reshape(-1, 4), np.concatenate(s), np.concatenate(m), np.concatenate(p))
            for b, s, m, p in found
        ]

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """P(opacity) per image: the classifiers' mean, NaN without classifiers."""
        if not self.classifiers or not images:
            return np.full(len(images), np.nan)
        return np.mean([classifier.probabilities(images) for classifier in self.classifiers], axis=0)


def load_ensemble(
    weights: Path | Sequence[Path],
    classifiers: Sequence[Path] = (),
    *,
    imgsz: int | None = None,
    device: Devices = Devices(),
    tta: bool = False,
    conf: float = RAW_CONF,
) -> Ensemble:
    """Load every detector of ``weights`` (any arch: :func:`~pneumo_yolo.nets.load.load_detector`) and every image classifier of ``classifiers`` on ``device``."""
    paths = [Path(weights)] if isinstance(weights, (str, Path)) else [Path(path) for path in weights]
    if not paths:
        raise DetectorError("give at least one --weights file")
    device = device.resolve()  # once for every model
    detectors = [load_detector(path, imgsz=imgsz, device=device, tta=tta, conf=conf) for path in paths]
    return Ensemble(detectors, [ImageClassifier(path, device=device) for path in classifiers])


def detect_files(
    ensemble: Ensemble,
    paths: list[Path],
    *,
    batch: int = 32,
    workers: int = 1,
    original_sizes: Mapping[str, tuple[float, float]] | None = None,
    progress: bool = True,
) -> Iterator[tuple[LoadedImage, RawImage | None]]:
    """Detect on every file, yielding each input with its raw detections in original pixels.

    An unreadable file is yielded with ``None``. ``original_sizes`` maps a patientId to the
    ``(W, H)`` grid its boxes belong to when a picture was resized (converted PNGs); a DICOM
    always maps to its own grid.
    """
    from tqdm import tqdm

    with tqdm(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
        for loaded in iterate_batches(paths, ensemble.imgsz, batch, workers):
            good = [image.pixels for image in loaded if image.pixels is not None]
            detections = iter(zip(ensemble.detect(good), ensemble.probabilities(good)))
            for image in loaded:
                if image.pixels is None:
                    yield image, None
                    continue
                (boxes, scores, model, pass_index), p_opacity = next(detections)
                width: float = image.width
                height: float = image.height
                if original_sizes is not None and not is_dicom(Path(image.path)):
                    width, height = original_sizes.get(image.patient_id, (width, height))
                input_size = (image.pixels.shape[1], image.pixels.shape[0])
                original = to_original_grid(boxes, input_size, (width, height))
                yield (
                    image,
                    RawImage(
                        image.patient_id,
                        original,
                        scores,
                        width,
                        height,
                        model,
                        pass_index,
                        len(ensemble.detectors),
                        ensemble.passes,
                        float(p_opacity),
                    ),
                )
            bar.update(len(loaded))
