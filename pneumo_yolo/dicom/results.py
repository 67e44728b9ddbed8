"""DICOM results of ``predict --dicom-out``: a Comprehensive SR and a GSPS per source image.

For each source radiograph ``<patientId>.dcm``: ``sr/<patientId>.dcm``, always, and
``gsps/<patientId>.dcm`` for an image with at least one box (their content: :mod:`.builders`).

Both objects join the source study, and take from its header only what the standard requires
(:mod:`.reference`). Their new UIDs are derived from the source's and from a fingerprint of the
models and post-processing (:func:`derived_uid`): one series per (study, kind, fingerprint), one
instance per (source image, kind, fingerprint). The same image predicted again by the same
models makes the same objects, so a PACS that receives them twice keeps one copy, while other
models or settings make new ones. highdicom builds the first result of each shape; the others
are filled into its template (:mod:`.shapes`), in about a millisecond instead of 50 to 100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, check_patient_id
from .builders import Identity, build_gsps, build_sr
from .reference import DicomResultsError, read_reference
from .shapes import ResultTemplates

SR_FOLDER = "sr"
GSPS_FOLDER = "gsps"


def derived_uid(*parts: str) -> str:
    """A UID that is always the same for the same ``parts`` (pydicom's UID root and a hash of them).

    >>> derived_uid("sr", "models", "1.2.3") == derived_uid("sr", "models", "1.2.3") != derived_uid("sr", "other", "1.2.3")
    True
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["pneumo-yolo result", *parts]))


@dataclass
class SeriesPlan:
    """The series of a run's results: one per (study, kind) and ``fingerprint``, instance numbers counting within it."""

    fingerprint: str = ""
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def next(self, study_uid: str, kind: str) -> tuple[str, int]:
        """The series UID for ``kind`` in ``study_uid`` and the next instance number."""
        key = (study_uid, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        return derived_uid("series", kind, self.fingerprint, study_uid), self.counts[key]


@dataclass
class ResultsWriter:
    """Writes the SR (and GSPS) of each source image below ``out``; one instance per run of the same models.

    ``fingerprint`` names the models and post-processing (``predict`` hashes them): the UIDs of
    the results derive from it and from the source's (:func:`derived_uid`).
    """

    out: Path
    fingerprint: str = ""
    plan: SeriesPlan = field(init=False)
    templates: ResultTemplates = field(init=False, default_factory=ResultTemplates)

    def __post_init__(self) -> None:
        self.plan = SeriesPlan(self.fingerprint)

    def write(self, source: Path, rows: np.ndarray) -> list[Path]:
        """Write ``sr/<stem>.dcm`` and, when ``rows`` holds a box, ``gsps/<stem>.dcm``; return the paths.

        ``rows`` are the image's boxes ``conf x y w h`` (original pixels, as in a submission).
        A GSPS that an earlier run left for an image now without boxes is removed. Raises
        :class:`DicomResultsError` naming ``source`` when its results cannot be written validly.
        """
        source = Path(source)
        patient_id = check_patient_id(source.stem)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        reference = read_reference(source)
        image_uid = str(reference.SOPInstanceUID)
        tracking = [derived_uid("box", str(k), self.fingerprint, image_uid) for k in range(len(rows))]
        objects = [(SR_FOLDER, build_sr)] + ([(GSPS_FOLDER, build_gsps)] if len(rows) else [])
        written = []
        for folder, build in objects:
            series_uid, instance = self.plan.next(reference.StudyInstanceUID, folder)
            identity = Identity(
                series_uid,
                derived_uid(folder, self.fingerprint, image_uid),
                instance,
                derived_uid("image", self.fingerprint, image_uid),
                tracking,
            )
            try:
                data = self.templates.encode(folder, build, reference, rows, identity)
            except (ValueError, TypeError, AttributeError, KeyError) as error:
                raise DicomResultsError(
                    source, f"{folder.upper()} cannot be built ({type(error).__name__}: {error})"
                ) from None
            path = self.out / folder / f"{patient_id}.dcm"
            atomic_write_bytes(path, data)
            written.append(path)
        if not len(rows):
            (self.out / GSPS_FOLDER / f"{patient_id}.dcm").unlink(missing_ok=True)
        return written
