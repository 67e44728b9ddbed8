"""The detector architectures: Ultralytics YOLO, Faster R-CNN, Mask R-CNN and U-Net behind one interface.

``train --arch`` picks one. YOLO runs are Ultralytics' own (any YOLO config, ``yolov3.yaml``
included); the other three are trained by :mod:`.lightning_train` and saved as a plain
checkpoint (:func:`save_checkpoint`)::

    {"format": "pneumo-yolo-torch/1", "arch": "unet", "model": "unet-resnet18", "imgsz": 256,
     "channels": 1, "state_dict": {...}}

It holds only tensors, numbers and text, so it is read with ``torch.load(weights_only=True)``,
which cannot run code (an Ultralytics ``.pt`` is a pickled model and can). :func:`load_detector`
(:mod:`.torch_detect`) tells the two apart and returns a detector with the interface of
:class:`~.predict.Detector` (``imgsz``, ``members``, ``detect``), so that ``predict``,
ensembles of mixed archs, ``tune`` and ``evaluate`` treat every arch alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .rcnn import RCNN_ARCHS, build_rcnn, rcnn_loss
from .unet import ENCODER, build_unet, unet_loss

YOLO = "yolo"
TORCH_ARCHS = (*RCNN_ARCHS, "unet")
ARCHS = (YOLO, *TORCH_ARCHS)
MODEL_NAMES = {**RCNN_ARCHS, "unet": f"unet-{ENCODER}"}
"""What each non-YOLO arch builds, as the comparison table names it."""
CHECKPOINT_FORMAT = "pneumo-yolo-torch/1"


def build_model(arch: str, imgsz: int, **options: Any) -> Any:
    """A randomly initialised network of ``arch`` (not ``yolo``) for 1-channel ``imgsz`` squares; ``options`` go to :func:`.rcnn.build_rcnn`."""
    if arch == "unet":
        return build_unet()
    if arch in RCNN_ARCHS:
        return build_rcnn(arch, imgsz, **options)
    raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(TORCH_ARCHS)}")


def training_loss(arch: str, model: Any, images: list[Any], targets: list[dict[str, Any]]) -> tuple[Any, dict[str, float]]:
    """The loss of one batch for ``arch``, and its parts."""
    return unet_loss(model, images, targets) if arch == "unet" else rcnn_loss(model, images, targets)


def mask_shape(arch: str) -> str | None:
    """The masks :class:`~.torch_data.BoxDataset` derives from the boxes for ``arch``."""
    return {"mask-rcnn": "ellipse", "unet": "box"}.get(arch)


def save_checkpoint(path: Path, arch: str, imgsz: int, model: Any) -> Path:
    """Write ``model``'s weights as a plain checkpoint at ``path`` (atomically) and return ``path``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "arch": arch, "model": MODEL_NAMES[arch], "imgsz": int(imgsz), "channels": 1, "state_dict": state}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint of a non-YOLO arch at ``path``, or ``None`` for any other file (an Ultralytics ``.pt``)."""
    import pickle
    import zipfile

    import torch

    try:
        content = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, AttributeError, ValueError):
        return None
    if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
        return content
    return None


def load_initial_weights(model: Any, arch: str, path: Path) -> str:
    """Start ``model`` from a weights file: one of our checkpoints, or a plain state dict (torchvision's ``.pth``).

    Tensors are matched by name and shape; a 3-channel first convolution is summed over its
    colour channels to fit the 1-channel input; the rest (the class heads of a COCO model) stay
    random. Returns a line saying how many tensors were taken.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: weights file not found (nothing is downloaded: place the file there)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a plain state dict
        raise ValueError(f"--model {path}: not a plain weights file for {arch} ({type(error).__name__}: {error})") from None
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
        raise ValueError(f"--model {path}: none of its tensors fits {MODEL_NAMES[arch]}")
    model.load_state_dict(taken, strict=False)
    return f"{len(taken)} of {len(own)} tensors of {MODEL_NAMES[arch]} taken from {path}"


def torch_device(device: str | None) -> str:
    """``device`` as torch names it: ``None`` → ``cuda:0`` where there is a GPU, else ``cpu``; ``"0,1"`` → its first GPU.

    >>> torch_device("cpu"), torch_device("1"), torch_device("0,1")
    ('cpu', 'cuda:1', 'cuda:0')
    """
    if device is None or not device.strip():
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    first = device.replace(" ", "").lower().split(",")[0]
    return first if first in {"cpu", "mps"} else f"cuda:{first}"
