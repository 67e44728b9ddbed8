"""The output folder of ``convert``: what it writes there, and when an earlier dataset may be cleared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pneumo_yolo.data.dataset import DATA_YAML, MANIFEST_FILE, SETTINGS_FILE

MANAGED = (
    "images",
    "labels",
    "folds",
    "classify",
    DATA_YAML,
    "data_fold*.yaml",
    MANIFEST_FILE,
    "errors.csv",
    SETTINGS_FILE,
)
"""What ``convert`` writes in its output folder (globs allowed), and so all that ``--overwrite`` may delete."""


class ConvertError(RuntimeError):
    """A problem that stops the whole conversion before it starts (a usage error): bad arguments, a refused output folder, nothing to convert."""


def must_clear(out: Path, wanted: dict[str, object], overwrite: bool) -> bool:
    """Whether ``out`` holds a dataset converted with settings other than ``wanted`` that ``overwrite`` lets us replace.

    Raises :class:`ConvertError` for other settings without ``overwrite``, and for a non-empty
    folder that ``convert`` did not write (never cleared, even with ``overwrite``).
    """
    settings_path = out / SETTINGS_FILE
    if settings_path.exists():
        try:
            previous = json.loads(settings_path.read_text())
        except (ValueError, OSError):
            previous = {}
        if previous == wanted:
            return False
        differences = ", ".join(
            f"{k}={previous.get(k)!r} (now {v!r})" for k, v in wanted.items() if previous.get(k) != v
        )
        if not overwrite:
            raise ConvertError(
                f"{out} was converted with other settings: {differences}. Use --overwrite to replace it, or choose another --out."
            )
        return True
    if out.exists() and any(out.iterdir()):
        raise ConvertError(
            f"{out} is not empty and was not written by pneumo-yolo convert: choose a new or empty --out."
        )
    return False


def refuse_inputs_in_outputs(out: Path, inputs: dict[str, Path | None]) -> None:
    """Raise :class:`ConvertError` when an input lies in what ``convert`` writes in ``out`` (and ``--overwrite`` deletes)."""
    managed = [path.resolve() for pattern in MANAGED for path in out.glob(pattern)]
    for name, path in inputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        for target in managed:
            if resolved == target or target in resolved.parents:
                raise ConvertError(
                    f"{name} {path} lies inside {target}, which convert writes (and --overwrite deletes): move it, or choose another --out"
                )


def clear_outputs(out: Path) -> None:
    """Delete what an earlier ``convert`` wrote in ``out`` (and nothing else)."""
    for target in (path for pattern in MANAGED for path in out.glob(pattern)):
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
