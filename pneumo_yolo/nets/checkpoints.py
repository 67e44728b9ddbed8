"""The plain checkpoint of a non-YOLO arch: written after training, read by ``predict`` without running code.

::

    {"format": "pneumo-yolo-torch/1", "arch": "unet", "backbone": "resnet18", "model": "unet-resnet18",
     "imgsz": 256, "channels": 1, "state_dict": {...}}

``backbone`` (what ``train --model`` chose) is what ``predict`` rebuilds; a checkpoint written
before it was recorded holds none and was trained with the arch's default
(:data:`~.archs.DEFAULT_BACKBONES`), which :func:`read_checkpoint` fills in.

It holds only tensors, numbers and text, so it is read with ``torch.load(weights_only=True)``,
which cannot run code (an Ultralytics ``.pt`` is a pickled model and can).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from ..files import temporary_sibling
from .archs import DEFAULT_BACKBONES, model_name

CHECKPOINT_FORMAT = "pneumo-yolo-torch/1"
HEAD_BYTES = 4096
"""Bytes read to tell our checkpoints from other files: the zip's first header and the pickle's first key."""


class CheckpointError(ValueError):
    """A file that says it is one of our checkpoints, but cannot be read as one (truncated, corrupt)."""


def checkpoint_of(arch: str, imgsz: int, model: Any, backbone: str | None = None) -> dict[str, Any]:
    """The checkpoint of ``model``, an ``arch`` network with ``backbone`` (default: the arch's) for ``imgsz`` squares, its tensors copied to the CPU."""
    backbone = backbone or DEFAULT_BACKBONES[arch]
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "backbone": backbone,
        "model": model_name(arch, backbone),
        "imgsz": int(imgsz),
        "channels": 1,
        "state_dict": state,
    }


def save_checkpoint(path: Path, arch: str, imgsz: int, model: Any, backbone: str | None = None) -> Path:
    """Write ``model``'s weights (see :func:`checkpoint_of`) as a plain checkpoint at ``path`` (atomically) and return ``path``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint_of(arch, imgsz, model, backbone)
    partial = temporary_sibling(path)
    try:
        torch.save(payload, partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is one of our checkpoints, from its first bytes: the tensors are not read.

    ``torch.save`` writes a zip whose first entry, stored uncompressed, is ``<name>/data.pkl``:
    the dict, with the tensors by reference. Ours names :data:`CHECKPOINT_FORMAT` there, its
    first key. An Ultralytics ``.pt`` (a pickled model) or any other file is not ours, and is
    opened only by its own loader; one of ours cut short is still ours (and then unreadable).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") and CHECKPOINT_FORMAT.encode() in head


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint of a non-YOLO arch at ``path``, or ``None`` for a file of another family (:func:`is_checkpoint`).

    Any other file (an Ultralytics ``.pt``, a text file, a truncated download) is left to the YOLO
    loader, which refuses it with a message naming it. One of ours that torch cannot read raises
    :class:`CheckpointError`.
    """
    import torch

    if not is_checkpoint(path):
        return None
    try:
        content = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path}: a {CHECKPOINT_FORMAT} checkpoint that cannot be read ({type(error).__name__}: {error})"
        ) from None
    if not (isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT):
        raise CheckpointError(f"{path}: names {CHECKPOINT_FORMAT} but holds no such checkpoint")
    if content.get("arch") in DEFAULT_BACKBONES:
        content.setdefault("backbone", DEFAULT_BACKBONES[content["arch"]])
    return content


def load_initial_weights(model: Any, arch: str, path: Path, backbone: str | None = None) -> str:
    """Start ``model`` from a weights file: one of our checkpoints, or a plain state dict (torchvision's ``.pth``).

    Tensors are matched by name and shape; a 3-channel first convolution is summed over its
    colour channels to fit the 1-channel input; the rest (the class heads of a COCO model) stay
    random. ``backbone`` names ``model``'s, for the messages. Returns a line saying how many tensors were taken.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: weights file not found (nothing is downloaded: place the file there)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a plain state dict
        raise ValueError(
            f"--model {path}: not a plain weights file for {arch} ({type(error).__name__}: {error})"
        ) from None
    state = content.get("state_dict", content) if isinstance(content, dict) else {}
    own = model.state_dict()
    taken = {}
    for key, value in state.items():
        if not (isinstance(value, torch.Tensor) and key in own):
            continue
        if value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)
        if value.shape == own[key].shape:
            taken[key] = value
    if not taken:
        raise ValueError(f"--model {path}: none of its tensors fits {model_name(arch, backbone)}")
    model.load_state_dict(taken, strict=False)
    return f"{len(taken)} of {len(own)} tensors of {model_name(arch, backbone)} taken from {path}"
