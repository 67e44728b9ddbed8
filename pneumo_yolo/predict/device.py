"""The work of one device: decode, detect, post-process and write the raw table and DICOM results of some inputs.

:func:`predict_paths` is the whole of a single-device run, and the work of each process of a
multi-device one (:mod:`.shards`). What it returns, :class:`DeviceOutput`, is joined by the
caller into one submission.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..dicom.results import DicomResultsError, ResultsWriter
from ..eval.detections import RawWriter
from ..eval.postprocess import PostprocessConfig, postprocess_image
from ..eval.submission import parse_prediction_string, prediction_string
from ..nets.detector import RAW_CONF
from ..runtime.devices import Devices, auto_batch, auto_workers, cpu_count
from ..runtime.memory import check_predict_memory
from ..runtime.offline import import_ultralytics
from .ensemble import detect_files, load_ensemble


class PredictError(RuntimeError):
    """A run that cannot predict: inputs it cannot take, or a device process that failed."""


@dataclass(frozen=True)
class PredictSettings:
    """How to predict, whatever the inputs and the device: sent as is to every device process."""

    weights: Path | Sequence[Path]
    classifiers: Sequence[Path] = ()
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


def predict_paths(
    paths: list[Path], settings: PredictSettings, device: str | None, raw: Path | None = None
) -> DeviceOutput:
    """Predict ``paths`` on one device, writing their raw detections to ``raw`` and their DICOM results to ``settings.dicom_out``.

    A file whose patientId an earlier file of ``paths`` already gave is a problem. The batch is
    at most the number of ``paths``. Once the models are loaded, and before any image is decoded
    or any buffer sized from the batch, a batch that cannot fit in the memory the device has free
    raises :class:`~pneumo_yolo.runtime.memory.ResourceError`.
    """
    import_ultralytics()  # before torch: resolving the device imports it
    device = Devices.parse(device).resolve().first
    workers = auto_workers(cpu_count(), [device]) if settings.workers is None else settings.workers
    batch = min(auto_batch(device) if settings.batch is None else settings.batch, max(1, len(paths)))
    ensemble = load_ensemble(
        settings.weights,
        settings.classifiers,
        imgsz=settings.imgsz,
        device=device,
        tta=settings.tta,
        conf=min(RAW_CONF, settings.config.conf),
    )
    check_predict_memory(batch, workers, ensemble.imgsz, device)
    found = DeviceOutput(workers=workers, batch=batch, loaded_at=time.time())
    results = ResultsWriter(Path(settings.dicom_out)) if settings.dicom_out else None
    with RawWriter(raw) if raw else contextlib.nullcontext() as raw_writer:
        detections = detect_files(
            ensemble,
            paths,
            batch=batch,
            workers=workers,
            original_sizes=settings.original_sizes,
            progress=settings.progress,
        )
        for image, detected in detections:
            if detected is None:
                found.errors.append((image.path, image.problem))
            elif detected.patient_id in found.strings:
                found.errors.append((image.path, f"duplicate patientId {detected.patient_id}"))
            else:
                if raw_writer:
                    raw_writer.add(detected)
                boxes, scores = postprocess_image(detected, settings.config)
                found.strings[detected.patient_id] = prediction_string(boxes, scores)
                found.sizes[detected.patient_id] = (detected.width, detected.height)
                if results:
                    try:
                        results.write(Path(image.path), parse_prediction_string(found.strings[detected.patient_id]))
                    except DicomResultsError as error:
                        found.errors.append((image.path, error.problem))
    return found
