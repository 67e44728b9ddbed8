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

import contextlib
import csv
import errno
import io
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

TEMP_SUFFIX = ".part"
DICOM_SUFFIXES = frozenset({".dcm"})
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
"""The inputs predict and report read: DICOMs, and pictures (converted PNGs, JPEGs)."""

_TEMP_NAME = re.compile(rf"\.(.+)\.\d+\.[0-9a-f]+{re.escape(TEMP_SUFFIX)}")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class UnsafeIdError(ValueError):
    """An input ID that cannot be used as a file name inside the output folder."""


class OutputError(ValueError):
    """An output that cannot be written where asked, or that would overwrite an input or another output (a usage error)."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or SIGTERM, SIGHUP), with what it had written: ``"5 of 12 images converted"``.

    Raised from the ``KeyboardInterrupt`` by the loops that write many files, so that the one line
    the command prints says how far it got (``resumes``: whether a rerun of the same command
    continues from there, rather than starting over).
    """

    def __init__(self, done: str, resumes: bool = True) -> None:
        super().__init__(done)
        self.done = done
        self.resumes = resumes


FILE_SYSTEM_REFUSALS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
}
"""The refusals of a file system that no retry fixes by itself, with the words the one-line message uses."""


def os_error_line(error: OSError) -> str:
    """One line for an ``OSError`` that ended a run: the file, the reason, and what to do for a full disk.

    >>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "out/a.png"))
    'cannot write out/a.png: no space left on the device; free some space and rerun the same command'
    """
    own = error.strerror is not None and error.errno is not None and error.strerror != os.strerror(error.errno)
    if own:  # a reason written for this error, with its advice: kept as it is
        return f"{error.filename}: {error.strerror}" if error.filename is not None else str(error.strerror)
    reason = FILE_SYSTEM_REFUSALS.get(error.errno or 0) or (error.strerror or str(error)).lower()
    where = error.filename if error.filename is not None else ""
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    subject = f"cannot write {where}".strip() if error.errno in FILE_SYSTEM_REFUSALS else where
    advice = {
        errno.ENOSPC: "; free some space and rerun the same command",
        errno.EDQUOT: "; free some space and rerun the same command",
        errno.EROFS: "; choose a place that can be written",
        errno.ENAMETOOLONG: "; choose a shorter name",
    }.get(error.errno or 0, "")
    return f"{subject}: {reason}{advice}" if subject else f"{reason}{advice}"


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

    The file gets the usual permissions (``0666`` less the umask), like a plain ``open``. On
    failure the temporary file is removed and the ``OSError`` names ``path`` (:func:`named`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise named(error, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def named(error: OSError, path: Path | None = None) -> OSError:
    """``error`` naming the output the user asked for: ``path`` where it names no file (a full disk
    says only "No space left on device"), and the final name of a temporary file or staging folder.

    >>> named(OSError(28, "No space left on device", "out/.raw.csv.12.ab12.part/raw.csv")).filename
    'out/raw.csv'
    """
    filename = error.filename if error.filename is not None else path
    if filename is None:
        return error
    parts = [_TEMP_NAME.sub(r"\1", part) for part in Path(filename).parts]
    if len(parts) > 1 and parts[-1] == parts[-2]:  # a file staged in a folder of its own name
        parts.pop()
    final = os.fspath(Path(*parts))
    if final == error.filename:
        return error
    return type(error)(error.errno, error.strerror, final)


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
    """Whether process ``pid`` may still write: it exists (this one, other users' too) and is no zombie (dead, not reaped)."""
    import psutil

    if pid == os.getpid():
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # there, but not ours to look at
        return True


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


Paths = Path | Sequence[Path] | None


def check_outputs(
    files: Mapping[str, Path | None], folders: Mapping[str, Path | None] = {}, inputs: Mapping[str, Paths] = {}
) -> None:
    """Refuse, before any work, outputs that cannot be written or that would overwrite something the command needs.

    ``files`` and ``folders`` are the outputs by option name (``{"--out": Path("sub.csv")}``;
    ``None``: not given), ``inputs`` what the command reads. Raises :class:`OutputError` when

    - an output is ``-`` (standard output is not supported), or exists as something other than a
      regular file (a folder for a folder output): a device, a FIFO, a socket;
    - an output is the same file as an input or as another output (also through links);
    - an output lies inside an input folder (anywhere below ``--source``: it would overwrite an
      input, or be read as one next time);
    - a name is longer than the file system allows, with room for the temporary names beside it;
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
        _check_kind(name, path, is_folder)
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
            if source.is_dir() and source.resolve() in path.resolve().parents:
                raise OutputError(
                    f"{name} {path} lies inside {other} {source}: it would overwrite or be read as an input; "
                    f"choose a {'folder' if is_folder else 'file'} outside it"
                )
    for name, path, is_folder in outputs:
        _check_name_lengths(f"{name} {path}", path)
        _check_writable(f"{name} {path}", path if is_folder else path.parent)


NAME_ROOM = 40
"""Bytes a file name must leave free for the names made from it: ``.<name>.<pid>.<hex>.part``, ``<name>.errors.csv``."""


def _check_kind(name: str, path: Path, is_folder: bool) -> None:
    """Refuse ``-`` and an existing output that is not a regular file (a folder, for a folder output)."""
    if str(path) == "-":
        raise OutputError(f"{name} -: writing to standard output is not supported; give a file name")
    try:
        mode = path.stat().st_mode
    except OSError:  # missing (or unreachable: the writability check names that)
        return
    if stat.S_ISDIR(mode) if is_folder else stat.S_ISREG(mode):
        return
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISREG: "a file",
    }
    kind = next((text for test, text in kinds.items() if test(mode)), "not a regular file")
    wanted = "a folder" if is_folder else "a regular file"
    raise OutputError(f"{name} {path} is {kind}; it must be {wanted} (or not exist yet): choose another {name}")


def _check_name_lengths(output: str, path: Path) -> None:
    """Refuse a path whose name, or a folder name in it, is longer than its file system allows (less :data:`NAME_ROOM`)."""
    place = path.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        limit = os.pathconf(place if place.is_dir() else place.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.parts:
        if len(os.fsencode(part)) + NAME_ROOM > limit:
            raise OutputError(
                f"{output}: the name {shorten_name(part)} is {len(os.fsencode(part))} bytes long; this file system allows "
                f"{limit}, and {NAME_ROOM} of them are needed for temporary names: choose a shorter name"
            )
    if len(os.fsencode(path.absolute())) + NAME_ROOM > os.pathconf("/", "PC_PATH_MAX"):
        raise OutputError(f"{output}: the path is longer than this system allows: choose a shorter one")


def shorten_name(name: str, length: int = 40) -> str:
    """A file name as a message quotes it: cut in the middle when long.

    >>> shorten_name("a" * 100, 12)
    'aaaaa…aaaaaa'
    """
    return name if len(name) <= length else name[: length // 2 - 1] + "…" + name[-(length // 2) :]


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
    finally:  # an interrupt between the two leaves no probe either
        with contextlib.suppress(OSError):
            probe.unlink()
