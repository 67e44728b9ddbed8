"""The models of predict: YOLO detectors (each with its flipped pass under TTA), ensembles, and detection over files.

:func:`detect_files` decodes inputs in background processes (:mod:`.inputs`) while the models
run on the previous batch, and yields each image's raw detections in its original pixels. A
whole run, from a folder to the submission CSV, is :mod:`.prediction`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.postprocess import to_original_grid
from ..eval.detections import RawImage
from .inputs import LoadedImage, is_dicom, iterate_batches

RAW_CONF = 0.05
"""Confidence floor of raw detections (the lowest threshold ``tune`` tries by default), unless the
post-processing threshold is lower still."""
MAX_DETECTIONS = 20
"""Boxes kept per image from the model (an RSNA image has at most 4 opacities)."""


class PredictError(RuntimeError):
    """Weights that cannot be loaded, or a device process that failed: nothing can be predicted."""


class Detector:
    """An Ultralytics YOLO model that returns raw ``xyxy`` boxes and scores per image.

    Only a weights file that exists on disk is loaded: ``.pt`` files are pickles, so load
    only weights you trust.
    """

    def __init__(
        self, weights: Path, *, imgsz: int | None = None, device: str | None = None, tta: bool = False, conf: float = RAW_CONF
    ) -> None:
        from .offline import import_ultralytics, resolve_device

        weights = Path(weights)
        if not weights.is_file():
            raise PredictError(f"--weights {weights}: no such file (predict loads only weights files that exist on disk)")
        ultralytics = import_ultralytics()
        try:
            self.model = ultralytics.YOLO(str(weights), task="detect")
        except Exception as error:  # torch and Ultralytics raise many types for a file that is not a checkpoint
            raise PredictError(f"--weights {weights}: cannot be loaded as YOLO weights ({type(error).__name__}: {error})") from None
        train_args = (getattr(self.model, "ckpt", None) or {}).get("train_args", {})
        self.imgsz = int(imgsz or train_args.get("imgsz") or 640)
        self.device = resolve_device(device)
        self.tta = tta
        self.conf = conf
        self.predictor_class = without_cpu_warmup(self.model.task_map[self.model.task]["predictor"])

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        results = self.model.predict(
            images, imgsz=self.imgsz, conf=self.conf, max_det=MAX_DETECTIONS, device=self.device, verbose=False, save=False,
            predictor=self.predictor_class,
        )
        return [(r.boxes.xyxy.cpu().numpy().astype(np.float64), r.boxes.conf.cpu().numpy().astype(np.float64)) for r in results]

    @property
    def members(self) -> int:
        """Box lists per image: the plain pass, and with TTA the flipped one."""
        return 2 if self.tta else 1

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(boxes, scores, member)`` per image, boxes in the image's own pixels; member 1 is the flipped pass, un-flipped."""
        if not images:
            return []
        plain = self._run(images)
        if not self.tta:
            return [(boxes, scores, np.zeros(len(scores), np.int64)) for boxes, scores in plain]
        flipped = self._run([np.ascontiguousarray(image[:, ::-1]) for image in images])
        found = []
        for image, (boxes, scores), (flip_boxes, flip_scores) in zip(images, plain, flipped):
            width = image.shape[1]
            unflipped = np.c_[width - flip_boxes[:, 2], flip_boxes[:, 1], width - flip_boxes[:, 0], flip_boxes[:, 3]]
            member = np.r_[np.zeros(len(scores), np.int64), np.ones(len(flip_scores), np.int64)]
            found.append((np.r_[boxes, unflipped].reshape(-1, 4), np.r_[scores, flip_scores], member))
        return found


def without_cpu_warmup(predictor: type) -> type:
    """A subclass of the Ultralytics predictor class ``predictor`` that skips the warm-up on the CPU.

    There the warm-up of a PyTorch model runs no forward pass: it only imports torchvision, so
    that NMS uses torchvision's kernel rather than Ultralytics' own, which keeps the same boxes.
    That import also imports ``torch._dynamo`` and, with a CUDA build of torch, Triton: about
    150 MB more in the predicting process. Ultralytics' NMS loops in Python over the boxes it
    keeps: as fast at :data:`RAW_CONF`, slower with a far lower ``--conf``, where images keep
    hundreds of candidate boxes. On a GPU the warm-up runs as before. (An image classifier's
    predictor imports torchvision for its transforms anyway, so it is left as it is.)
    """

    class CpuPredictor(predictor):
        def setup_model(self, model: Any, verbose: bool = True) -> None:
            super().setup_model(model, verbose)
            self.done_warmup = self.device.type == "cpu"

    return CpuPredictor


class Ensemble:
    """Detectors (each with its flipped pass under TTA) and image classifiers that see the same decoded images.

    Images are decoded once, at the largest size any detector was trained at; each model
    resizes them to its own. The members of an image are every detector's passes in order; its
    probability of opacity is the classifiers' mean (NaN without one).
    """

    def __init__(self, detectors: Sequence[Detector], classifiers: Sequence = ()) -> None:
        self.detectors, self.classifiers = list(detectors), list(classifiers)
        self.imgsz = max(detector.imgsz for detector in self.detectors)
        self.members = sum(detector.members for detector in self.detectors)

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every detector's ``(boxes, scores, member)`` per image, the members numbered across detectors."""
        found = [([], [], []) for _ in images]
        offset = 0
        for detector in self.detectors:
            for (boxes, scores, member), (all_boxes, all_scores, all_members) in zip(detector.detect(images), found):
                all_boxes.append(boxes)
                all_scores.append(scores)
                all_members.append(member + offset)
            offset += detector.members
        return [(np.concatenate(b).reshape(-1, 4), np.concatenate(s), np.concatenate(m)) for b, s, m in found]

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
    device: str | None = None,
    tta: bool = False,
    conf: float = RAW_CONF,
) -> Ensemble:
    """Load every detector of ``weights`` (any arch, :func:`.torch_detect.load_detector`) and every image classifier of ``classifiers`` on ``device``."""
    paths = [Path(weights)] if isinstance(weights, (str, Path)) else [Path(path) for path in weights]
    if not paths:
        raise PredictError("give at least one --weights file")
    from .torch_detect import load_detector

    detectors = [load_detector(path, imgsz=imgsz, device=device, tta=tta, conf=conf) for path in paths]
    loaded = []
    if classifiers:
        from .classifier import ImageClassifier

        loaded = [ImageClassifier(path, device=device) for path in classifiers]
    return Ensemble(detectors, loaded)


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
                (boxes, scores, member), p_opacity = next(detections)
                width, height = image.width, image.height
                if original_sizes is not None and not is_dicom(Path(image.path)):
                    width, height = original_sizes.get(image.patient_id, (width, height))
                input_size = (image.pixels.shape[1], image.pixels.shape[0])
                original = to_original_grid(boxes, input_size, (width, height))
                yield image, RawImage(image.patient_id, original, scores, width, height, member, ensemble.members, float(p_opacity))
            bar.update(len(loaded))
