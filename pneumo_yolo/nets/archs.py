"""The detector architectures of ``train --arch``: Ultralytics YOLO, Faster R-CNN, Mask R-CNN and U-Net.

YOLO runs are Ultralytics' own (any YOLO config, ``yolov3.yaml`` included: :mod:`.yolo`); the
other three are built here from their family module (:mod:`.rcnn`, :mod:`.unet`), trained by
:mod:`pneumo_yolo.train.lightning` and saved as a plain checkpoint (:mod:`.checkpoints`). Every
family predicts behind the one interface of :class:`~.detector.Detector`, so ``predict``,
ensembles of mixed archs, ``tune`` and ``evaluate`` treat every arch alike.

Each of the three is built around a **backbone** that ``train --model NAME`` chooses
(:func:`is_backbone`): a ResNet of the R-CNNs (:data:`.rcnn.BACKBONES`), an encoder of
segmentation-models-pytorch for the U-Net. The checkpoint records it, so ``predict`` rebuilds the
same network.
"""

from __future__ import annotations

from typing import Any

from . import YOLO, rcnn, unet
from .torch_net import TorchDetector

TORCH_ARCHS = (*rcnn.RCNN_ARCHS, "unet")
ARCHS = (YOLO, *TORCH_ARCHS)
DEFAULT_BACKBONES = {"faster-rcnn": rcnn.DEFAULT_BACKBONE, "mask-rcnn": rcnn.DEFAULT_BACKBONE, "unet": unet.ENCODER}
"""The backbone each non-YOLO arch builds when ``--model`` names none (and that a checkpoint without one was trained with)."""
BACKBONE_HELP = {
    "faster-rcnn": ", ".join(rcnn.BACKBONES),
    "mask-rcnn": ", ".join(rcnn.BACKBONES),
    "unet": "any encoder of segmentation-models-pytorch, e.g. resnet18, resnet34, efficientnet-b0, mobilenet_v2, or tu-NAME for a timm model NAME",
}
"""The backbones each non-YOLO arch takes, as the messages and the help name them."""
DETECTORS: dict[str, type[TorchDetector]] = {
    "faster-rcnn": rcnn.RcnnDetector,
    "mask-rcnn": rcnn.RcnnDetector,
    "unet": unet.UnetDetector,
}
"""The detector class of each non-YOLO arch."""
MASK_SHAPES = {"mask-rcnn": rcnn.MASK_SHAPE, "unet": unet.MASK_SHAPE}
"""The masks each arch trains on, derived from the boxes (none for Faster R-CNN)."""


def check_arch(arch: str) -> str:
    """``arch`` if it is one of :data:`TORCH_ARCHS`, else :class:`ValueError` naming them."""
    if arch not in TORCH_ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(TORCH_ARCHS)}")
    return arch


def is_backbone(arch: str, name: str) -> bool:
    """Whether ``name`` is a backbone that ``arch`` builds (rather than, say, a weights file).

    >>> is_backbone("faster-rcnn", "resnet18"), is_backbone("faster-rcnn", "efficientnet-b0"), is_backbone("unet", "efficientnet-b0")
    (True, False, True)
    """
    return unet.is_encoder(name) if check_arch(arch) == "unet" else name in rcnn.BACKBONES


def model_name(arch: str, backbone: str | None = None) -> str:
    """What ``arch`` with ``backbone`` (default: :data:`DEFAULT_BACKBONES`) builds, as tables and messages name it.

    >>> model_name("mask-rcnn"), model_name("faster-rcnn", "resnet18"), model_name("unet", "resnet34")
    ('maskrcnn_resnet50_fpn_v2', 'fasterrcnn_resnet18_fpn', 'unet-resnet34')
    """
    backbone = backbone or DEFAULT_BACKBONES[check_arch(arch)]
    return f"unet-{backbone}" if arch == "unet" else rcnn.model_name(arch, backbone)


def build_model(arch: str, imgsz: int, backbone: str | None = None) -> Any:
    """A randomly initialised network of ``arch`` (not ``yolo``) with ``backbone`` (default: :data:`DEFAULT_BACKBONES`) for 1-channel ``imgsz`` squares."""
    backbone = backbone or DEFAULT_BACKBONES[check_arch(arch)]
    return unet.build_unet(backbone) if arch == "unet" else rcnn.build_rcnn(arch, imgsz, backbone)


def training_loss(
    arch: str, model: Any, images: list[Any], targets: list[dict[str, Any]]
) -> tuple[Any, dict[str, float]]:
    """The loss of one batch for ``arch``, and its parts."""
    return unet.unet_loss(model, images, targets) if arch == "unet" else rcnn.rcnn_loss(model, images, targets)
