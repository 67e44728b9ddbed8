"""A prediction run: a folder of DICOMs (or PNG/JPEG files) → submission CSV, on one device or several.

Images are decoded by the converter's own reader in background processes while the model
runs on the previous batch (:mod:`.inputs`, :func:`.predict.detect_files`), so decoding hides
behind inference and memory stays flat: only a few batches are ever in flight. Boxes are
mapped back to each image's original pixel grid and post-processed by
:mod:`pneumo_yolo.eval.postprocess`. With several devices, :mod:`.shards` runs
:func:`predict_paths` once per device and joins the results.

Example:
    >>> report = predict_folder(Path("runs/exp/weights/best.pt"), Path("stage_2_test_images"),
    ...                         Path("submission.csv"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..dicom.results import DicomResultsError, ResultsWriter
from ..eval.detections import RawWriter
from ..eval.postprocess import PostprocessConfig, postprocess_image
from ..eval.submission import errors_only, parse_prediction_string, prediction_string, validate_submission, write_submission
from ..files import write_errors_csv
from .devices import auto_batch, auto_workers, devices_of
from .inputs import is_dicom, list_inputs
from .predict import RAW_CONF, PredictError, detect_files, load_ensemble


@dataclass
class PredictReport:
    """What one run wrote, how fast, and which inputs failed."""

    out: Path
    n_rows: int = 0
    """Rows of the submission: the images predicted, plus the expected patients without a usable image."""
    n_images: int = 0
    n_with_boxes: int = 0
    n_not_asked: int = 0
    picture_pixels: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    raw: Path | None = None
    dicom_out: Path | None = None
    workers: int = 0
    """Decoding processes per device."""
    batch: int = 0
    devices: int = 1

    @property
    def images_per_s(self) -> float:
        """Over the whole run, start-up (imports, model loading) included."""
        return self.n_images / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """Once the model is loaded: decoding, inference, post-processing and writing."""
        busy = self.elapsed_s - self.startup_s
        return self.n_images / busy if busy > 0 else 0.0

    @property
    def errors_path(self) -> Path:
        return errors_path_for(self.out)


def errors_path_for(out: Path) -> Path:
    """``submission.csv`` → ``submission.csv.errors.csv``."""
    return out.with_name(out.name + ".errors.csv")


@dataclass(frozen=True)
class PredictSettings:
    """How to predict, whatever the inputs and the device: sent as is to every device process."""

    weights: Path | Sequence[Path]
    classifiers: Sequence[Path] = ()
    config: PostprocessConfig = PostprocessConfig()
    imgsz: int | None = None
    batch: int | None = None
    """Images per model call; ``None``: :func:`~pneumo_yolo.model.devices.auto_batch`."""
    tta: bool = False
    workers: int | None = None
    """Decoding processes beside the model; ``None``: :func:`~pneumo_yolo.model.devices.auto_workers`."""
    original_sizes: Mapping[str, tuple[float, float]] | None = None
    dicom_out: Path | None = None
    progress: bool = True


@dataclass
class Predictions:
    """What the models made of some inputs: each readable image's PredictionString and original size, and the problems."""

    strings: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 0
    batch: int = 0
    loaded_at: float = 0.0
    """``time.time()`` once the models were loaded."""


def predict_paths(paths: list[Path], settings: PredictSettings, device: str | None, raw: Path | None = None) -> Predictions:
    """Predict ``paths`` on one device, writing their raw detections to ``raw`` and their DICOM results to ``settings.dicom_out``.

    The whole work of a single-device run, and of each process of a multi-device one
    (:mod:`pneumo_yolo.model.shards`). A file whose patientId an earlier file of ``paths`` already
    gave is a problem.
    """
    from .offline import cpu_count, import_ultralytics, resolve_device

    if device is None:
        import_ultralytics()  # resolve_device asks torch for a GPU
    device = resolve_device(device)
    workers = auto_workers(cpu_count(), [device]) if settings.workers is None else settings.workers
    batch = auto_batch(device) if settings.batch is None else settings.batch
    ensemble = load_ensemble(
        settings.weights, settings.classifiers, imgsz=settings.imgsz, device=device, tta=settings.tta, conf=min(RAW_CONF, settings.config.conf)
    )
    found = Predictions(workers=workers, batch=batch, loaded_at=time.time())
    results = ResultsWriter(Path(settings.dicom_out)) if settings.dicom_out else None
    with RawWriter(raw) if raw else contextlib.nullcontext() as raw_writer:
        detections = detect_files(
            ensemble, paths, batch=batch, workers=workers, original_sizes=settings.original_sizes, progress=settings.progress
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


def predict_folder(
    weights: Path | Sequence[Path],
    source: Path,
    out: Path,
    *,
    classifiers: Sequence[Path] = (),
    config: PostprocessConfig = PostprocessConfig(),
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    tta: bool = False,
    save_raw: Path | None = None,
    dicom_out: Path | None = None,
    workers: int | None = None,
    expected_ids: Sequence[str] | None = None,
    original_sizes: Mapping[str, tuple[float, float]] | None = None,
    progress: bool = True,
) -> PredictReport:
    """Predict the images under ``source`` and write the submission CSV ``out``.

    ``weights`` is one detector or several (an ensemble: each image is decoded once and every
    model runs on it, each with its flipped pass under ``tta``); ``classifiers`` gate the boxes
    by their mean probability of opacity. The passes are fused, and the gate applied, by the
    post-processing (``config``: ``fusion_iou``, ``gate_alpha``, ``gate_threshold``).

    ``workers`` decoding processes run beside the model, which takes ``batch`` images at a
    time (``None``: :func:`~pneumo_yolo.model.devices.auto_workers` and
    :func:`~pneumo_yolo.model.devices.auto_batch` for the device). Several devices
    (``device="0,1"``, or ``"cpu,cpu"``) split the images between them, one process each
    (:mod:`pneumo_yolo.model.shards`); the outputs are the same as with one device.

    Without ``expected_ids`` every readable image gets a row (an empty PredictionString for
    no box). With them (``--sample``/``--ids``) only those patients are predicted and every one
    gets a row: an unreadable or missing image gets an empty one, and is listed with the other
    problems in the report and in ``<out>.errors.csv``.

    ``original_sizes`` (``--manifest``) maps the boxes found on resized pictures (the PNGs of
    ``convert``) to each original image's ``(W, H)`` grid; a picture it does not list is a
    problem. Without it, boxes on pictures are in the pictures' own pixels. DICOMs always map
    to their own original grid.

    ``save_raw`` also writes the raw detections (original pixels, before post-processing, from
    the lower of ``config.conf`` and :data:`RAW_CONF`) that ``pneumo-yolo tune`` reads. The
    written file is checked by the rules of ``validate-submission`` before this returns.
    ``dicom_out`` (DICOM inputs only) also writes each image's SR and GSPS with the very boxes
    of its CSV row (:mod:`pneumo_yolo.dicom.results`).
    """
    started = time.time()
    paths = list_inputs(Path(source))
    pictures = [path for path in paths if not is_dicom(path)]
    if dicom_out and pictures:
        raise PredictError(f"--dicom-out needs DICOM inputs: {pictures[0]} is not a .dcm file")
    report = PredictReport(out=Path(out), raw=save_raw, dicom_out=dicom_out)
    if expected_ids is not None:
        paths, report.n_not_asked, missing = select_expected(paths, expected_ids)
        report.errors += [(str(Path(source) / pid), "no image for this expected patientId in --source") for pid in missing]
    if original_sizes is not None:
        paths, unlisted = _split_by(paths, lambda path: is_dicom(path) or path.stem in original_sizes)
        report.errors += [(str(path), "not in --manifest: its original image size is unknown") for path in unlisted]
    report.picture_pixels = original_sizes is None and any(not is_dicom(path) for path in paths)
    settings = PredictSettings(weights, classifiers, config, imgsz, batch, tta, workers, original_sizes, dicom_out, progress)
    devices = devices_of(device)
    if len(devices) > 1:
        from .shards import predict_on_devices

        found = predict_on_devices(paths, settings, devices, save_raw)
    else:
        found = predict_paths(paths, settings, devices[0], save_raw)
    report.startup_s = found.loaded_at - started
    report.workers, report.batch, report.devices = found.workers, found.batch, len(devices)
    report.errors += found.errors
    rows = list(expected_ids) if expected_ids is not None else sorted(found.strings)
    write_submission(report.out, found.strings, rows)
    write_errors_csv(report.errors_path, report.errors)
    report.invalid = [str(problem) for problem in errors_only(validate_submission(report.out, rows, found.sizes))]
    report.n_rows = len(rows)
    report.n_images = len(found.strings)
    report.n_with_boxes = sum(bool(s) for s in found.strings.values())
    report.elapsed_s = time.time() - started
    return report


def select_expected(paths: list[Path], expected_ids: Sequence[str]) -> tuple[list[Path], int, list[str]]:
    """The paths of the expected patients, how many other images were left out, and the expected ids without an image.

    >>> select_expected([Path("a.dcm"), Path("b.dcm")], ["b", "c"])
    ([PosixPath('b.dcm')], 1, ['c'])
    """
    expected = set(expected_ids)
    chosen, others = _split_by(paths, lambda path: path.stem in expected)
    found = {path.stem for path in chosen}
    return chosen, len(others), [pid for pid in expected_ids if pid not in found]


def _split_by(paths: list[Path], keep: Callable[[Path], bool]) -> tuple[list[Path], list[Path]]:
    """``paths`` split into those ``keep`` accepts and the others, in order."""
    kept = [path for path in paths if keep(path)]
    return kept, [path for path in paths if not keep(path)]
