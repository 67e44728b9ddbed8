"""Reading a radiograph DICOM into an 8-bit grayscale image.

One reader serves ``convert`` and ``predict``, so both see identical pixels.

The pipeline, in DICOM order:
1. decode the stored pixels (JPEG Baseline through Pillow, uncompressed, or any transfer
   syntax whose pydicom decoder is installed);
2. modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence);
3. VOI LUT Sequence, else Window Center/Width, else a min–max stretch;
4. MONOCHROME1 is inverted so that bone is always bright (MONOCHROME2).

8-bit unsigned images with none of those tags (the RSNA files) are used as stored.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


class DicomReadError(ValueError):
    """A DICOM file that cannot be turned into an image; the message names the file."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Radiograph:
    """An 8-bit image and the few header fields the project uses (no names, no IDs).

    ``pixels`` may be resized (see :func:`read_radiograph`); ``width`` and ``height`` are
    always those of the original pixel grid, in which RSNA boxes are given.
    """

    pixels: np.ndarray
    width: int
    height: int
    view_position: str = ""
    sex: str = ""
    age: int | None = None


def header_fields(ds) -> dict:
    """``view_position``, ``sex`` and ``age`` from a dataset; nothing else leaves the header.

    RSNA's bare-number ``PatientAge`` is not a valid DICOM AS value, so pydicom's warning
    about it is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR AS")
        age = ds.get("PatientAge", "")
    return {"view_position": str(ds.get("ViewPosition", "")), "sex": str(ds.get("PatientSex", "")), "age": parse_age(age)}


def parse_age(value: object) -> int | None:
    """RSNA writes ``PatientAge`` as a bare number (``51``); the standard form is ``051Y``.

    Months, weeks and days count as age 0. Anything unreadable gives ``None``.

    >>> parse_age("51"), parse_age("051Y"), parse_age("006M"), parse_age("")
    (51, 51, 0, None)
    """
    match = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD]?)\s*", str(value or ""), flags=re.IGNORECASE)
    if not match:
        return None
    return int(match.group(1)) if match.group(2).upper() in ("", "Y") else 0


def resize_longest(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Resize so that the longest side is ``max_side`` (aspect kept); ``None`` keeps the size.

    Shrinking uses area averaging, enlarging bilinear interpolation.
    """
    height, width = image.shape[:2]
    if not max_side or max(height, width) == max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _to_unit_window(arr: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window Center/Width (PS3.3 C.11.2.1.2) mapped to ``[0, 1]``."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((arr - center) / width + 0.5, 0.0, 1.0)
    return np.clip((arr - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)


def _first(value: object) -> float:
    """First value of a possibly multi-valued DICOM number."""
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def _stretch(arr: np.ndarray) -> np.ndarray:
    """Min–max stretch to ``[0, 1]``; a constant image gives zeros."""
    low, high = float(arr.min()), float(arr.max())
    return (arr - low) / (high - low) if high > low else np.zeros_like(arr, dtype=np.float64)


def _has_modality_lut(ds) -> bool:
    return "RescaleSlope" in ds or "ModalityLUTSequence" in ds


def _has_voi(ds) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def to_uint8(arr: np.ndarray, ds) -> np.ndarray:
    """Apply modality LUT, VOI LUT or window (or a min–max stretch) and return uint8.

    8-bit unsigned data with no rescale or window tags is returned as stored.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi

    has_modality, has_voi = _has_modality_lut(ds), _has_voi(ds)
    if arr.dtype == np.uint8 and not has_modality and not has_voi:
        return arr
    values = apply_modality_lut(arr, ds) if has_modality else arr
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        unit = apply_voi(values, ds).astype(np.float64) / (2**bits - 1)
    elif has_voi:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        unit = _to_unit_window(values.astype(np.float64), _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    else:
        unit = _stretch(values.astype(np.float64))
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_decodable(ds, path: Path) -> None:
    """Raise a clear :class:`DicomReadError` before decoding what cannot be decoded."""
    from pydicom.pixels import get_decoder

    if "PixelData" not in ds:
        raise DicomReadError(path, "DICOM has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in MONOCHROME:
        raise DicomReadError(path, f"PhotometricInterpretation {photometric or '(missing)'} is not supported: expected MONOCHROME1 or MONOCHROME2")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise DicomReadError(path, f"multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported")
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is None:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomReadError(path, f"transfer syntax {syntax} ({syntax.name}) cannot be decoded by pydicom") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pixel data plugin"
        raise DicomReadError(
            path, f"no decoder installed for transfer syntax {syntax.name} ({syntax}). Install one of: {needs}"
        )


def _is_plain_jpeg(ds) -> bool:
    """RSNA's own format: JPEG Baseline, MONOCHROME2, 8-bit, no LUT or window tags."""
    return (
        str(ds.file_meta.get("TransferSyntaxUID", "")) == JPEG_BASELINE
        and ds.get("PhotometricInterpretation") == "MONOCHROME2"
        and int(ds.get("BitsStored", 0)) == 8
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and not _has_modality_lut(ds)
        and not _has_voi(ds)
    )


def _decode_jpeg_reduced(ds, max_side: int) -> np.ndarray:
    """Decode a JPEG Baseline frame with Pillow's DCT scaling (1/2, 1/4, 1/8).

    Pillow decodes straight to the smallest power-of-two reduction that is still at least
    ``max_side`` on the long side, several times faster than a full decode and resize.
    """
    from PIL import Image
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    with Image.open(io.BytesIO(frame)) as jpeg:
        scale = max_side / max(jpeg.size)
        jpeg.draft("L", (round(jpeg.size[0] * scale), round(jpeg.size[1] * scale)))
        return np.asarray(jpeg.convert("L"))


def _open(path: Path, *, pixels: bool):
    """``dcmread`` with every failure turned into a :class:`DicomReadError`; truncation is an error."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="End of file reached")
            return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise DicomReadError(path, "not a DICOM file (no DICM preamble)") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, UserWarning) as error:
        raise DicomReadError(path, f"corrupt or truncated DICOM ({type(error).__name__}: {error})") from None


def read_header(path: Path | str) -> Radiograph:
    """Size and header fields without decoding the pixels (``pixels`` is empty)."""
    path = Path(path)
    ds = _open(path, pixels=False)
    try:
        width, height = int(ds.Columns), int(ds.Rows)
    except (AttributeError, TypeError, ValueError):
        raise DicomReadError(path, "DICOM header has no valid Rows/Columns") from None
    return Radiograph(np.zeros((0, 0), np.uint8), width, height, **header_fields(ds))


def read_radiograph(path: Path | str, max_side: int | None = None) -> Radiograph:
    """Read a DICOM radiograph as uint8 H×W, resized so its longest side is ``max_side``.

    Raises :class:`DicomReadError` for a file that is not DICOM, is truncated or corrupt,
    has no pixel data, or needs a decoder that is not installed (the message says which).

    >>> image = read_radiograph("0004cfab.dcm", max_side=512)  # doctest: +SKIP
    >>> image.pixels.shape, (image.width, image.height)  # doctest: +SKIP
    ((512, 512), (1024, 1024))
    """
    path = Path(path)
    ds = _open(path, pixels=True)
    _check_decodable(ds, path)
    width, height = int(ds.Columns), int(ds.Rows)
    try:
        if max_side and max_side < max(width, height) and _is_plain_jpeg(ds):
            pixels = _decode_jpeg_reduced(ds, max_side)
        else:
            pixels = to_uint8(ds.pixel_array, ds)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                pixels = 255 - pixels
    except DicomReadError:
        raise
    except Exception as error:  # decoders raise many types on broken data
        raise DicomReadError(path, f"pixel data cannot be decoded ({type(error).__name__}: {error})") from None
    if pixels.ndim != 2:
        raise DicomReadError(path, f"expected a single grayscale frame, got pixel array of shape {pixels.shape}")
    return Radiograph(
        pixels=resize_longest(np.ascontiguousarray(pixels), max_side),
        width=width,
        height=height,
        **header_fields(ds),
    )
