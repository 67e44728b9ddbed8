"""``pneumo-yolo send``: push a folder of DICOM files (a ``--dicom-out`` folder, or any) to a node or a DICOMweb server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .addresses import Peer
from .store import DEFAULT_AE_TITLE, FileStatus, c_store_files
from .stow import read_credentials, stow_files
from .tls import TlsFiles


class SendError(ValueError):
    """A ``send`` that cannot start: nothing to send."""


@dataclass(frozen=True)
class Destination:
    """Where results go: a node by C-STORE (``peer``) or a DICOMweb server by STOW-RS (``stow``); exactly one."""

    peer: Peer | None = None
    stow: str | None = None
    calling_ae: str = DEFAULT_AE_TITLE
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.stow is None):
            raise ValueError("a destination is either a peer (C-STORE) or a STOW-RS URL")

    def __str__(self) -> str:
        return str(self.peer) if self.peer else str(self.stow)

    def send(self, paths: Sequence[Path]) -> list[FileStatus]:
        """Send ``paths``; one status per path, in order. STOW credentials are read from the environment each time."""
        if not paths:
            return []
        if self.peer is not None:
            return c_store_files(paths, self.peer, calling_ae=self.calling_ae, tls=self.tls)
        assert self.stow is not None
        return stow_files(paths, self.stow, tls=self.tls, credentials=read_credentials())


def list_dicom_files(source: Path) -> list[Path]:
    """``source`` itself, or its ``.dcm`` files and files without a suffix (searched recursively, hidden ones skipped), sorted."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise SendError(f"{source} does not exist")
    paths = sorted(
        path
        for path in source.rglob("*")
        if path.is_file()
        and (path.suffix.lower() == ".dcm" or not path.suffix)
        and not any(part.startswith(".") for part in path.relative_to(source).parts)
    )
    if not paths:
        raise SendError(f"{source} holds no .dcm files (searched recursively)")
    return paths


def send_folder(source: Path, destination: Destination) -> list[FileStatus]:
    """Send every DICOM file of ``source`` to ``destination``; one :class:`FileStatus` per file."""
    return destination.send(list_dicom_files(source))
