"""The source header that the SR and GSPS reference: read without pixels, invalid values repaired or left out."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

CHARACTER_SET = "ISO_IR 192"
"""UTF-8: any copied name can be written."""
REFERENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PATIENT_STUDY = {
    "PatientName": "PN",
    "PatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyDate": "DA",
    "StudyTime": "TM",
    "ReferringPhysicianName": "PN",
    "StudyID": "SH",
    "AccessionNumber": "SH",
}
"""Type 1 and 2 attributes of the Patient and General Study modules besides the Study UID."""
DISPLAY = ("Modality", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation")
DISPLAY_NUMBERS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")
DISPLAY_CODES = ("RescaleType", "VOILUTFunction")
DISPLAY_SEQUENCES = ("ModalityLUTSequence", "VOILUTSequence")
"""The grayscale pipeline of the source, which a GSPS restates (else a viewer would drop the window)."""
_SEX = {"M": "M", "F": "F", "O": "O", "MALE": "M", "FEMALE": "F", "OTHER": "O"}


class DicomResultsError(ValueError):
    """A source image for which no valid SR or GSPS can be written; names the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def _is_valid(vr: str, value: object) -> bool:
    from pydicom import config
    from pydicom.valuerep import validate_value

    try:
        validate_value(vr, value, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def repair_text(keyword: str, value: object) -> str:
    """A valid value for a Patient or General Study attribute, or ``""`` (Type 2: present, empty).

    Repairs that leave no doubt: surrounding spaces, ``YYYY-MM-DD`` and ``HH:MM:SS`` (the old
    ACR-NEMA forms), and a sex written out (``female`` → ``F``). Anything else invalid is left out.

    >>> repair_text("StudyDate", "2019-03-01"), repair_text("PatientSex", "male"), repair_text("StudyID", "x" * 17)
    ('20190301', 'M', '')
    """
    vr = PATIENT_STUDY[keyword]
    text = str(value if value is not None else "").strip()
    if keyword == "PatientSex":
        return _SEX.get(text.upper(), "")
    if vr == "DA":
        text = text.replace("-", "").replace(".", "")
    elif vr == "TM":
        text = text.replace(":", "")
    return text if _is_valid(vr, text) else ""


def repair_numbers(value: object) -> list[str] | None:
    """Decimal strings (DS) of a possibly multi-valued number, shortened to DS's 16 characters; ``None`` if not numbers.

    >>> repair_numbers("0.14300000000000002"), repair_numbers(["40", "400"]), repair_numbers("wide")
    (['0.14300000000000'], ['40', '400'], None)
    """
    from pydicom.multival import MultiValue
    from pydicom.valuerep import format_number_as_ds

    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    texts = []
    for item in values:
        text = str(item).strip()
        if not _is_valid("DS", text):
            try:
                number = float(text)
            except ValueError:
                return None
            if not np.isfinite(number):
                return None
            text = format_number_as_ds(number)
        texts.append(text)
    return texts or None


def reference_header(ds, path: Path | str):
    """The part of a source header that the SR and GSPS need, with invalid values repaired or left out.

    Raises :class:`DicomResultsError` when the source cannot be referenced (a UID missing or
    invalid) or is not a single-sample grayscale image.
    """
    from pydicom.dataset import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about invalid values on access; they are checked here
        header = Dataset()
        header.SpecificCharacterSet = CHARACTER_SET
        for keyword in REFERENCE_UIDS:
            uid = str(ds.get(keyword, "") or "")
            if not uid or not _is_valid("UI", uid):
                raise DicomResultsError(
                    path, f"{keyword} {uid!r} is not a valid UID, so no result can reference the image"
                )
            setattr(header, keyword, uid)
        for keyword in PATIENT_STUDY:
            setattr(header, keyword, repair_text(keyword, ds.get(keyword)))
        for keyword in DISPLAY:
            if keyword in ds:
                setattr(header, keyword, ds[keyword].value)
        if int(header.get("SamplesPerPixel", 1)) != 1 or "Rows" not in header or "Columns" not in header:
            raise DicomResultsError(path, "not a single-sample grayscale image with Rows and Columns")
        for keyword in DISPLAY_NUMBERS:
            numbers = repair_numbers(ds[keyword].value) if keyword in ds else None
            if numbers:
                setattr(header, keyword, numbers if len(numbers) > 1 else numbers[0])
        for keyword in DISPLAY_CODES:
            if keyword in ds and _is_valid("CS" if keyword == "VOILUTFunction" else "LO", ds[keyword].value):
                setattr(header, keyword, ds[keyword].value)
        for keyword in DISPLAY_SEQUENCES:
            if keyword in ds:
                setattr(header, keyword, ds[keyword].value)
    if ("WindowCenter" in header) != ("WindowWidth" in header):
        header.pop("WindowCenter", None)
        header.pop("WindowWidth", None)
    if "RescaleSlope" in header and "RescaleIntercept" in header and "RescaleType" not in header:
        header.RescaleType = "US"  # unspecified: the modality LUT is Type 1 in a presentation state
    return header


def read_reference(path: Path):
    """Read a source DICOM's header (no pixels) and return :func:`reference_header`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError) as error:
        raise DicomResultsError(path, f"header cannot be read ({type(error).__name__}: {error})") from None
    return reference_header(ds, path)
