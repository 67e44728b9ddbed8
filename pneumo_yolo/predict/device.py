"""The work of one device: decode, detect, post-process and write the raw table and DICOM results of some inputs.

:func:`predict_paths` is the whole of a single-device run, and the work of each process of a
multi-device one (:mod:`.shards`). What it returns, :class:`DeviceOutput`, is joined by the
caller into one submission. A :class:`Predictor` holds the loaded models, so that a long-lived
caller (``pneumo-yolo listen``) loads them once and predicts batch after batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..boxes import xyxy_to_ltwh
from ..dicom.results import DicomResultsError, ResultsWriter
from ..eval.detections import RawWriter
from ..eval.postprocess import PostprocessConfig, postprocess_image, sort_by_score
from ..eval.submission import prediction_string
from ..nets.detector import RAW_CONF
from ..runtime.devices import Devices, auto_batch, auto_workers, cpu_count
from ..runtime.memory import check_predict_memory
from ..runtime.offline import import_ultralytics
from ..settings import SettingError
from .ensemble import detect_files, load_ensemble


class PredictError(RuntimeError):
    """A run that cannot predict: inputs it cannot take, or a device process that failed."""


@dataclass(frozen=True, kw_only=True)
class PredictSettings:
    """How to predict, whatever the inputs and the device: sent as is to every device process.

    Checked once, here: a :class:`~pneumo_yolo.settings.SettingError` names the field.

    >>> PredictSettings(weights=Path("a.pt"), batch=0)
    Traceback (most recent call last):
    ...
    pneumo_yolo.settings.SettingError: batch 0: must be at least 1
    """

    weights: tuple[Path, ...]
    """One detector, or several (an ensemble); a single path is taken as one."""
    classifiers: tuple[Path, ...] = ()
    config: PostprocessConfig = PostprocessConfig()
    imgsz: int | None = None
    batch: int | None = None
    """Images per model call; ``None``: :func:`~pneumo_yolo.runtime.devices.auto_batch`."""
    tta: bool = False
    workers: int | None = None
    """Decoding processes beside the model; ``None``: :func:`~pneumo_yolo.runtime.devices.auto_workers`."""
    original_sizes: Mapping[str, tuple[float, float]] | None = None
    dicom_out: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        weights = (self.weights,) if isinstance(self.weights, (str, Path)) else self.weights
        object.__setattr__(self, "weights", tuple(Path(path) for path in weights))
        object.__setattr__(self, "classifiers", tuple(Path(path) for path in self.classifiers))
        if not self.weights:
            raise SettingError("weights", "needs at least one detector's weights file")
        if self.batch is not None and self.batch < 1:
            raise SettingError("batch", "must be at least 1", value=self.batch)
        if self.workers is not None and self.workers < 0:
            raise SettingError("workers", "must be 0 or more (0: decode in the predicting process)", value=self.workers)
        if self.imgsz is not None and self.imgsz < 1:
            raise SettingError("imgsz", "must be a positive number of pixels", value=self.imgsz)


@dataclass
class DeviceOutput:
    """What one device made of its inputs: each readable image's PredictionString and original size, and the problems."""

    strings: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 0
    batch: int = 0
    loaded_at: float = 0.0
    """``time.time()`` once the models were loaded."""
    results: dict[str, list[Path]] = field(default_factory=dict)
    """The DICOM results written per patientId (with ``settings.dicom_out``)."""
    elapsed_s: float = 0.0
    """The seconds :meth:`Predictor.predict` took (decoding, models, post-processing, writing)."""


def fingerprint(settings: PredictSettings) -> str:
    """A hash of what decides the boxes: the weights and classifier files' bytes, the post-processing, the size and TTA."""
    hasher = hashlib.sha256()
    weights = [settings.weights] if isinstance(settings.weights, (str, Path)) else list(settings.weights)
    for path in [*weights, *settings.classifiers]:
        with open(path, "rb") as file:
            hasher.update(hashlib.file_digest(file, "sha256").digest())
    hasher.update(json.dumps([asdict(settings.config), settings.imgsz, settings.tta], default=str).encode())
    return hasher.hexdigest()


def result_rows(boxes_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """An image's post-processed boxes as ``(M, 5)`` rows ``conf x y w h``, in descending confidence (as a submission lists them)."""
    boxes, scores = sort_by_score(boxes_xyxy, scores)
    return np.c_[scores, xyxy_to_ltwh(boxes)].reshape(-1, 5)


class Predictor:
    """The models of a run, loaded once on one device, predicting a list of paths per call.

    :func:`predict_paths` is one call; ``pneumo-yolo listen`` keeps one for its whole life.
    """

    def __init__(self, settings: PredictSettings, device: Devices) -> None:
        import_ultralytics()  # before torch: resolving the device imports it
        self.settings = settings
        self.device = device.resolve()
        first = self.device.first
        self.workers = auto_workers(cpu_count(), [first]) if settings.workers is None else settings.workers
        self.batch = auto_batch(first) if settings.batch is None else settings.batch
        self.ensemble = load_ensemble(
            settings.weights,
            settings.classifiers,
            imgsz=settings.imgsz,
            device=self.device,
            tta=settings.tta,
            conf=min(RAW_CONF, settings.config.conf),
        )
        self.loaded_at = time.time()
        self.results = ResultsWriter(Path(settings.dicom_out), fingerprint(settings)) if settings.dicom_out else None

    def check_memory(self, n_images: int) -> None:
        """Raise :class:`~pneumo_yolo.runtime.memory.ResourceError` if a batch of ``n_images`` cannot fit in the device's free memory."""
        check_predict_memory(min(self.batch, max(1, n_images)), self.workers, self.ensemble.imgsz, self.device.first)

    def predict(self, paths: list[Path], raw_writer: RawWriter | None = None) -> DeviceOutput:
        """Predict ``paths``, adding their raw detections to ``raw_writer`` and writing their DICOM results.

        A file whose patientId an earlier file of ``paths`` already gave is a problem.
        """
        started = time.perf_counter()
        found = DeviceOutput(workers=self.workers, batch=self.batch, loaded_at=self.loaded_at)
        detections = detect_files(
            self.ensemble,
            paths,
            batch=self.batch,
            workers=self.workers,
            original_sizes=self.settings.original_sizes,
            progress=self.settings.progress,
        )
        for image, detected in detections:
            if detected is None:
                found.errors.append((image.path, image.problem))
            elif detected.patient_id in found.strings:
                found.errors.append((image.path, f"duplicate patientId {detected.patient_id}"))
            else:
                if raw_writer:
                    raw_writer.add(detected)
                boxes, scores = postprocess_image(detected, self.settings.config)
                found.strings[detected.patient_id] = prediction_string(boxes, scores)
                found.sizes[detected.patient_id] = (detected.width, detected.height)
                if self.results:
                    try:
                        found.results[detected.patient_id] = self.results.write(
                            Path(image.path), result_rows(boxes, scores)
                        )
                    except DicomResultsError as error:
                        found.errors.append((image.path, error.problem))
        found.elapsed_s = time.perf_counter() - started
        return found


def predict_paths(
    paths: list[Path], settings: PredictSettings, device: Devices, raw: Path | None = None
) -> DeviceOutput:
    """Predict ``paths`` on one device, writing their raw detections to ``raw`` and their DICOM results to ``settings.dicom_out``.

    Once the models are loaded, and before any image is decoded, a batch that cannot fit in the
    memory the device has free raises :class:`~pneumo_yolo.runtime.memory.ResourceError`.
    """
    predictor = Predictor(settings, device)
    predictor.check_memory(len(paths))
    with RawWriter(raw) if raw else contextlib.nullcontext() as raw_writer:
        return predictor.predict(paths, raw_writer)
