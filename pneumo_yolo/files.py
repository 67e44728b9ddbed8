"""Safe file names and crash-safe writes.

Every file name derived from an input ID goes through :func:`check_patient_id`, and every
output is written under a temporary name in the same folder, then renamed into place, so
an interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

TEMP_SUFFIX = ".part"
DICOM_SUFFIXES = frozenset({".dcm"})
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
"""The inputs predict and report read: DICOMs, and pictures (converted PNGs, JPEGs)."""

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class UnsafeIdError(ValueError):
    """An input ID that cannot be used as a file name inside the output folder."""


def check_patient_id(patient_id: str) -> str:
    """Return ``patient_id`` if it is a plain file-name stem, else raise :class:`UnsafeIdError`.

    Allowed: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, so no
    separator, parent reference or absolute path can reach the file system.

    >>> check_patient_id("0004cfab-14fd-4e49-80ba-63a80b6bddd6")
    '0004cfab-14fd-4e49-80ba-63a80b6bddd6'
    """
    if not isinstance(patient_id, str) or not _SAFE_ID.fullmatch(patient_id):
        raise UnsafeIdError(
            f"patientId {patient_id!r} is not a safe file name "
            "(allowed: letters, digits, '.', '_', '-'; no path separators or '..')"
        )
    return patient_id


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name beside ``path`` that :func:`remove_stale_temp_files` recognises."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the usual permissions (``0666`` less the umask), like a plain ``open``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8, ``\\n`` line ends)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files that an interrupted run left below ``folder``; return how many."""
    stale = [p for p in folder.rglob(f"*{TEMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_errors_csv(path: Path, errors: list[tuple[str, str]]) -> None:
    """Write ``file,problem`` rows to ``path`` (atomically), or remove ``path`` when there are none."""
    if not errors:
        path.unlink(missing_ok=True)
        return
    lines = ["file,problem"] + [",".join(_csv_field(value) for value in row) for row in errors]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _csv_field(value: str) -> str:
    """Quote a CSV field when it holds a comma, a quote or a line break."""
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value


def first_line(path: Path) -> str:
    """The first line of a text file (a CSV's header), a UTF-8 byte-order mark dropped.

    Raises ``OSError`` or ``UnicodeDecodeError`` for a file that cannot be read as text.
    """
    with open(path, encoding="utf-8-sig") as handle:
        return handle.readline()
