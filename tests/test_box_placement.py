"""Box placement end to end: from a detector's boxes to the submission CSV, with only the network stubbed.

:class:`RectangleFinder` replaces the YOLO model by a perfect detector of the one bright
rectangle drawn in each test image, so every step after the model output (decoding and
resizing, the TTA flip, un-flip and fusion, the map back to original pixels, post-processing,
the CSV) is the real code of :func:`predict_folder` and :func:`detect_files`.

Tolerance: the model input is the image resized, so each edge of the rectangle falls inside
one input pixel, which area averaging (or bilinear enlarging, or JPEG's DCT scaling and
ringing) makes a mix of dark and bright; the mid-grey threshold counts that pixel in or out.
A found edge is therefore within one input pixel of the drawn one: ``original / input``
original pixels (at least one, for an enlarged input), plus the CSV's 0.05 px rounding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pneumo_yolo.boxes import ltwh_to_xyxy
from pneumo_yolo.dicom.read import resize_longest
from pneumo_yolo.dicom.write import write_dicom
from pneumo_yolo.eval.postprocess import PostprocessConfig
from pneumo_yolo.eval.submission import read_submission
from pneumo_yolo.nets.detector import RAW_CONF, Detector
from pneumo_yolo.predict import ensemble
from pneumo_yolo.predict.decoding import load_image
from pneumo_yolo.predict.device import PredictSettings
from pneumo_yolo.predict.run import predict_folder
from pneumo_yolo.runtime.devices import CPU, Devices

DARK, BRIGHT = 30, 255
SCORE = 0.9
KEEP_AS_IS = PostprocessConfig(conf=0.0, merge="none", shrink=1.0, max_boxes=None)
IMAGES: dict[str, tuple[tuple[int, int], tuple[int, int, int, int]]] = {
    "square": ((1024, 1024), (150, 333, 466, 801)),
    "wide": ((400, 300), (61, 87, 173, 219)),
}
"""patientId: original ``(W, H)`` and the drawn rectangle ``xyxy`` (pixels ``x1 ≤ x < x2``), off-centre
so that a box left mirrored by a wrong un-flip lands far from it."""
PNG_SIDE = 256
"""Longest side of the PNGs, as ``convert --imgsz 256`` writes them."""


class RectangleFinder(Detector):
    """The network replaced: the box around the pixels brighter than mid-grey in each image, scoring :data:`SCORE`."""

    def __init__(
        self, weights: Path, *, imgsz: int, device: Devices = CPU, tta: bool = False, conf: float = RAW_CONF
    ) -> None:
        super().__init__(imgsz=imgsz, device=device.resolve().first, tta=tta, conf=conf)
        self.calls = 0

    def run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        self.calls += 1
        results = []
        for image in images:
            rows, cols = np.nonzero(image > (DARK + BRIGHT) // 2)
            box = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], dtype=np.float64)
            results.append((box, np.array([SCORE])))
        return results


@pytest.fixture
def detectors(monkeypatch: pytest.MonkeyPatch) -> list[RectangleFinder]:
    """``predict_folder`` loads a :class:`RectangleFinder` for every weights file; the list holds each one built."""
    built: list[RectangleFinder] = []

    def build(weights: Path, **kwargs) -> RectangleFinder:
        built.append(RectangleFinder(weights, **kwargs))
        return built[-1]

    monkeypatch.setattr(ensemble, "load_detector", build)
    return built


def drawn(pid: str) -> np.ndarray:
    """The dark original image of ``pid`` with its white rectangle."""
    (width, height), (x1, y1, x2, y2) = IMAGES[pid]
    pixels = np.full((height, width), DARK, np.uint8)
    pixels[y1:y2, x1:x2] = BRIGHT
    return pixels


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The images as RSNA-format DICOMs (JPEG Baseline, MONOCHROME2, 8 bits)."""
    folder = tmp_path_factory.mktemp("dicoms")
    for pid in IMAGES:
        write_dicom(folder / f"{pid}.dcm", drawn(pid))
    return folder


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The images as PNGs resized as ``convert`` writes them: longest side :data:`PNG_SIDE`."""
    folder = tmp_path_factory.mktemp("pngs")
    for pid in IMAGES:
        cv2.imwrite(str(folder / f"{pid}.png"), resize_longest(drawn(pid), PNG_SIDE))
    return folder


def predicted(
    source: Path, out: Path, *, imgsz: int, tta: bool, original_sizes: dict[str, tuple[float, float]] | None = None
) -> dict[str, np.ndarray]:
    """Run :func:`predict_folder` with boxes kept as they are; the submission's ``conf x y w h`` rows per patient."""
    settings = PredictSettings(
        weights=(Path("stub.pt"),),
        config=KEEP_AS_IS,
        imgsz=imgsz,
        tta=tta,
        workers=0,
        original_sizes=original_sizes,
        progress=False,
    )
    report = predict_folder(source, out, settings)
    assert report.errors == [] and report.invalid == []
    return read_submission(out)


def tolerance(path: Path, imgsz: int) -> float:
    """One pixel of the model input decoded from ``path``, in original pixels; at least one original pixel."""
    pixels = load_image(path, imgsz).pixels
    assert max(pixels.shape) == imgsz, "the input is not resized as the case claims"
    (width, height), _ = IMAGES[path.stem]
    return max(width / pixels.shape[1], height / pixels.shape[0], 1.0)


def assert_placed(rows: np.ndarray, truth: tuple[float, float, float, float], atol: float) -> None:
    """Exactly one box, scoring :data:`SCORE`, with corners within ``atol`` pixels of ``truth`` (``xyxy``)."""
    assert rows.shape == (1, 5), f"expected one box, got {rows.tolist()}"
    assert rows[0, 0] == pytest.approx(SCORE)
    np.testing.assert_allclose(ltwh_to_xyxy(rows[:, 1:])[0], truth, rtol=0, atol=atol)


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
@pytest.mark.parametrize("imgsz", [1024, 400, 256])
def test_dicom_boxes_land_on_the_drawn_rectangle(
    dicoms: Path, detectors: list[RectangleFinder], tmp_path: Path, imgsz: int, tta: bool
) -> None:
    """DICOMs at their original size (1024: square, 400: wide), decoded smaller (400: square, 256: both) or enlarged (1024: wide)."""
    boxes = predicted(dicoms, tmp_path / "sub.csv", imgsz=imgsz, tta=tta)
    assert [detector.calls for detector in detectors] == [2 if tta else 1]
    for pid, (_, truth) in IMAGES.items():
        assert_placed(boxes[pid], truth, tolerance(dicoms / f"{pid}.dcm", imgsz))


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
@pytest.mark.parametrize("imgsz", [PNG_SIDE, 128])
def test_resized_png_boxes_map_to_the_original_size(
    pngs: Path, detectors: list[RectangleFinder], tmp_path: Path, imgsz: int, tta: bool
) -> None:
    """PNGs fed at their own size (256) or resized again (128) map through ``original_sizes`` onto the original rectangle."""
    sizes = {pid: size for pid, (size, _) in IMAGES.items()}
    boxes = predicted(pngs, tmp_path / "sub.csv", imgsz=imgsz, tta=tta, original_sizes=sizes)
    assert [detector.calls for detector in detectors] == [2 if tta else 1]
    for pid, (_, truth) in IMAGES.items():
        assert_placed(boxes[pid], truth, tolerance(pngs / f"{pid}.png", imgsz))


def test_without_original_sizes_png_boxes_stay_in_png_pixels(
    pngs: Path, detectors: list[RectangleFinder], tmp_path: Path
) -> None:
    """Negative control: without ``original_sizes`` the boxes are the rectangle scaled by PNG/original, which the check rejects."""
    boxes = predicted(pngs, tmp_path / "sub.csv", imgsz=PNG_SIDE, tta=False)
    for pid, ((width, height), truth) in IMAGES.items():
        factor = PNG_SIDE / max(width, height)
        assert_placed(boxes[pid], np.multiply(truth, factor), atol=1.0)
        with pytest.raises(AssertionError):
            assert_placed(boxes[pid], truth, tolerance(pngs / f"{pid}.png", PNG_SIDE))


def test_a_mirrored_box_would_be_caught(dicoms: Path, detectors: list[RectangleFinder], tmp_path: Path) -> None:
    """Negative control: a TTA box left mirrored (a wrong un-flip) is rejected, because every rectangle is off-centre."""
    boxes = predicted(dicoms, tmp_path / "sub.csv", imgsz=256, tta=True)
    for pid, ((width, _), truth) in IMAGES.items():
        mirrored = boxes[pid].copy()
        mirrored[:, 1] = width - mirrored[:, 1] - mirrored[:, 3]
        with pytest.raises(AssertionError):
            assert_placed(mirrored, truth, tolerance(dicoms / f"{pid}.dcm", 256))
