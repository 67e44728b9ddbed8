"""STOW-RS of DICOM files to a DICOMweb server (dicomweb-client), with credentials that never pass the command line.

Credentials come from ``$PNEUMO_YOLO_STOW_AUTH``, or from the file that
``$PNEUMO_YOLO_STOW_AUTH_FILE`` names: either ``Bearer TOKEN`` or ``USER:PASSWORD``. The
``--tls-*`` files, when given, verify an ``https://`` server and present our certificate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .store import FileStatus
from .tls import TlsFiles

AUTH_ENV = "PNEUMO_YOLO_STOW_AUTH"
AUTH_FILE_ENV = "PNEUMO_YOLO_STOW_AUTH_FILE"
TIMEOUT_S = 30.0


class StowError(ValueError):
    """A STOW destination that cannot be used: a bad URL or unreadable credentials."""


def read_credentials(environ: Mapping[str, str] = os.environ) -> str | None:
    """The credentials text from :data:`AUTH_ENV`, else from the file :data:`AUTH_FILE_ENV` names; ``None`` without either."""
    if environ.get(AUTH_ENV):
        return environ[AUTH_ENV].strip()
    if environ.get(AUTH_FILE_ENV):
        path = Path(environ[AUTH_FILE_ENV])
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise StowError(f"${AUTH_FILE_ENV} names {path}, which cannot be read ({error})") from None
    return None


def check_url(url: str) -> str:
    """``url`` if it is an ``http(s)://`` DICOMweb root; else :class:`StowError`.

    >>> check_url("http://127.0.0.1:8042/dicom-web/")
    'http://127.0.0.1:8042/dicom-web'
    """
    if not url.startswith(("http://", "https://")) or len(url.split("/", 3)[2]) == 0:
        raise StowError(f"--stow {url!r} is not a DICOMweb URL such as http://127.0.0.1:8042/dicom-web")
    return url.rstrip("/")


def _session(credentials: str | None, tls: TlsFiles | None):
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment: results go where --stow says, and nowhere else
    if credentials:
        if credentials.lower().startswith("bearer "):
            session.headers["Authorization"] = credentials
        elif ":" in credentials:
            user, _, password = credentials.partition(":")
            session.auth = (user, password)
        else:
            raise StowError(
                f"STOW credentials must be 'Bearer TOKEN' or 'USER:PASSWORD' (${AUTH_ENV} or ${AUTH_FILE_ENV})"
            )
    if tls:
        session.verify = str(tls.ca)
        session.cert = (str(tls.cert), str(tls.key))
    return session


def stow_files(
    paths: Sequence[Path], url: str, *, tls: TlsFiles | None = None, credentials: str | None = None
) -> list[FileStatus]:
    """Store each file on the DICOMweb server at ``url`` (one request per file); one :class:`FileStatus` per path."""
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient
    from pydicom.errors import InvalidDicomError

    client = DICOMwebClient(url=check_url(url), session=_session(credentials, tls))
    statuses = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as error:
            statuses.append(FileStatus(path, False, f"not a readable DICOM file ({type(error).__name__}: {error})"))
            continue
        try:
            answer = client.store_instances(datasets=[ds])
        except requests.HTTPError as error:
            code = error.response.status_code if error.response is not None else "?"
            statuses.append(FileStatus(path, False, f"STOW-RS answered HTTP {code}"))
            continue
        except requests.RequestException as error:
            statuses.append(FileStatus(path, False, f"cannot reach {url} ({type(error).__name__})"))
            continue
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            statuses.append(FileStatus(path, False, f"STOW-RS refused it (failure reason {reason})"))
        else:
            statuses.append(FileStatus(path, True, "stored"))
    return statuses
