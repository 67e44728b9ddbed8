"""DICOM node addresses: ``AE@HOST:PORT`` (where to send) and ``AE@HOST`` (who may send), checked with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

_AE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")
"""An AE title: 1 to 16 printable ASCII characters, no backslash (DICOM PS3.5, VR AE)."""
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]")


class AddressError(ValueError):
    """An address that cannot be used: says what is wrong and shows the expected form."""


@dataclass(frozen=True)
class Peer:
    """A DICOM node to associate with: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Caller:
    """A calling AE title and host that may open associations with the node."""

    ae_title: str
    host: str

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}"


def check_ae_title(title: str, what: str = "AE title") -> str:
    """``title`` without its surrounding spaces, if it is a valid AE title; else :class:`AddressError`.

    >>> check_ae_title(" PACS ")
    'PACS'
    """
    stripped = title.strip(" ")
    if not stripped or not _AE.fullmatch(stripped):
        raise AddressError(
            f"{what} {title!r} is not a valid AE title: 1 to 16 printable ASCII characters, no backslash"
        )
    return stripped


def _split_host(text: str, form: str) -> tuple[str, str]:
    title, at, host = text.rpartition("@")
    if not at or not title:
        raise AddressError(f"{text!r} is not of the form {form}")
    return check_ae_title(title), host


def _check_host(host: str, text: str, form: str) -> str:
    if not _HOST.fullmatch(host):
        raise AddressError(f"{text!r}: {host!r} is not a host name or IP address (expected {form})")
    return host.strip("[]")


def parse_peer(text: str) -> Peer:
    """``AE@HOST:PORT`` → :class:`Peer`.

    >>> parse_peer("ORTHANC@127.0.0.1:4242")
    Peer(ae_title='ORTHANC', host='127.0.0.1', port=4242)
    >>> parse_peer("PACS@pacs.example")
    Traceback (most recent call last):
    ...
    pneumo_yolo.pacs.addresses.AddressError: 'PACS@pacs.example' has no port: expected AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242
    """
    form = "AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242"
    title, rest = _split_host(text, form)
    host, colon, port = rest.rpartition(":")
    if not colon or rest.endswith("]"):
        raise AddressError(f"{text!r} has no port: expected {form}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AddressError(f"{text!r}: port {port!r} is not a number from 1 to 65535 (expected {form})")
    return Peer(title, _check_host(host, text, form), int(port))


def parse_caller(text: str) -> Caller:
    """``AE@HOST`` → :class:`Caller`.

    >>> parse_caller("ORTHANC@127.0.0.1")
    Caller(ae_title='ORTHANC', host='127.0.0.1')
    """
    form = "AE@HOST, e.g. ORTHANC@127.0.0.1"
    title, host = _split_host(text, form)
    if re.fullmatch(r".*:\d+", host) and not host.startswith("["):
        raise AddressError(f"{text!r}: give no port in an --allow entry (expected {form})")
    return Caller(title, _check_host(host, text, form))
