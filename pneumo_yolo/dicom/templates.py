"""Results at the speed of the model: an image's SR or GSPS filled into bytes that highdicom built once.

highdicom takes 50 to 100 ms to build one image's SR and GSPS (pydicom a third of it to encode
them), more than the model takes per image. Results of the same *shape* (the kind, the number of
boxes, which header values of the source are empty, its display pipeline) differ only in values:
UIDs, names, dates, sizes, coordinates, confidences. So the first time a shape is seen, highdicom
builds it from sentinel inputs, each value unique (:func:`sentinel_inputs`), and the encoded data
set is cut at every element that holds a sentinel, a *hole* (:class:`Template`). Each later image's
result is the pieces joined with its own values encoded in the holes: about a millisecond.
Sequences and items are encoded with undefined length (:func:`encode`), so a value of another
length changes nothing around it.

A template is trusted only once it has made, from the real image that asked for it, the very bytes
that highdicom makes (:meth:`Templates.check`); a shape whose template fails that is always built by
highdicom.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

PREAMBLE = b"\x00" * 128 + b"DICM"
GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
"""The tag, VR and length of (0002,0000) File Meta Information Group Length; its value follows."""
TIMESTAMPS = {"DA": "%Y%m%d", "TM": "%H%M%S.%f", "DT": "%Y%m%d%H%M%S.%f"}
"""The formats of the moment a result is made, by VR: every date, time and date-time that is not the source's."""
SOURCE_DATES = frozenset({"StudyDate", "StudyTime", "PatientBirthDate"})
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"})
NUMBER_FORMATS = {"FL": "<f4", "FD": "<f8", "US": "<u2", "SS": "<i2", "UL": "<u4", "SL": "<i4"}
SENTINEL_ROOT = "2.25.271828182845904523536028747135266249775"
UNDEFINED = 0xFFFFFFFF


class TemplateError(ValueError):
    """Bytes that a template cannot be cut from: sentinels that collide, or an encoding it does not know."""


@dataclass(frozen=True)
class Slot:
    """A value that differs from image to image: its name and its kind (``uid``, ``text``, ``decimal``, ``count``, ``points``)."""

    name: str
    kind: str


def encode_value(vr: str, kind: str, value: object) -> bytes:
    """``value`` as the bytes of an element of ``vr``, padded to an even length as pydicom pads it.

    >>> encode_value("UI", "uid", "1.2.3"), encode_value("DS", "decimal", 88.12), encode_value("FL", "points", [1, 2])
    (b'1.2.3\\x00', b'88.12 ', b'\\x00\\x00\\x80?\\x00\\x00\\x00@')
    """
    if vr in NUMBER_FORMATS:
        return np.asarray(value, NUMBER_FORMATS[vr]).tobytes()
    if vr == "DS" and kind == "decimal":
        from pydicom.valuerep import DS

        value = "\\".join(str(DS(float(number), auto_format=True)) for number in np.ravel(np.asarray(value, float)))
    if vr == "UI":
        data = str(value).encode("ascii")
        return data + b"\x00" * (len(data) % 2)
    if vr not in TEXT_VRS:
        raise TemplateError(f"no encoding for a value of VR {vr}")
    data = str(value).encode("utf-8")
    return data + b" " * (len(data) % 2)


def elements(data: bytes) -> Iterator[tuple[int, str, int, int]]:
    """Each element of an explicit-VR little-endian data set ``(start, VR, value start, value length)``, nested ones included.

    Sequences and items must have undefined length (:func:`encode` writes them so): the walk then
    goes straight through them.
    """
    position = 0
    while position < len(data):
        group, element = struct.unpack_from("<HH", data, position)
        if group == 0xFFFE:  # an item, or the end of an item or a sequence
            (length,) = struct.unpack_from("<I", data, position + 4)
            if element == 0xE000 and length != UNDEFINED:
                raise TemplateError("an item of defined length")
            position += 8
            continue
        vr = data[position + 4 : position + 6].decode("ascii")
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, position + 8)
            value = position + 12
        else:
            (length,) = struct.unpack_from("<H", data, position + 6)
            value = position + 8
        if vr == "SQ":
            if length != UNDEFINED:
                raise TemplateError("a sequence of defined length")
            position = value
            continue
        yield position, vr, value, length
        position = value + length


def _header(tag_and_vr: bytes, vr: str, length: int) -> bytes:
    if vr in LONG_VRS:
        return tag_and_vr + struct.pack("<HI", 0, length)
    if length > 0xFFFF:
        raise TemplateError(f"a value of {length} bytes is too long for VR {vr}")
    return tag_and_vr + struct.pack("<H", length)


@dataclass(frozen=True)
class Template:
    """An encoded data set cut at its holes: ``pieces`` around ``holes`` (the tag and VR of each, and its slot).

    >>> template = Template.cut(b"\\x08\\x00\\x18\\x00UI\\x04\\x002.9\\x00", {("UI", b"2.9\\x00"): Slot("sop", "uid")})
    >>> template.fill({"sop": "1.2.345"})
    b'\\x08\\x00\\x18\\x00UI\\x08\\x001.2.345\\x00'
    """

    pieces: tuple[bytes, ...]
    holes: tuple[tuple[bytes, str, Slot], ...]

    @classmethod
    def cut(cls, body: bytes, sentinels: Mapping[tuple[str, bytes], Slot]) -> Template:
        """Cut ``body`` at each element whose whole value is a sentinel's encoding (``(VR, bytes)`` → its slot)."""
        pieces, holes, kept = [], [], 0
        for start, vr, value, length in elements(body):
            slot = sentinels.get((vr, body[value : value + length]))
            if slot is not None:
                pieces.append(body[kept:start])
                holes.append((body[start : start + 6], vr, slot))
                kept = value + length
        pieces.append(body[kept:])
        return cls(tuple(pieces), tuple(holes))

    def fill(self, values: Mapping[str, object]) -> bytes:
        """The data set with each hole holding its slot's value from ``values``."""
        parts = [self.pieces[0]]
        for (tag_and_vr, vr, slot), piece in zip(self.holes, self.pieces[1:]):
            data = encode_value(vr, slot.kind, values[slot.name])
            parts += [_header(tag_and_vr, vr, len(data)), data, piece]
        return b"".join(parts)


def undefined_lengths(dataset) -> None:
    """Mark every sequence and item of ``dataset`` to be encoded with undefined length (recursively)."""
    for element in dataset:
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
                undefined_lengths(item)


def stamp(dataset, now: datetime) -> None:
    """Set every date, time and date-time of ``dataset`` that is not the source's to ``now`` (recursively)."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                stamp(item, now)
        elif element.VR in TIMESTAMPS and element.keyword not in SOURCE_DATES and not element.is_empty:
            element.value = now.strftime(TIMESTAMPS[element.VR])


def encode_body(dataset) -> bytes:
    """``dataset`` without its file meta, explicit VR little endian, sequences and items of undefined length."""
    from pydicom.filewriter import write_dataset

    undefined_lengths(dataset)
    buffer = _explicit_little_endian()
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def _explicit_little_endian():
    """An in-memory pydicom buffer that encodes explicit VR little endian."""
    from pydicom.filebase import DicomBytesIO

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    return buffer


def encode_meta(sop_class: str, sop_uid: str) -> bytes:
    """The preamble and the file meta information of a result (explicit VR little endian), as pydicom writes them."""
    rest = _meta_template(sop_class).fill({"sop": sop_uid})
    return PREAMBLE + GROUP_LENGTH + struct.pack("<I", len(rest)) + rest


@functools.lru_cache(maxsize=16)
def _meta_template(sop_class: str) -> Template:
    """The file meta information after its group length, cut at the SOP Instance UID."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    sentinel = f"{SENTINEL_ROOT}.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sentinel
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = _explicit_little_endian()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    encoded = buffer.getvalue()
    if not encoded.startswith(GROUP_LENGTH):
        raise TemplateError("file meta information that does not start with its group length")
    return Template.cut(
        encoded[len(GROUP_LENGTH) + 4 :], {("UI", encode_value("UI", "uid", sentinel)): Slot("sop", "uid")}
    )


def encode(dataset) -> bytes:
    """A highdicom result as a DICOM file: :func:`encode_meta` and :func:`encode_body` (explicit VR little endian)."""
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(dataset, "file_meta", {})
    if meta.get("TransferSyntaxUID", ExplicitVRLittleEndian) != ExplicitVRLittleEndian:
        raise TemplateError(f"results are written explicit VR little endian, not {meta['TransferSyntaxUID'].value}")
    return encode_meta(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)) + encode_body(dataset)
