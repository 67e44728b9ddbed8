"""Reading a radiograph DICOM into an 8-bit grayscale image.

One reader serves ``convert`` and ``predict``, so both see identical pixels.

The pipeline, in DICOM order (PS3.4 N.2.1), with pydicom's own transforms:
1. decode the stored pixels (JPEG Baseline through Pillow, uncompressed, or any transfer
   syntax whose pydicom decoder is installed);
2. modality LUT: Rescale Slope/Intercept or a Modality LUT Sequence (``apply_modality_lut``);
3. VOI: the VOI LUT Sequence (``apply_voi``), else Window Center/Width with its VOI LUT
   Function, LINEAR, LINEAR_EXACT or SIGMOID (``apply_windowing``; of several windows, the
   first);
4. the output range of step 3, as pydicom defines it, mapped linearly to 0–255: a VOI LUT
   gives ``[0, 2**n - 1]`` for the *n* bits per entry of its LUT Descriptor, a window the
   range of step 2 described next;
5. MONOCHROME1 inverted, so that bone is always bright (MONOCHROME2).

Without a VOI LUT or window the image is scaled by the range its Bits Stored allows, carried
through the modality LUT: ``[0, 2**BitsStored - 1]`` for unsigned data,
``[-2**(BitsStored - 1), 2**(BitsStored - 1) - 1]`` for signed data (Pixel Representation 1),
each through Rescale Slope/Intercept, or ``[0, 2**n - 1]`` for a Modality LUT Sequence of
*n*-bit entries. Never by the image's own minimum and maximum: as torchxrayvision scales by
``2**BitsStored - 1``, the same stored value then always gives the same gray, no contrast is
invented per image, and the noise of an underexposed film is not amplified. 8-bit data is
therefore used as stored, with or without an identity rescale (the RSNA files have neither).

No value is clipped to fit. pydicom masks stored values to Bits Stored (PS3.5 8.1.1: the
unused high bits are no part of the value, and may hold overlays), so none exceeds its range;
a VOI LUT whose entries exceed the bits its descriptor declares is refused. Also refused: both
modality LUT forms in one file (PS3.3 C.11.1 allows one, and pydicom's window output range
then differs from its modality LUT's), a VOI LUT of more than 256 8-bit entries, which
pydicom 3.0 indexes through an 8-bit array, wrapping the index, and a Rescale Slope of 0 (or not
finite), which maps every pixel to one gray.

Every read goes through one guard (:func:`_reading`): whatever a broken file makes pydicom raise
(an ``IS`` value of ``'1A'``, say) becomes a :class:`DicomReadError` naming the file, and
pydicom's warnings never reach the terminal: they are recorded, quoted in the problem of a file
that fails, and dropped for one that reads (a padded pixel data element, a VR mismatch that
pydicom repairs).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..files import UnsafeIdError, check_patient_id
from .grays import has_modality_lut, has_voi, to_uint8

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
MAX_DICOM_BYTES = 600 * 2**20
"""The largest DICOM whose pixels are read (read whole into memory): 16384² pixels of 16 bits are 512 MB."""
MAX_PIXELS = 16384**2
"""The largest image decoded (a 43 cm detector at 0.1 mm has about 4,300² pixels): a header that
declares more is refused before its pixels are read."""


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
    return {
        "view_position": str(ds.get("ViewPosition", "")),
        "sex": str(ds.get("PatientSex", "")),
        "age": parse_age(age),
    }


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


def _check_decodable(ds, path: Path) -> tuple[int, int]:
    """The image's ``(width, height)``; a clear :class:`DicomReadError` before decoding what cannot be decoded."""
    from pydicom.pixels import get_decoder

    if "PixelData" not in ds:
        raise DicomReadError(path, "DICOM has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in MONOCHROME:
        raise DicomReadError(
            path,
            f"PhotometricInterpretation {photometric or '(missing)'} is not supported: expected MONOCHROME1 or MONOCHROME2",
        )
    frames = _whole_number(ds, "NumberOfFrames", path, default=1)
    if frames != 1:
        raise DicomReadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    samples = _whole_number(ds, "SamplesPerPixel", path, default=1)
    if samples != 1:
        raise DicomReadError(
            path, f"{samples} samples per pixel (a colour image) is not supported: expected 1 (grayscale)"
        )
    width, height = _whole_number(ds, "Columns", path, default=0), _whole_number(ds, "Rows", path, default=0)
    if not 0 < width * height <= MAX_PIXELS:
        raise DicomReadError(
            path, f"{width}x{height} pixels: expected Rows and Columns from 1 up to {MAX_PIXELS:,} pixels in all"
        )
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is None:
        return width, height
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomReadError(path, f"transfer syntax {syntax} ({syntax.name}) cannot be decoded by pydicom") from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pixel data plugin"
        raise DicomReadError(
            path, f"no decoder installed for transfer syntax {syntax.name} ({syntax}). Install one of: {needs}"
        )
    return width, height


def _whole_number(ds, keyword: str, path: Path, default: int) -> int:
    """An integer header value (``default`` when absent or empty), else a :class:`DicomReadError` that names it."""
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise DicomReadError(path, f"{keyword} {str(value)[:40]!r} is not a whole number") from None


def _is_plain_jpeg(ds) -> bool:
    """RSNA's own format: JPEG Baseline, MONOCHROME2, 8-bit, no LUT or window tags."""
    return (
        str(ds.file_meta.get("TransferSyntaxUID", "")) == JPEG_BASELINE
        and ds.get("PhotometricInterpretation") == "MONOCHROME2"
        and int(ds.get("BitsStored", 0)) == 8
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and not has_modality_lut(ds)
        and not has_voi(ds)
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
    """``dcmread`` with every failure turned into a :class:`DicomReadError`; truncation is an error.

    With ``pixels`` the whole file is read into memory, so a file over :data:`MAX_DICOM_BYTES` is refused first.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if pixels and Path(path).is_file() and (size := Path(path).stat().st_size) > MAX_DICOM_BYTES:
        raise DicomReadError(
            path, f"{size / 2**20:,.0f} MB: larger than the {MAX_DICOM_BYTES / 2**20:,.0f} MB a radiograph can take"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="End of file reached")
            return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise DicomReadError(path, "not a DICOM file (no DICM preamble)") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, UserWarning) as error:
        raise DicomReadError(path, f"corrupt or truncated DICOM ({type(error).__name__}: {error})") from None


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """The guard of every read: any failure becomes a :class:`DicomReadError` naming ``path``, and pydicom's warnings are held back.

    An unforeseen failure's problem quotes the first warning pydicom gave (often the real cause);
    the warnings of a file that reads are dropped. Python's own errors (memory, interrupts) pass.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except DicomReadError:
            raise
        except Exception as error:  # pydicom raises many types for values it cannot convert
            failure = DicomReadError(path, f"cannot be read ({type(error).__name__}: {str(error)[:200]})")
            raise _quoting(failure, caught) from None


def _quoting(error: DicomReadError, caught: list[warnings.WarningMessage]) -> DicomReadError:
    """``error`` with the first of pydicom's ``caught`` warnings quoted at the end of its problem."""
    if not caught:
        return error
    return DicomReadError(error.path, f"{error.problem} (pydicom: {str(caught[0].message).splitlines()[0][:200]})")


def read_header(path: Path | str) -> Radiograph:
    """Size and header fields without decoding the pixels (``pixels`` is empty)."""
    path = Path(path)
    with _reading(path):
        ds = _open(path, pixels=False)
        try:
            width, height = int(ds.Columns), int(ds.Rows)
        except (AttributeError, TypeError, ValueError):
            raise DicomReadError(path, "DICOM header has no valid Rows/Columns") from None
        return Radiograph(np.zeros((0, 0), np.uint8), width, height, **header_fields(ds))


def read_radiograph(path: Path | str, max_side: int | None = None) -> Radiograph:
    """Read a DICOM radiograph as uint8 H×W, resized so its longest side is ``max_side``.

    Raises :class:`DicomReadError` for a file that is not DICOM, is truncated or corrupt,
    has no pixel data, needs a decoder that is not installed (the message says which), or
    has a LUT or window that cannot be applied (see the module docstring).

    >>> image = read_radiograph("0004cfab.dcm", max_side=512)  # doctest: +SKIP
    >>> image.pixels.shape, (image.width, image.height)  # doctest: +SKIP
    ((512, 512), (1024, 1024))
    """
    path = Path(path)
    with _reading(path):
        ds = _open(path, pixels=True)
        width, height = _check_decodable(ds, path)
        reduced = max_side is not None and 0 < max_side < max(width, height) and _is_plain_jpeg(ds)
        try:
            pixels = _decode_jpeg_reduced(ds, max_side) if max_side is not None and reduced else ds.pixel_array
        except Exception as error:  # decoders raise many types on broken data
            raise DicomReadError(path, f"pixel data cannot be decoded ({type(error).__name__}: {error})") from None
        if not reduced:
            try:
                pixels = to_uint8(pixels, ds)
            except Exception as error:  # pydicom raises several types on malformed LUTs and windows
                raise DicomReadError(
                    path, f"pixel values cannot be mapped to 8 bits ({type(error).__name__}: {error})"
                ) from None
            if ds.PhotometricInterpretation == "MONOCHROME1":
                pixels = 255 - pixels
        if pixels.ndim != 2:
            raise DicomReadError(path, f"expected a single grayscale frame, got pixel array of shape {pixels.shape}")
        return Radiograph(
            pixels=resize_longest(np.ascontiguousarray(pixels), max_side),
            width=width,
            height=height,
            **header_fields(ds),
        )


def find_dicoms(images_dir: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Map patientId (file stem) → DICOM path, searching ``images_dir`` recursively.

    Returns the map and ``(file, problem)`` errors for unsafe or duplicated stems.
    """
    found: dict[str, Path] = {}
    errors: list[tuple[str, str]] = []
    for path in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file()):
        try:
            check_patient_id(path.stem)
        except UnsafeIdError as error:
            errors.append((str(path), str(error)))
            continue
        if path.stem in found:
            errors.append((str(path), f"duplicate patientId {path.stem} (also {found[path.stem]})"))
            continue
        found[path.stem] = path
    return found, errors
