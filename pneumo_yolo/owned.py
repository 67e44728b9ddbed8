"""Folders that a command writes whole, and that only it may replace.

``synth``, ``demo``, ``compare`` and ``report`` each write a folder of their own. A marker file in
it, ``.pneumo-yolo-<command>``, lists every file the command wrote there. Before a run replaces
such a folder, :func:`claim` checks that it holds nothing else: a folder without the marker (a
user's own data, say), or with a file the marker does not list, is refused and nothing in it is
deleted. While a run is under way the marker lists nothing yet and stands for "everything here is
this run's": it was written into an empty folder, so an interrupted run can still be replaced.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp()) / "out"
>>> with owned_folder(folder, "demo"):
...     _ = (folder / "a.csv").write_text("x")
>>> (folder / "a.csv").exists(), foreign_files(folder, "demo")
(True, [])
>>> _ = (folder / "mine.dcm").write_text("y")
>>> [path.name for path in foreign_files(folder, "demo")]
['mine.dcm']
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .files import OutputError, atomic_write_text

MARKER_PREFIX = ".pneumo-yolo-"


def marker(folder: Path, command: str) -> Path:
    """The marker file of ``command`` in ``folder``."""
    return folder / f"{MARKER_PREFIX}{command}"


def has_content(folder: Path) -> bool:
    """Whether ``folder`` exists and holds anything (an output that a run would replace)."""
    return folder.is_dir() and any(folder.iterdir())


def foreign_files(folder: Path, command: str) -> list[Path]:
    """The files and links below ``folder`` that ``command`` did not write there, sorted (empty folders count as nothing).

    Without the marker every file is foreign; with an unfinished run's marker none is.
    """
    found = sorted(_files_below(folder))
    path = marker(folder, command)
    if not path.is_file():
        return found
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return [file for file in found if file != path]
    if listed is None:
        return []
    written = set(listed)
    return [file for file in found if file != path and file.relative_to(folder).as_posix() not in written]


def claim(folder: Path, command: str) -> None:
    """Make ``folder`` ready for a new run of ``command``: empty it of what ``command`` wrote there, and mark it as being written.

    Raises :class:`~pneumo_yolo.files.OutputError`, deleting nothing, when ``folder`` is a file or
    holds anything that ``command`` did not write.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder: choose another folder")
    foreign = foreign_files(folder, command) if folder.is_dir() else []
    if foreign:
        raise OutputError(
            f"{folder} holds {len(foreign)} file(s) that pneumo-yolo {command} did not write, e.g. "
            f"{foreign[0]}; it replaces only a folder it wrote itself, so nothing was deleted: choose another folder"
        )
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker(folder, command), json.dumps({"command": command, "files": None}) + "\n")


def seal(folder: Path, command: str) -> None:
    """Record every file now below ``folder`` as written by ``command`` (after a run that :func:`claim` began)."""
    path = marker(folder, command)
    files = sorted(file.relative_to(folder).as_posix() for file in _files_below(folder) if file != path)
    atomic_write_text(path, json.dumps({"command": command, "files": files}, indent=0) + "\n")


@contextmanager
def owned_folder(folder: Path, command: str) -> Iterator[Path]:
    """:func:`claim` ``folder`` for ``command``, run the ``with`` block, and :func:`seal` it if the block succeeds."""
    claim(folder, command)
    yield folder
    seal(folder, command)


def _files_below(folder: Path) -> Iterator[Path]:
    """Every file and link below ``folder``, links to folders not followed."""
    for root, folders, files in os.walk(folder):
        base = Path(root)
        yield from (base / name for name in files)
        yield from (base / name for name in folders if (base / name).is_symlink())
