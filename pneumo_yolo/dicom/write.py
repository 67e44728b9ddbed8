"""Writing radiograph DICOMs: the real RSNA format and the variants a reader must accept.

The RSNA files are JPEG Baseline (``1.2.840.10008.1.2.4.50``), MONOCHROME2, 8 bits, one
encapsulated frame, Secondary Capture, with no Rescale or Window tags. pydicom 3 has no
JPEG Baseline encoder, so Pillow encodes the frame and :func:`pydicom.encaps.encapsulate`
wraps it. Uncompressed variants (Explicit or Implicit VR Little Endian, MONOCHROME1,
12–16-bit and signed data, Rescale and Window tags, VOI LUT Function, Modality and VOI LUT
Sequences) let tests exercise every reader path.

UIDs and the pixel spacing are derived from the patient ID, so the same inputs always give
the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes
from .read import JPEG_BASELINE

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
TRANSFER_SYNTAXES = {"jpeg": JPEG_BASELINE, "explicit": EXPLICIT_VR_LE, "implicit": IMPLICIT_VR_LE}
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
JPEG_QUALITY = 90
PIXEL_SPACING_RANGE = (0.115, 0.199)


def derived_uid(patient_id: str, role: str) -> str:
    """A UID (pydicom's root) hashed from ``patient_id`` and ``role`` (``study``, ``series``, ``sop``).

    >>> derived_uid("p1", "sop") == derived_uid("p1", "sop") != derived_uid("p1", "study")
    True
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[patient_id, role]))


def pixel_spacing(patient_id: str) -> float:
    """A pixel spacing in mm within RSNA's range (0.115–0.199), fixed by ``patient_id``."""
    fraction = int.from_bytes(hashlib.sha256(patient_id.encode()).digest()[:8], "big") / 2**64
    low, high = PIXEL_SPACING_RANGE
    return round(low + fraction * (high - low), 3)


def encode_jpeg_baseline(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode a 2-D uint8 image as a baseline (not progressive) 8-bit grayscale JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality, progressive=False)
    return buffer.getvalue()


@dataclass(frozen=True, kw_only=True)
class DicomFormat:
    """How :func:`write_dicom` stores a radiograph: the exact RSNA format by default, or a variant a reader must accept.

    Attributes:
        transfer_syntax: ``"jpeg"`` (JPEG Baseline, 8-bit only), ``"explicit"`` (Explicit VR
            Little Endian) or ``"implicit"`` (Implicit VR Little Endian).
        photometric: ``"MONOCHROME2"`` or ``"MONOCHROME1"`` (the tag only; values are as given).
        bits_stored: default 8 for uint8 and 16 for uint16 (e.g. 12 for 12-bit data in uint16).
        rescale: ``(RescaleSlope, RescaleIntercept)``, written only when given.
        window: ``(WindowCenter, WindowWidth)``, written only when given; a pair of sequences
            writes several windows.
        signed: Pixel Representation 1; the pixels are then int8 or int16.
        voi_function: ``VOILUTFunction`` (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``), written
            only when given.
        voi_lut: ``(first value mapped, bits per entry, entries)`` of a one-item VOI LUT
            Sequence, written only when given: one 16-bit word per entry, unchecked against the bits.
        modality_lut: the same for a Modality LUT Sequence.
        view_position: ``ViewPosition``; ``SeriesDescription`` is ``view: <it>``.
        sex: ``PatientSex``.
        age: ``PatientAge``, a bare number string as in RSNA (``"51"``).

    >>> DicomFormat(transfer_syntax="jpeg2000")
    Traceback (most recent call last):
    ...
    ValueError: transfer_syntax must be one of jpeg, explicit, implicit, not 'jpeg2000'
    """

    transfer_syntax: str = "jpeg"
    photometric: str = "MONOCHROME2"
    bits_stored: int | None = None
    rescale: tuple[float, float] | None = None
    window: tuple[float | Sequence[float], float | Sequence[float]] | None = None
    signed: bool = False
    voi_function: str | None = None
    voi_lut: tuple[int, int, Sequence[int]] | None = None
    modality_lut: tuple[int, int, Sequence[int]] | None = None
    view_position: str = "PA"
    sex: str = "M"
    age: str = "51"

    def __post_init__(self) -> None:
        if self.transfer_syntax not in TRANSFER_SYNTAXES:
            raise ValueError(
                f"transfer_syntax must be one of {', '.join(TRANSFER_SYNTAXES)}, not {self.transfer_syntax!r}"
            )
        if self.photometric not in PHOTOMETRICS:
            raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {self.photometric!r}")


RSNA_FORMAT = DicomFormat()
"""The RSNA files' own: JPEG Baseline, MONOCHROME2, 8 bits, no Rescale or Window tags."""


def _check_pixels(pixels: np.ndarray, stored: DicomFormat) -> int:
    """Check ``pixels`` against how they are to be ``stored``; return the bits stored."""
    transfer_syntax, bits_stored, signed = stored.transfer_syntax, stored.bits_stored, stored.signed
    dtypes = (np.int8, np.int16) if signed else (np.uint8, np.uint16)
    if pixels.ndim != 2 or pixels.dtype not in dtypes:
        kinds = "int8 or int16" if signed else "uint8 or uint16"
        raise ValueError(f"pixels must be a 2-D {kinds} array, got {pixels.dtype} of shape {pixels.shape}")
    allocated = pixels.dtype.itemsize * 8
    bits = allocated if bits_stored is None else bits_stored
    if not 1 <= bits <= allocated:
        raise ValueError(f"bits_stored must be between 1 and {allocated} for {pixels.dtype} pixels, not {bits}")
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    for value in (int(pixels.min()), int(pixels.max())) if pixels.size else ():
        if not low <= value <= high:
            raise ValueError(f"pixel value {value} does not fit in {bits} bits stored")
    if transfer_syntax == "jpeg" and (pixels.dtype != np.uint8 or bits != 8):
        raise ValueError("JPEG Baseline holds 8-bit data only: pass uint8 pixels with bits_stored 8")
    return bits


def _lut_item(first_mapped: int, bits: int, entries: Sequence[int]):
    """A LUT Sequence item (PS3.3 C.11.1, C.11.2): descriptor and entries, one 16-bit word each.

    Entries are written as given, unchecked against ``bits``, so tests can write malformed LUTs.
    """
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries) % 2**16, first_mapped, bits])  # LUT Descriptor
    item.add_new(0x00283006, "OW", np.asarray(entries, dtype="<u2").tobytes())  # LUT Data
    return item


def build_dataset(pixels: np.ndarray, patient_id: str, stored: DicomFormat = RSNA_FORMAT):
    """Build the :class:`pydicom.FileDataset` that :func:`write_dicom` saves (same arguments)."""
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    bits = _check_pixels(pixels, stored)
    transfer_syntax, view_position = stored.transfer_syntax, stored.view_position
    sop_uid = derived_uid(patient_id, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SECONDARY_CAPTURE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES[transfer_syntax])
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)  # no file: written by write_dicom
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "19010101"
    ds.StudyTime = "000000.00"
    ds.AccessionNumber = ""
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = f"view: {view_position}"
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = stored.sex
    ds.add(DataElement(0x00101010, "AS", stored.age, validation_mode=config.IGNORE))  # RSNA's bare "51"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    ds.StudyInstanceUID = derived_uid(patient_id, "study")
    ds.SeriesInstanceUID = derived_uid(patient_id, "series")
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = stored.photometric
    ds.Rows, ds.Columns = pixels.shape
    spacing = pixel_spacing(patient_id)
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(stored.signed)
    if stored.window is not None:
        ds.WindowCenter, ds.WindowWidth = stored.window
    if stored.voi_function is not None:
        ds.VOILUTFunction = stored.voi_function
    if stored.voi_lut is not None:
        ds.VOILUTSequence = [_lut_item(*stored.voi_lut)]
    if stored.rescale is not None:
        ds.RescaleIntercept = stored.rescale[1]
        ds.RescaleSlope = stored.rescale[0]
    if stored.modality_lut is not None:
        ds.ModalityLUTSequence = [_lut_item(*stored.modality_lut)]
    if transfer_syntax == "jpeg":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([encode_jpeg_baseline(pixels)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OB" if pixels.dtype.itemsize == 1 else "OW"
    return ds


def write_dicom(
    path: Path, pixels: np.ndarray, *, patient_id: str | None = None, stored: DicomFormat = RSNA_FORMAT
) -> None:
    """Write ``pixels`` (2-D uint8 or uint16, or int8/int16 when ``stored.signed``; stored as given) as a
    single-frame radiograph DICOM.

    The default format is the exact RSNA one (JPEG Baseline, MONOCHROME2, 8 bits, no Rescale
    or Window tags, ``PatientID = PatientName = patient_id``); :class:`DicomFormat` gives the variants.

    Args:
        path: the ``.dcm`` file to write (folders are created; the write is atomic).
        pixels: stored values; a non-square array gives a non-square image.
        patient_id: ``PatientID`` and ``PatientName``; default ``path``'s stem.
        stored: how the pixels are stored, and the header values RSNA's files vary in.

    Raises:
        ValueError: a non-2-D array or one of the wrong type (uint8/16, or int8/16 when
            ``signed``), values that do not fit ``bits_stored``, or JPEG asked for non-8-bit data.

    Example:
        >>> stored = DicomFormat(transfer_syntax="explicit", bits_stored=12, window=(2048, 4096))
        >>> write_dicom(Path("x/p1.dcm"), np.zeros((512, 400), np.uint16), stored=stored)  # doctest: +SKIP
    """
    from pydicom import dcmwrite

    path = Path(path)
    ds = build_dataset(pixels, path.stem if patient_id is None else patient_id, stored)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    atomic_write_bytes(path, buffer.getvalue())
