"""Safe file names, crash-safe writes, and the check of a command's outputs before it starts.

Every file name derived from an input ID goes through :func:`check_patient_id`, and every
output is written under a temporary name in the same folder, then renamed into place, so
an interrupted run never leaves a half-written file under a final name. Such temporary names,
``.<name>.<pid>.<hex>.part``, say which process wrote them, so a later run can remove those of
runs that died (:func:`remove_stale_parts`). :func:`check_outputs` is the one check, shared by
every command that writes, that its outputs can be written and overwrite no input and no other
output.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

TEMP_SUFFIX = ".part"
DICOM_SUFFIXES = frozenset({".dcm"})
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
"""The inputs predict and report read: DICOMs, and pictures (converted PNGs, JPEGs)."""

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class UnsafeIdError(ValueError):
    """An input ID that cannot be used as a file name inside the output folder."""


class OutputError(ValueError):
    """An output that cannot be written where asked, or that would overwrite an input or another output (a usage error)."""


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
    """A unique hidden name beside ``path``, ``.<name>.<pid>.<hex>.part``, that :func:`remove_stale_parts` and :func:`remove_stale_temp_files` recognise."""
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


def staging_folder(target: Path) -> Path:
    """A new empty hidden folder beside ``target`` (``.<name>.<pid>.<hex>.part``) to write a run's files into before they move into place."""
    folder = temporary_sibling(target)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    return folder


def remove_stale_parts(target: Path) -> int:
    """Delete the temporary files and staging folders beside ``target`` of runs whose process is gone; return how many.

    Those of a live process (another run writing the same output, or this one) are kept.
    """
    if not target.parent.is_dir():
        return 0
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.\w+{re.escape(TEMP_SUFFIX)}")
    return remove_left_by_gone_processes(target.parent.iterdir(), pattern)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (this one and other users' included)."""
    import psutil

    return pid == os.getpid() or psutil.pid_exists(pid)


def remove_stale_temp_files(folder: Path) -> int:
    """Delete the temporary files (:func:`temporary_sibling`) that runs whose process is gone left below ``folder``; return how many.

    Those of a live process (another run writing there, or this one) are kept.
    """
    pattern = re.compile(rf"\..+\.(\d+)\.[0-9a-f]+{re.escape(TEMP_SUFFIX)}")
    candidates = folder.rglob(f"*{TEMP_SUFFIX}") if folder.is_dir() else ()
    return remove_left_by_gone_processes((path for path in candidates if path.is_file()), pattern)


def remove_left_by_gone_processes(paths: Iterable[Path], pattern: re.Pattern[str]) -> int:
    """Remove the ``paths`` whose name ``pattern`` matches with the id of a process that is gone (its group 1); return how many went."""
    stale = [path for path in paths if (match := pattern.fullmatch(path.name)) and not process_alive(int(match[1]))]
    return sum(_removed(path) for path in stale)


def _removed(path: Path) -> bool:
    """Remove a file, or a folder with what it holds; whether it is gone (another user's, or one in a read-only place, stays)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            return False
    return not path.exists() and not path.is_symlink()


def write_errors_csv(path: Path, errors: list[tuple[str, str]]) -> None:
    """Write ``file,problem`` rows to ``path`` (atomically), or remove ``path`` when there are none."""
    if not errors:
        path.unlink(missing_ok=True)
        return
    text = io.StringIO()
    bare_cr = any("\r" in value for row in errors for value in row)  # with \n line ends csv would leave a \r unquoted
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL)
    writer.writerow(["file", "problem"])
    writer.writerows(errors)
    atomic_write_text(path, text.getvalue())


def first_line(path: Path) -> str:
    """The first line of a text file (a CSV's header), a UTF-8 byte-order mark dropped.

    Raises ``OSError`` or ``UnicodeDecodeError`` for a file that cannot be read as text.
    """
    with open(path, encoding="utf-8-sig") as handle:
        return handle.readline()


Paths = Path | Sequence[Path] | None


def check_outputs(
    files: Mapping[str, Path | None], folders: Mapping[str, Path | None] = {}, inputs: Mapping[str, Paths] = {}
) -> None:
    """Refuse, before any work, outputs that cannot be written or that would overwrite something the command needs.

    ``files`` and ``folders`` are the outputs by option name (``{"--out": Path("sub.csv")}``;
    ``None``: not given), ``inputs`` what the command reads. Raises :class:`OutputError` when

    - an output is the same file as an input or as another output (also through links);
    - an output folder is an input folder, or lies inside one (its files would be read as inputs next time);
    - the folder an output goes into cannot be written: a file stands in its way, or writing
      there fails (read-only place, no permission). Only a probe file is created, and removed;
      missing folders are not created.

    >>> check_outputs({"--out": Path("a.csv"), "--save-raw": Path("./a.csv")})
    Traceback (most recent call last):
    ...
    pneumo_yolo.files.OutputError: --save-raw a.csv is the same file as --out: choose another --save-raw
    """
    given = [(name, Path(path)) for name, path in inputs.items() if isinstance(path, (str, Path))]
    given += [
        (name, Path(path))
        for name, paths in inputs.items()
        if paths is not None and not isinstance(paths, (str, Path))
        for path in paths
    ]
    outputs = [(name, Path(path), False) for name, path in files.items() if path is not None]
    outputs += [(name, Path(path), True) for name, path in folders.items() if path is not None]
    for index, (name, path, is_folder) in enumerate(outputs):
        for other, taken, _ in outputs[:index]:
            if _same(path, taken):
                raise OutputError(
                    f"{name} {path} is the same {'folder' if is_folder else 'file'} as {other}: choose another {name}"
                )
        for other, source in given:
            if _same(path, source):
                raise OutputError(
                    f"{name} {path} is also {other}: writing it would destroy that input; choose another {name}"
                )
            if is_folder and source.is_dir() and source.resolve() in path.resolve().parents:
                raise OutputError(
                    f"{name} {path} lies inside {other} {source}: its files would be read as inputs; choose a folder outside it"
                )
    for name, path, is_folder in outputs:
        _check_writable(f"{name} {path}", path if is_folder else path.parent)


def _same(path: Path, other: Path) -> bool:
    """Whether two paths name the same file or folder: equal once resolved, or the same inode."""
    if path.resolve() == other.resolve():
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def _check_writable(output: str, folder: Path) -> None:
    """Raise :class:`OutputError` naming ``output`` unless files can be created in ``folder`` (or, where it does not exist yet, in its nearest existing parent)."""
    place = folder.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise OutputError(f"{output}: {place} is a file, so nothing can be written below it; choose another place")
    probe = place / f".pneumo-yolo-probe.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise OutputError(
            f"{output}: cannot write in {place} ({error.strerror or error}); choose a place you can write to"
        ) from None
    probe.unlink(missing_ok=True)
