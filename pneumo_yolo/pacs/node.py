"""The node's DICOM side (pynetdicom): who may associate, what it stores, and the answer to each C-STORE.

- An association is refused when the calling AE title and host are not on the allow-list
  (permanent, "calling AE title not recognised"), or when the spool's disk has less free
  space than the watermark (transient, "local limit exceeded").
- CR, DX (for presentation and for processing) and Secondary Capture images of modality CR or
  DX are spooled and the C-STORE answered at once; an image seen before is answered with
  success and nothing else. SR and presentation states, our own results among them, are
  answered with success and ignored. Any other storage class (CT...) is refused with 0x0122
  (SOP class not supported), a file over ``--max-mb`` or one that would leave less free space
  than the watermark with 0xA700 (out of resources), and a file that cannot be parsed, or
  whose UIDs do not match the request, with 0xC000 (cannot understand).
- Log lines name the caller, the SOP class and the SOP Instance UID, never a patient
  attribute; pynetdicom's own logging of identifiers is switched off.
"""

from __future__ import annotations

import io
import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .addresses import Caller
from .spool import Spool, is_uid
from .tls import TlsFiles

LOG = logging.getLogger("pneumo_yolo.pacs")
CHEST_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CHEST_MODALITIES = frozenset({"CR", "DX"})
IGNORED_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.")
"""Structured reports and presentation states: answered with success, never predicted."""
SUCCESS, NOT_SUPPORTED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0x0122, 0xA700, 0xC000


@dataclass(frozen=True)
class NodeSettings:
    """The node's address, who may call it, and what it keeps."""

    ae_title: str = "PNEUMOYOLO"
    host: str = "127.0.0.1"
    port: int = 11112
    allow: tuple[Caller, ...] = ()
    allow_any: bool = False
    max_bytes: int = 64 * 2**20
    min_free_bytes: int = 1024 * 2**20
    tls: TlsFiles | None = None


def resolve_callers(callers: tuple[Caller, ...]) -> dict[str, set[str]]:
    """Each allowed AE title's set of IP addresses (host names resolved once, at start)."""
    allowed: dict[str, set[str]] = {}
    for caller in callers:
        try:
            infos = socket.getaddrinfo(caller.host, None, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise ValueError(f"--allow {caller}: host {caller.host!r} cannot be resolved ({error})") from None
        allowed.setdefault(caller.ae_title, set()).update(str(info[4][0]) for info in infos)
    return allowed


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds ``folder``."""
    return shutil.disk_usage(folder).free


class Node:
    """The event handlers of the storage SCP, bound to a spool; ``on_queued`` wakes the worker."""

    def __init__(self, settings: NodeSettings, spool: Spool, on_queued: Callable[[], None]) -> None:
        self.settings, self.spool, self.on_queued = settings, spool, on_queued
        self.allowed = resolve_callers(settings.allow)

    def caller_allowed(self, ae_title: str, address: str) -> bool:
        """Whether the allow-list (or ``--allow-any``) lets this caller associate."""
        return self.settings.allow_any or address in self.allowed.get(ae_title.strip(), set())

    def on_requested(self, event) -> None:
        """EVT_REQUESTED: refuse an unknown caller, or any caller while the spool's disk is nearly full."""
        assoc = event.assoc
        ae_title = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = str(assoc.requestor.address)
        if not self.caller_allowed(ae_title, address):
            LOG.warning("refused association from %s@%s: not on the --allow list", ae_title, address)
            self._reject(assoc, 0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
        elif free_bytes(self.spool.root) < self.settings.min_free_bytes:
            LOG.warning("refused association from %s@%s: spool disk below --min-free-mb", ae_title, address)
            self._reject(assoc, 0x02, 0x03, 0x02)  # transient, service provider (presentation), local limit exceeded

    @staticmethod
    def _reject(assoc, result: int, source: int, reason: int) -> None:
        """Send an A-ASSOCIATE-RJ and wait until it has left, as pynetdicom's own refusals do."""
        assoc.acse.send_reject(result, source, reason)
        assoc.kill()

    def on_store(self, event) -> int:
        """EVT_C_STORE: spool a chest radiograph and answer at once; ignore SR/PR; refuse the rest."""
        request = event.request
        sop_class, sop_uid = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
        caller = f"{str(event.assoc.requestor.ae_title).strip()}@{event.assoc.requestor.address}"
        if not is_uid(sop_uid):
            LOG.warning("refused a C-STORE from %s: its SOP Instance UID is not a valid UID (0xC000)", caller)
            return CANNOT_UNDERSTAND
        if sop_class.startswith(IGNORED_PREFIXES):
            LOG.info("ignored %s %s from %s (results are not predicted)", _class_name(sop_class), sop_uid, caller)
            return SUCCESS
        if sop_class not in CHEST_CLASSES:
            LOG.warning(
                "refused %s %s from %s: not a chest radiograph (0x0122)", _class_name(sop_class), sop_uid, caller
            )
            return NOT_SUPPORTED
        data = request.DataSet.getvalue()
        if len(data) > self.settings.max_bytes:
            LOG.warning("refused %s from %s: %.1f MB is over --max-mb (0xA700)", sop_uid, caller, len(data) / 2**20)
            return OUT_OF_RESOURCES
        if free_bytes(self.spool.root) - len(data) < self.settings.min_free_bytes:
            LOG.warning("refused %s from %s: spool disk below --min-free-mb (0xA700)", sop_uid, caller)
            return OUT_OF_RESOURCES
        file_bytes, problem = _checked_file(event.file_meta, data, sop_class, sop_uid)
        if problem:
            LOG.warning("refused %s from %s: %s (0xC000)", sop_uid, caller, problem)
            return CANNOT_UNDERSTAND
        try:
            accepted = self.spool.accept(sop_uid, file_bytes)
        except OSError as error:  # the disk filled up, or the spool went away: the sender keeps its copy
            LOG.error("refused %s from %s: the spool cannot keep it (%s) (0xA700)", sop_uid, caller, error.strerror)
            return OUT_OF_RESOURCES
        if not accepted:
            LOG.info("received %s from %s again: already %s, nothing new", sop_uid, caller, self.spool.state(sop_uid))
            return SUCCESS
        LOG.info("queued %s from %s", sop_uid, caller)
        self.on_queued()
        return SUCCESS


def _class_name(sop_class: str) -> str:
    from pydicom.uid import UID

    name = UID(sop_class).name
    return name if name != sop_class else f"SOP class {sop_class}"


def _checked_file(file_meta, data: bytes, sop_class: str, sop_uid: str) -> tuple[bytes, str]:
    """The received data set as a DICOM file, and ``""``; or ``b""`` and why it is refused."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    try:
        write_file_meta_info(buffer, file_meta, enforce_standard=True)
        buffer.write(data)
        ds = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
        found = (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        modality = str(ds.get("Modality", "")).upper()
        has_pixels = "PixelData" in ds and int(ds.Rows) > 0 and int(ds.Columns) > 0
        study = str(ds.get("StudyInstanceUID", ""))
    except Exception as error:  # a malformed file must never take the node down, whatever pydicom raises
        return b"", f"malformed data set ({type(error).__name__})"
    if found != (sop_class, sop_uid):
        return b"", "its SOP class or instance UID differs from the C-STORE request's"
    if not has_pixels or not study:
        return b"", "no pixel data, or no Study Instance UID"
    if sop_class == SECONDARY_CAPTURE and modality not in CHEST_MODALITIES:
        return b"", f"a Secondary Capture of modality {modality or 'none'}, not CR or DX"
    return buffer.getvalue(), ""


def start_node(settings: NodeSettings, spool: Spool, on_queued: Callable[[], None]):
    """Start the storage SCP in background threads; return pynetdicom's server (``.shutdown()`` stops it)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import Verification

    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    node = Node(settings, spool, on_queued)
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = 0
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    ae.require_called_aet = True
    handlers: list = [(evt.EVT_REQUESTED, node.on_requested), (evt.EVT_C_STORE, node.on_store)]
    ssl_context = settings.tls.server_context() if settings.tls else None
    return ae.start_server((settings.host, settings.port), block=False, ssl_context=ssl_context, evt_handlers=handlers)
