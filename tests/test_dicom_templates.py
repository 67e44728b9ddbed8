"""Results filled into templates are, byte for byte, the results highdicom builds; a shape it cannot template is built by highdicom."""

from __future__ import annotations

import zlib
from datetime import datetime

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pneumo_yolo.dicom.builders import Identity, build_gsps, build_sr
from pneumo_yolo.dicom.reference import reference_header
from pneumo_yolo.dicom.shapes import ResultTemplates, highdicom_file, shape_of
from pneumo_yolo.dicom.templates import Slot, Template, TemplateError, elements, encode_body
from pneumo_yolo.dicom.write import build_dataset

NOW = datetime(2026, 12, 7, 3, 4, 5, 678901)
BUILDERS = {"sr": build_sr, "gsps": build_gsps}


def source(patient_id: str, rng: np.random.Generator, **values: object):
    """A source header as ``read_reference`` gives it: an RSNA-format image of ``patient_id`` with ``values`` set."""
    ds = build_dataset(np.zeros((64, 48), np.uint8), patient_id)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{rng.integers(10**12)}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{rng.integers(10**12)}.1"
    return reference_header(ds, f"{patient_id}.dcm")


def rows_for(n_boxes: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boxes`` random ``conf x y w h`` rows, some reaching past the image's edge."""
    return np.c_[rng.uniform(0.05, 1, n_boxes), rng.uniform(-5, 60, (n_boxes, 2)), rng.uniform(1, 40, (n_boxes, 2))]


def identity_for(n_boxes: int, rng: np.random.Generator) -> Identity:
    uids = [f"2.25.{rng.integers(10**15)}{k}" for k in range(n_boxes + 3)]
    return Identity(uids[0], uids[1], int(rng.integers(1, 10**6)), uids[2], uids[3:])


SOURCES = {
    "rsna": {},
    "a name in utf-8": {"PatientName": "Müller^Jürgen", "ReferringPhysicianName": "Ødegård^Åse"},
    "empty names and a birth date": {"PatientName": "", "PatientID": "", "PatientBirthDate": "19500101"},
    "study values": {"AccessionNumber": "A12", "StudyID": "7", "PatientSex": "F", "StudyTime": "101010"},
    "monochrome1 with a window": {
        "PhotometricInterpretation": "MONOCHROME1",
        "WindowCenter": "40",
        "WindowWidth": "400",
    },
    "two windows and a rescale": {
        "WindowCenter": ["40", "300"],
        "WindowWidth": ["400", "1500"],
        "RescaleSlope": "1.5",
        "RescaleIntercept": "-1024",
    },
    "a DX image": {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.1", "Modality": "DX", "Rows": 70, "Columns": 3000},
}


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("name", SOURCES)
def test_templated_results_are_byte_identical_to_highdicom_s(kind: str, name: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{kind} {name}".encode()))
    templates = ResultTemplates(clock=lambda: NOW)
    for n_boxes in range(0 if kind == "sr" else 1, 4):
        for image in range(3):  # the first image of a shape makes its template, the others are filled in
            reference = source(f"p{image}", rng, **SOURCES[name])
            rows, identity = rows_for(n_boxes, rng), identity_for(n_boxes, rng)
            made = templates.encode(kind, BUILDERS[kind], reference, rows, identity)
            assert made == highdicom_file(BUILDERS[kind], reference, rows, identity, NOW), (n_boxes, image)
        assert templates.built[shape_of(kind, reference, n_boxes)] is not None, "highdicom built every one"


def test_a_shape_whose_template_differs_from_highdicom_is_always_built_by_highdicom() -> None:
    def counting_build(reference, rows, identity):  # a value derived from the source that no slot covers
        dataset = build_sr(reference, rows, identity)
        dataset.ImageComments = f"{len(str(reference.PatientID))} characters"
        return dataset

    rng = np.random.default_rng(1)
    templates = ResultTemplates(clock=lambda: NOW)
    for patient_id in ("a", "bb", "ccc"):
        reference, rows, identity = source(patient_id, rng), rows_for(1, rng), identity_for(1, rng)
        made = templates.encode("sr", counting_build, reference, rows, identity)
        assert made == highdicom_file(counting_build, reference, rows, identity, NOW)
    assert list(templates.built.values()) == [None]


def test_a_template_fills_values_of_any_length() -> None:
    body = encode_body(_tiny(["2.25.99", "text"]))
    template = Template.cut(body, {("UI", b"2.25.99\x00"): Slot("uid", "uid"), ("LO", b"text"): Slot("text", "text")})
    assert len(template.holes) == 2
    filled = template.fill({"uid": "1.2.840.10008.1.2.3.4.5.6.7.8.9", "text": "ä"})
    assert filled == encode_body(_tiny(["1.2.840.10008.1.2.3.4.5.6.7.8.9", "ä"]))


def test_the_walk_refuses_items_of_defined_length() -> None:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, _tiny(["1.2", "x"]))  # pydicom's own lengths: defined
    with pytest.raises(TemplateError, match="defined length"):
        list(elements(buffer.getvalue()))


def _tiny(values: list[str]) -> Dataset:
    """A data set with the values in a nested item: a UID and a text."""
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.ReferencedSOPInstanceUID, item.ContentDescription = values
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ReferencedImageSequence = [item]
    return ds
