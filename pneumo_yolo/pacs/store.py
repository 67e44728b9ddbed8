"""C-STORE of DICOM files to a node (pynetdicom): one presentation context per SOP class and transfer syntax.

Each context proposes exactly one transfer syntax, the file's own, and the file's bytes are
streamed as they are (nothing is decoded or re-encoded), so a JPEG Baseline image is sent as it is: a context that listed several would get Explicit VR Little Endian accepted, and
the compressed file could then not be sent. A folder with more than 128 (SOP class, transfer
syntax) pairs is sent over several associations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .addresses import Peer
from .tls import TlsFiles

MAX_CONTEXTS = 128
"""Presentation contexts one association may propose (PS3.8: odd context IDs 1 to 255)."""
SUCCESS = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
"""C-STORE statuses after which the peer holds the file: success, and the storage warnings (coercion, elements discarded)."""
DEFAULT_AE_TITLE = "PNEUMOYOLO"
META_UIDS = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
DATASET_UIDS = ("SOPClassUID", "SOPInstanceUID")
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FileStatus:
    """What became of one file: ``ok``, and the DICOM status (``0x0000``) or the problem."""

    path: Path
    ok: bool
    detail: str


@dataclass(frozen=True)
class Header:
    """What a file must declare to be sent: its SOP class, instance and transfer syntax."""

    path: Path
    sop_class: str
    sop_instance: str
    transfer_syntax: str


def read_header(path: Path) -> Header | FileStatus:
    """The :class:`Header` of a DICOM file, or a failed :class:`FileStatus` that says why it cannot be sent.

    The File Meta Information says it all in a well-formed file (0.1 ms, against 2.5 ms to read
    the data set); the data set is read only where the meta lacks a UID.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_file_meta_info

    unreadable = (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError)
    try:
        meta = read_file_meta_info(path)
        values = [str(meta.get(keyword, "") or "") for keyword in META_UIDS]
        if not all(values[:2]):
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(DATASET_UIDS))
            values[:2] = [value or str(ds.get(keyword, "")) for value, keyword in zip(values, DATASET_UIDS)]
    except unreadable as error:
        return FileStatus(path, False, f"not a readable DICOM file ({type(error).__name__}: {error})")
    if not all(values):
        return FileStatus(path, False, "no SOP class, SOP instance or transfer syntax in its File Meta Information")
    return Header(path, *values)


def status_text(status: int) -> str:
    """A C-STORE status as text, with its meaning where pynetdicom knows it.

    >>> status_text(0xA700)
    '0xA700 (Failure: Refused: Out of Resources)'
    """
    from pynetdicom.status import GENERAL_STATUS, STORAGE_SERVICE_CLASS_STATUS

    meaning = {**GENERAL_STATUS, **STORAGE_SERVICE_CLASS_STATUS}.get(status)
    if not meaning:
        return f"0x{status:04X}"
    return f"0x{status:04X} ({meaning[0]}" + (f": {meaning[1]})" if meaning[1] else ")")


def association_problem(assoc, peer: Peer) -> str:
    """Why an association with ``peer`` was not established."""
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        answer = assoc.acceptor.primitive
        return f"{peer} rejected the association ({answer.result_str}, {answer.reason_str})"
    return f"no association with {peer}: the node is down, unreachable, or broke off the handshake (TLS?)"


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def c_store_files(
    paths: Sequence[Path],
    peer: Peer,
    *,
    calling_ae: str = DEFAULT_AE_TITLE,
    tls: TlsFiles | None = None,
    timeout_s: float = TIMEOUT_S,
) -> list[FileStatus]:
    """Send each file to ``peer`` by C-STORE; return one :class:`FileStatus` per path, in order."""
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = (
        True  # stream each file's own bytes after its File Meta: nothing decoded or re-encoded
    )
    found = {path: read_header(Path(path)) for path in paths}
    statuses: dict[Path, FileStatus] = {path: item for path, item in found.items() if isinstance(item, FileStatus)}
    headers = [item for item in found.values() if isinstance(item, Header)]
    pairs = sorted({(header.sop_class, header.transfer_syntax) for header in headers})
    tls_args = (tls.client_context(), peer.host) if tls else None
    for chunk in _chunks(pairs, MAX_CONTEXTS):
        ae = AE(ae_title=calling_ae)
        for timer in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, timer, timeout_s)
        for sop_class, syntax in chunk:
            ae.add_requested_context(sop_class, syntax)
        wanted = set(chunk)
        todo = [header for header in headers if (header.sop_class, header.transfer_syntax) in wanted]
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            problem = association_problem(assoc, peer)
            statuses.update({header.path: FileStatus(header.path, False, problem) for header in todo})
            continue
        try:
            for header in todo:
                statuses[header.path] = _send_one(assoc, header, peer)
        finally:
            if assoc.is_established:
                assoc.release()
    return [statuses[path] for path in paths]


def _send_one(assoc, header: Header, peer: Peer) -> FileStatus:
    if not assoc.is_established:
        return FileStatus(header.path, False, f"the association with {peer} ended before this file was sent")
    try:
        answer = assoc.send_c_store(header.path)
    except Exception as error:  # pynetdicom reads the file as it sends it: a broken file must not stop the others
        return FileStatus(header.path, False, f"cannot be sent ({type(error).__name__}: {error})")
    if "Status" not in answer:
        return FileStatus(header.path, False, f"no answer from {peer} (timeout or aborted association)")
    status = int(answer.Status)
    return FileStatus(header.path, status in SUCCESS, status_text(status))
