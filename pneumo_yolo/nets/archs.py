"""The detector architectures of ``train --arch``: Ultralytics YOLO, Faster R-CNN, Mask R-CNN and U-Net.

YOLO runs are Ultralytics' own (any YOLO config, ``yolov3.yaml`` included: :mod:`.yolo`); the
other three are built here from their family module (:mod:`.rcnn`, :mod:`.unet`), trained by
:mod:`pneumo_yolo.train.lightning` and saved as a plain checkpoint (:mod:`.checkpoints`). Every
family predicts behind the one interface of :class:`~.detector.Detector`, so ``predict``,
ensembles of mixed archs, ``tune`` and ``evaluate`` treat every arch alike.
"""

from __future__ import annotations

from typing import Any

from . import rcnn, unet
from .torch_net import TorchDetector

YOLO = "yolo"
TORCH_ARCHS = (*rcnn.RCNN_ARCHS, "unet")
ARCHS = (YOLO, *TORCH_ARCHS)
MODEL_NAMES = {**rcnn.RCNN_ARCHS, "unet": f"unet-{unet.ENCODER}"}
"""What each non-YOLO arch builds, as the comparison table names it."""
DETECTORS: dict[str, type[TorchDetector]] = {"faster-rcnn": rcnn.RcnnDetector, "mask-rcnn": rcnn.RcnnDetector, "unet": unet.UnetDetector}
"""The detector class of each non-YOLO arch."""
MASK_SHAPES = {"mask-rcnn": rcnn.MASK_SHAPE, "unet": unet.MASK_SHAPE}
"""The masks each arch trains on, derived from the boxes (none for Faster R-CNN)."""


def check_arch(arch: str) -> str:
    """``arch`` if it is one of :data:`TORCH_ARCHS`, else :class:`ValueError` naming them."""
    if arch not in TORCH_ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(TORCH_ARCHS)}")
    return arch


def build_model(arch: str, imgsz: int) -> Any:
    """A randomly initialised network of ``arch`` (not ``yolo``) for 1-channel ``imgsz`` squares."""
    return unet.build_unet() if check_arch(arch) == "unet" else rcnn.build_rcnn(arch, imgsz)


def training_loss(arch: str, model: Any, images: list[Any], targets: list[dict[str, Any]]) -> tuple[Any, dict[str, float]]:
    """The loss of one batch for ``arch``, and its parts."""
    return unet.unet_loss(model, images, targets) if arch == "unet" else rcnn.rcnn_loss(model, images, targets)
