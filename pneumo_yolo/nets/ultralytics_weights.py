"""Loading an Ultralytics checkpoint of one task (a detector, an image classifier), with our own errors.

Only a weights file that exists on disk is loaded: ``.pt`` files are pickles, so load only
weights you trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtime.offline import import_ultralytics


def load_ultralytics(weights: Path, task: str, *, error: type[Exception], named: str, kind: str, advice: str) -> Any:
    """The ``ultralytics.YOLO`` model of ``weights`` if it is one of ``task``, else ``error``.

    The message names the file as ``named`` (``--weights runs/x.pt``), says what it should be
    (``kind``: "a detector") and what to do instead (``advice``).
    """
    if not Path(weights).is_file():
        raise error(f"{named}: no such weights file (only weights files that exist on disk are loaded)")
    ultralytics = import_ultralytics()
    try:
        model = ultralytics.YOLO(str(weights))
    except Exception as failure:  # torch and Ultralytics raise many types for a file that is not a checkpoint
        raise error(f"{named}: cannot be loaded as YOLO weights ({type(failure).__name__}: {failure})") from None
    if model.task != task:
        raise error(f"{named}: a {model.task} model, not {kind} ({advice})")
    return model


def trained_imgsz(model: Any) -> int | None:
    """The image size an Ultralytics ``model`` was trained at, from its checkpoint; ``None`` when it does not say."""
    return (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz")
