"""Resolve a ``--model`` argument to something Ultralytics can load without surprises.

A ``--model`` is either a model config (``yolo11s.yaml``: trained from scratch, always works)
or a checkpoint (``.pt``). A checkpoint given as a path must exist. A bare name such as
``yolo11s.pt`` is looked for in the working folder, then in the weights folder
(:func:`pneumo_yolo.runtime.offline.weights_dir`); if it is in neither, Ultralytics would download it,
so this is allowed only where downloads are (``--online``). Offline it fails at once with a
message that says how to get going. Nothing here imports torch or Ultralytics, except
:func:`download_weights`.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml")
CHECKPOINT_SUFFIX = ".pt"


class WeightsError(FileNotFoundError):
    """A model argument that cannot be used: missing file, wrong kind, or weights that cannot be had."""


@dataclass(frozen=True)
class ModelSource:
    """What to build the model from.

    ``source`` is what ``YOLO()`` gets: the absolute path of a local file, or the name of a model
    config that Ultralytics ships (``yolo11s.yaml``). ``download`` is True when ``source`` is
    the weights-folder path that :func:`download_weights` must fill first.
    """

    source: str
    download: bool = False

    @property
    def is_config(self) -> bool:
        """True for a model config (trained from scratch)."""
        return self.source.lower().endswith(CONFIG_SUFFIXES)


def resolve_model(model: str, *, weights_dir: Path, allow_download: bool) -> ModelSource:
    """Return the :class:`ModelSource` for ``model``, or raise :class:`WeightsError`.

    >>> resolve_model("yolo11n.yaml", weights_dir=Path("/w"), allow_download=False)
    ModelSource(source='yolo11n.yaml', download=False)
    """
    text = model.strip()
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (*CONFIG_SUFFIXES, CHECKPOINT_SUFFIX):
        raise WeightsError(
            f"--model {model!r}: give a checkpoint (.pt) or a model config (.yaml), e.g. "
            "--model yolo11s.pt or --model yolo11s.yaml"
        )
    if path.is_file():
        return ModelSource(str(path.resolve()))
    bare = path.name == text
    if suffix in CONFIG_SUFFIXES:
        if bare:
            return ModelSource(text)  # one of Ultralytics' packaged configs; it says if there is none
        raise WeightsError(f"--model {model!r}: model config not found")
    if not bare:
        raise WeightsError(f"--model {model!r}: checkpoint not found")
    stored = weights_dir / path.name
    if stored.is_file():
        return ModelSource(str(stored))
    if allow_download:
        return ModelSource(str(stored), download=True)
    raise WeightsError(missing_weights_message(path.name, weights_dir))


def checkpoint_problem(path: Path) -> str | None:
    """Why the file ``path`` cannot be a PyTorch checkpoint, told from its first and last bytes; ``None`` if it may be one.

    ``torch.save`` writes a zip archive, PyTorch before 1.6 a pickle (protocol 2: its first byte is
    0x80) or, before 0.4, a tar archive. A zip without its central directory (a download cut
    short) is refused too, and so is a file that cannot be read. Without torch: a text file given as
    weights is refused at once.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(2)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if head == b"PK":
        return None if zipfile.is_zipfile(path) else "a zip archive cut short or damaged: it has no central directory"
    if head[:1] == b"\x80" or tarfile.is_tarfile(path):
        return None
    return "not a PyTorch checkpoint: neither a zip archive nor a pickle"


def missing_weights_message(name: str, weights_dir: Path) -> str:
    """Explain what to do when pretrained weights ``name`` are not on this machine."""
    config = Path(name).with_suffix(".yaml").name
    return (
        f"Pretrained weights {name!r} are not on this machine, and pneumo-yolo does not download "
        "anything unless allowed. Either:\n"
        f"  - copy {name} into {weights_dir} (or the working folder), or pass --model path/to/{name};\n"
        f"  - train from scratch with --model {config};\n"
        f"  - allow the download with --online (or PNEUMO_YOLO_ONLINE=1) on a machine with internet."
    )


def download_weights(source: ModelSource) -> str:
    """Fetch ``source`` into the weights folder where it must be downloaded; return the path to load.

    Only for sources that :func:`resolve_model` marked ``download`` (so the user allowed it).
    Imports Ultralytics: call :func:`pneumo_yolo.runtime.offline.import_ultralytics` first.
    """
    if not source.download:
        return source.source
    from ultralytics.utils.downloads import attempt_download_asset

    target = Path(source.source)
    target.parent.mkdir(parents=True, exist_ok=True)
    advice = f"Place the file at {target}, or train from scratch with --model {target.with_suffix('.yaml').name}."
    try:
        fetched = Path(attempt_download_asset(target))
    except ConnectionError as error:
        raise WeightsError(f"Could not download {target.name!r} ({error}). {advice}") from error
    if not fetched.is_file():
        raise WeightsError(f"Could not download {target.name!r}: not one of Ultralytics' released weights. {advice}")
    return str(fetched)
