"""A segmentation U-Net (``segmentation-models-pytorch``) trained on box masks, read back as scored boxes.

The network is ``smp.Unet`` with an encoder of segmentation-models-pytorch (``train --arch unet
--model resnet34``: :func:`check_encoder`), ResNet-18 by default, built with
``encoder_weights=None`` (no download) and ``in_channels=1``. ResNet-18 by default rather than a
larger encoder: trained from scratch on a few thousand radiographs, the larger ones gain little
and cost two to three times the time on a CPU. Its target is the union of the boxes, filled (:class:`pneumo_yolo.train.data.BoxDataset`
with ``masks="box"``); its loss is binary cross-entropy plus soft Dice, since opacities cover a
small part of most images and none of 77 % of them.

The probability map becomes boxes by :func:`boxes_from_probability`: pixels of probability at
least :data:`PIXEL_THRESHOLD`, their 8-connected components, one box around each component
and, as its score, the component's mean probability. Those boxes then take the same
post-processing as every other detector's. Two opacities that touch become one component.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .detector import MAX_DETECTIONS, Found
from .torch_net import TorchDetector

ENCODER = "resnet18"
"""The default encoder."""
MASK_SHAPE = "box"
"""The mask the U-Net trains on, derived from each box: the box filled."""
PIXEL_THRESHOLD = 0.5
"""Probability at which a pixel belongs to an opacity: where a box mask's edge lies for a well-trained map."""
MIN_AREA_FRACTION = 0.001
"""Components smaller than this share of the image are dropped as specks (RSNA's smallest box is 0.17 %)."""


def _smp() -> Any:
    """segmentation-models-pytorch, imported with ``HF_HUB_OFFLINE`` set (unless the user set it).

    smp fetches pretrained encoders through the Hugging Face hub; with ``encoder_weights=None``
    it has nothing to fetch anyway.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import segmentation_models_pytorch as smp

    return smp


def is_encoder(name: str) -> bool:
    """Whether ``name`` names an encoder of segmentation-models-pytorch: one of its own, or ``tu-`` and a timm model.

    >>> is_encoder("resnet34"), is_encoder("tu-resnet10t"), is_encoder("weights/best.pt")
    (True, True, False)
    """
    if name.startswith("tu-"):
        return len(name) > 3 and "/" not in name and "." not in name
    return name in _smp().encoders.get_encoder_names()


def build_unet(encoder: str = ENCODER) -> Any:
    """A randomly initialised 1-channel, 1-class U-Net with the smp ``encoder``; its input side must be a multiple of 32."""
    return _smp().Unet(encoder_name=encoder, encoder_weights=None, in_channels=1, classes=1)


def unet_loss(model: Any, images: list[Any], targets: list[dict[str, Any]]) -> tuple[Any, dict[str, float]]:
    """Binary cross-entropy plus soft Dice of a batch against its box masks, and each part."""
    import torch
    import torch.nn.functional as F

    logits = model(torch.stack(images))
    truth = torch.stack([target["mask"] for target in targets])
    bce = F.binary_cross_entropy_with_logits(logits.float(), truth)
    probability = torch.sigmoid(logits.float())
    overlap = (probability * truth).sum(dim=(1, 2, 3))
    dice = 1 - (2 * overlap + 1) / (probability.sum(dim=(1, 2, 3)) + truth.sum(dim=(1, 2, 3)) + 1)
    dice = dice.mean()
    return bce + dice, {"loss_bce": float(bce.detach()), "loss_dice": float(dice.detach())}


def unet_detect(model: Any, batch: Any, conf: float) -> list[Found]:
    """``(xyxy, scores)`` per image of a ``[N, 1, S, S]`` batch, in the pixels of the ``S`` square."""
    import torch

    maps = torch.sigmoid(model(batch).float())[:, 0].cpu().numpy()
    return [boxes_from_probability(probability, conf=conf) for probability in maps]


def boxes_from_probability(
    probability: np.ndarray,
    *,
    threshold: float = PIXEL_THRESHOLD,
    conf: float = 0.0,
    max_detections: int = MAX_DETECTIONS,
) -> Found:
    """Scored ``xyxy`` boxes of a probability map: threshold, connected components, one box each, score = mean probability.

    Components under :data:`MIN_AREA_FRACTION` of the map, or scoring under ``conf``, are
    dropped; at most ``max_detections`` boxes are kept, best first.

    >>> probability = np.zeros((64, 64)); probability[10:20, 30:50] = 0.9
    >>> boxes, scores = boxes_from_probability(probability)
    >>> boxes.tolist(), scores.round(2).tolist()
    ([[30.0, 10.0, 50.0, 20.0]], [0.9])
    """
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (probability >= threshold).astype(np.uint8), connectivity=8
    )
    boxes, scores = [], []
    min_area = MIN_AREA_FRACTION * probability.size
    for component in range(1, count):
        left, top, width, height, area = stats[component]
        if area < min_area:
            continue
        score = float(probability[labels == component].mean())
        if score >= conf:
            boxes.append([left, top, left + width, top + height])
            scores.append(score)
    order = np.argsort(-np.asarray(scores), kind="stable")[:max_detections]
    return np.asarray(boxes, np.float64).reshape(-1, 4)[order], np.asarray(scores, np.float64)[order]


class UnetDetector(TorchDetector):
    """A U-Net checkpoint, its probability map read as boxes (:func:`boxes_from_probability`)."""

    def build(self, imgsz: int) -> Any:
        return build_unet(self.backbone)

    def detect_squares(self, batch: Any) -> list[Found]:
        return unet_detect(self.model, batch, self.conf)
