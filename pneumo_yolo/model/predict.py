"""Batch inference: a folder of DICOMs (or PNG/JPEG files) → submission CSV.

Images are decoded by the converter's own reader in background processes while the
model runs on the previous batch, so decoding hides behind inference and memory stays flat:
only a few batches are ever in flight. Boxes are mapped back to each image's original pixel
grid and post-processed by :mod:`pneumo_yolo.eval.postprocess`.

Example:
    >>> report = predict_folder(Path("runs/exp/weights/best.pt"), Path("stage_2_test_images"),
    ...                         Path("submission.csv"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import write_errors_csv
from ..eval.postprocess import PostprocessConfig, postprocess_image, to_original_grid
from ..eval.detections import RawImage, RawWriter
from ..dicom.results import DicomResultsError, ResultsWriter
from ..eval.submission import errors_only, parse_prediction_string, prediction_string, validate_submission, write_submission
from .inputs import LoadedImage, is_dicom, iterate_batches, list_inputs

RAW_CONF = 0.05
"""Confidence floor of raw detections (the lowest threshold ``tune`` tries by default), unless the
post-processing threshold is lower still."""
MAX_DETECTIONS = 20
"""Boxes kept per image from the model (an RSNA image has at most 4 opacities)."""


class PredictError(RuntimeError):
    """Weights that cannot be loaded: nothing can be predicted."""


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

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        results = self.model.predict(
            images, imgsz=self.imgsz, conf=self.conf, max_det=MAX_DETECTIONS, device=self.device, verbose=False, save=False
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


def predict_folder(
    weights: Path | Sequence[Path],
    source: Path,
    out: Path,
    *,
    classifiers: Sequence[Path] = (),
    config: PostprocessConfig = PostprocessConfig(),
    imgsz: int | None = None,
    batch: int = 32,
    device: str | None = None,
    tta: bool = False,
    save_raw: Path | None = None,
    dicom_out: Path | None = None,
    workers: int = 1,
    expected_ids: Sequence[str] | None = None,
    original_sizes: Mapping[str, tuple[float, float]] | None = None,
    progress: bool = True,
) -> PredictReport:
    """Predict the images under ``source`` and write the submission CSV ``out``.

    ``weights`` is one detector or several (an ensemble: each image is decoded once and every
    model runs on it, each with its flipped pass under ``tta``); ``classifiers`` gate the boxes
    by their mean probability of opacity. The passes are fused, and the gate applied, by the
    post-processing (``config``: ``fusion_iou``, ``gate_alpha``, ``gate_threshold``).

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
    started = time.perf_counter()
    paths = list_inputs(Path(source))
    pictures = [path for path in paths if not is_dicom(path)]
    if dicom_out and pictures:
        raise PredictError(f"--dicom-out needs DICOM inputs: {pictures[0]} is not a .dcm file")
    report = PredictReport(out=Path(out), raw=save_raw, dicom_out=dicom_out)
    results = ResultsWriter(Path(dicom_out)) if dicom_out else None
    if expected_ids is not None:
        paths, report.n_not_asked, missing = select_expected(paths, expected_ids)
        report.errors += [(str(Path(source) / pid), "no image for this expected patientId in --source") for pid in missing]
    if original_sizes is not None:
        paths, unlisted = _split_by(paths, lambda path: is_dicom(path) or path.stem in original_sizes)
        report.errors += [(str(path), "not in --manifest: its original image size is unknown") for path in unlisted]
    report.picture_pixels = original_sizes is None and any(not is_dicom(path) for path in paths)
    ensemble = load_ensemble(weights, classifiers, imgsz=imgsz, device=device, tta=tta, conf=min(RAW_CONF, config.conf))
    report.startup_s = time.perf_counter() - started
    strings: dict[str, str] = {}
    sizes: dict[str, tuple[float, float]] = {}
    with RawWriter(save_raw) if save_raw else contextlib.nullcontext() as raw_writer:
        detections = detect_files(ensemble, paths, batch=batch, workers=workers, original_sizes=original_sizes, progress=progress)
        for image, raw in detections:
            if raw is None:
                report.errors.append((image.path, image.problem))
            elif raw.patient_id in strings:
                report.errors.append((image.path, f"duplicate patientId {raw.patient_id}"))
            else:
                if raw_writer:
                    raw_writer.add(raw)
                boxes, scores = postprocess_image(raw, config)
                strings[raw.patient_id] = prediction_string(boxes, scores)
                sizes[raw.patient_id] = (raw.width, raw.height)
                if results:
                    try:
                        results.write(Path(image.path), parse_prediction_string(strings[raw.patient_id]))
                    except DicomResultsError as error:
                        report.errors.append((image.path, error.problem))
    rows = list(expected_ids) if expected_ids is not None else sorted(strings)
    write_submission(report.out, strings, rows)
    write_errors_csv(report.errors_path, report.errors)
    report.invalid = [str(problem) for problem in errors_only(validate_submission(report.out, rows, sizes))]
    report.n_rows = len(rows)
    report.n_images = len(strings)
    report.n_with_boxes = sum(bool(s) for s in strings.values())
    report.elapsed_s = time.perf_counter() - started
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
