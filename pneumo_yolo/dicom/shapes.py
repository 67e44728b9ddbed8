"""The SR and GSPS of an image as :mod:`.templates` make them: their shape, their slots, and the templates of a run.

A result's *shape* (:func:`shape_of`) is all that it takes from its inputs besides the values of
its slots (:func:`slot_values`): its kind, its number of boxes, the source's sex and which of its
patient and study values are empty, and its display pipeline. :class:`ResultTemplates` builds each
shape's template from sentinel inputs (:func:`sentinel_inputs`) the first time the shape is seen,
checks it against highdicom on that image, and fills it for every later image of the shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from .builders import Identity, confidence_label, polyline
from .reference import DISPLAY, DISPLAY_CODES, DISPLAY_NUMBERS, DISPLAY_SEQUENCES, PATIENT_STUDY, REFERENCE_UIDS
from .templates import (
    SENTINEL_ROOT,
    TIMESTAMPS,
    Slot,
    Template,
    TemplateError,
    encode,
    encode_body,
    encode_meta,
    encode_value,
    stamp,
)

Builder = Callable[..., Any]
"""``build_sr`` or ``build_gsps``: ``(reference, rows, identity)`` → a highdicom data set."""
SIZES = ("Rows", "Columns")
"""The source's size: slots (a GSPS's displayed area), not part of the shape."""
UID_SLOTS = tuple(keyword for keyword in REFERENCE_UIDS if keyword != "SOPClassUID")
"""The source's UIDs that differ from image to image (its SOP class is known to highdicom, so part of the shape)."""
SLOT_VRS = {
    "uid": ("UI",),
    "text": ("AE", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT"),
    "decimal": ("DS", "FD"),
    "count": ("US", "SL", "UL"),
    "points": ("FL",),
}
"""The VRs in which each kind of slot value may be written."""
WINDOW = ("WindowCenter", "WindowWidth")
"""highdicom restates a window as floats, and a rescale as the source gives it."""
MOST_BOXES = 32
"""Results with more boxes than this are built by highdicom: a sentinel confidence per box must stay below 100 %."""
SENTINEL_NOW = datetime(1903, 4, 5, 6, 7, 8, 91011)
SENTINEL_TEXT = {"PN": "Zqx^Sentinel{}", "LO": "ZQX-SENTINEL-{}", "SH": "ZQXS{}", "DA": "1902030{}", "TM": "01020{}.5"}


def shape_of(kind: str, reference, n_boxes: int) -> tuple:
    """All that the result of ``kind`` for ``reference`` and ``n_boxes`` boxes takes from them besides its slots."""
    empty = tuple(not str(reference.get(keyword, "")) for keyword in PATIENT_STUDY)
    numbers = tuple(
        len(_values(reference[keyword].value)) if keyword in reference else 0 for keyword in DISPLAY_NUMBERS
    )
    fixed = [keyword for keyword in DISPLAY if keyword not in SIZES] + [*DISPLAY_CODES, *DISPLAY_SEQUENCES]
    display = tuple(repr(reference.get(keyword)) for keyword in ["SpecificCharacterSet", "SOPClassUID", *fixed])
    return kind, n_boxes, str(reference.get("PatientSex", "")), empty, numbers, display


def _values(value: object) -> list:
    """The values of a possibly multi-valued element."""
    from pydicom.multival import MultiValue

    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def slot_values(reference, rows: np.ndarray, identity: Identity, now: datetime) -> dict[str, tuple[str, object]]:
    """Each slot's kind and value in the results of ``reference`` with ``rows`` (``conf x y w h``) and ``identity``."""
    values: dict[str, tuple[str, object]] = {keyword: ("uid", str(reference[keyword].value)) for keyword in UID_SLOTS}
    for keyword in PATIENT_STUDY:
        if keyword != "PatientSex" and str(reference.get(keyword, "")):
            values[keyword] = ("text", str(reference[keyword].value))
    for keyword in DISPLAY_NUMBERS:
        if keyword in reference:
            numbers = _values(reference[keyword].value)
            values[keyword] = (
                ("decimal", [float(n) for n in numbers])
                if keyword in WINDOW
                else ("text", "\\".join(map(str, numbers)))
            )
    size = (int(reference.Columns), int(reference.Rows))
    values["Columns"], values["Rows"], values["size"] = ("count", size[0]), ("count", size[1]), ("count", size)
    values["series"], values["sop"] = ("uid", identity.series_uid), ("uid", identity.sop_uid)
    values["instance"], values["image"] = ("text", str(identity.instance)), ("uid", identity.image_tracking_uid)
    for k, ((conf, x, y, w, h), uid) in enumerate(zip(rows, identity.tracking_uids, strict=True)):
        outline = polyline(x, y, w, h, size)
        values[f"tracking {k}"], values[f"outline {k}"] = ("uid", uid), ("points", outline.ravel())
        values[f"anchor {k}"], values[f"label {k}"] = ("points", outline[0]), ("text", confidence_label(float(conf)))
        values[f"certainty {k}"] = ("decimal", round(float(conf) * 100, 2))
    for vr, form in TIMESTAMPS.items():
        values[f"now {vr}"] = ("text", now.strftime(form))
    return values


def sentinel_inputs(reference, n_boxes: int) -> tuple[object, np.ndarray, Identity]:
    """``reference``, ``n_boxes`` rows and an identity whose every slot value is unique, of the same shape.

    Sizes, coordinates and confidences are chosen so that no two slots encode alike (30,011 × 30,013
    pixels, confidences from 43.21 % by 1.23 %).
    """
    from copy import deepcopy

    sentinel = deepcopy(reference)
    for k, keyword in enumerate(UID_SLOTS):
        setattr(sentinel, keyword, f"{SENTINEL_ROOT}.{k + 1}")
    for k, keyword in enumerate(PATIENT_STUDY):
        vr = PATIENT_STUDY[keyword]
        if keyword != "PatientSex" and str(reference.get(keyword, "")):
            setattr(sentinel, keyword, SENTINEL_TEXT[vr].format(k))
    for k, keyword in enumerate(DISPLAY_NUMBERS):
        if keyword in reference:
            setattr(sentinel, keyword, f"{7771 + k}.25")
    sentinel.Rows, sentinel.Columns = 30011, 30013
    box = np.arange(n_boxes)
    rows = np.c_[0.4321 + 0.0123 * box, 1001.25 + 37.5 * box, 2002.75 + 41.25 * box, 301.5 + box, 401.75 + box]
    identity = Identity(
        series_uid=f"{SENTINEL_ROOT}.901",
        sop_uid=f"{SENTINEL_ROOT}.902",
        instance=987654321,
        image_tracking_uid=f"{SENTINEL_ROOT}.903",
        tracking_uids=[f"{SENTINEL_ROOT}.{1000 + k}" for k in range(n_boxes)],
    )
    return sentinel, rows.reshape(-1, 5), identity


def cut_template(build: Builder, reference, n_boxes: int) -> tuple[str, Template]:
    """The SOP class and template of ``build``'s result for ``reference``'s shape with ``n_boxes`` boxes (highdicom, once)."""
    sentinel, rows, identity = sentinel_inputs(reference, n_boxes)
    dataset = build(sentinel, rows, identity)
    stamp(dataset, SENTINEL_NOW)
    sentinels: dict[tuple[str, bytes], Slot] = {}
    for name, (kind, value) in slot_values(sentinel, rows, identity, SENTINEL_NOW).items():
        for vr in SLOT_VRS[kind]:
            key = (vr, encode_value(vr, kind, value))
            if key in sentinels:
                raise TemplateError(f"the sentinels of {sentinels[key].name} and {name} encode alike")
            sentinels[key] = Slot(name, kind)
    return str(dataset.SOPClassUID), Template.cut(encode_body(dataset), sentinels)


@dataclass
class ResultTemplates:
    """The templates of one run, by shape; ``None`` for a shape that highdicom alone builds."""

    built: dict[tuple, tuple[str, Template] | None] = field(default_factory=dict)
    """Each shape's SOP class and template."""
    clock: Callable[[], datetime] = datetime.now
    """The moment a result is made (its creation and content dates and times)."""

    def encode(self, kind: str, build: Builder, reference, rows: np.ndarray, identity: Identity) -> bytes:
        """The DICOM file of ``build``'s result: filled into its shape's template, else built by highdicom."""
        now = self.clock()
        shape = shape_of(kind, reference, len(rows))
        if shape not in self.built:
            return self.check(shape, build, reference, rows, identity, now)
        known = self.built[shape]
        if known is None:
            return highdicom_file(build, reference, rows, identity, now)
        return filled(*known, reference, rows, identity, now)

    def check(
        self, shape: tuple, build: Builder, reference, rows: np.ndarray, identity: Identity, now: datetime
    ) -> bytes:
        """Cut the template of ``shape`` and keep it if it fills into highdicom's very bytes for this image."""
        expected = highdicom_file(build, reference, rows, identity, now)
        self.built[shape] = None
        if len(rows) <= MOST_BOXES:
            try:
                sop_class, template = cut_template(build, reference, len(rows))
            except TemplateError:
                return expected
            if expected == filled(sop_class, template, reference, rows, identity, now):
                self.built[shape] = sop_class, template
        return expected


def filled(sop_class: str, template: Template, reference, rows: np.ndarray, identity: Identity, now: datetime) -> bytes:
    """The DICOM file of a result of ``sop_class``: its file meta, and ``template`` filled with this image's slot values."""
    values = {name: value for name, (_, value) in slot_values(reference, rows, identity, now).items()}
    return encode_meta(sop_class, identity.sop_uid) + template.fill(values)


def highdicom_file(build: Builder, reference, rows: np.ndarray, identity: Identity, now: datetime) -> bytes:
    """``build``'s result made by highdicom, stamped ``now`` and encoded as a template encodes it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*")  # RSNA names are single-component ids
        dataset = build(reference, rows, identity)
    stamp(dataset, now)
    return encode(dataset)
