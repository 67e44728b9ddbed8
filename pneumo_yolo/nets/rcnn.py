"""Faster R-CNN and Mask R-CNN with a ResNet-FPN backbone, built offline for 1-channel radiographs.

``train --arch faster-rcnn --model resnet18`` chooses the backbone (:data:`BACKBONES`):

- ``resnet50`` (the default, for GPU training): torchvision's ``fasterrcnn_resnet50_fpn_v2`` /
  ``maskrcnn_resnet50_fpn_v2``, a ResNet-50 with a 5-level feature pyramid of 256 channels and
  the v2 heads (batch-normalised convolutions).
- ``resnet18``, ``resnet34`` (compact, for CPU budgets): the same two-stage detector on a
  ResNet-18 or -34 body, with a pyramid of 128 channels on the stride 8, 16 and 32 stages (plus
  torchvision's max-pooled level), built with torchvision's ``BackboneWithFPN`` and its default
  (v1) heads. The stride-4 level is left out: at CPU sizes (128 px) opacities span 10 to 60 px,
  which its 5 px anchors never match, while its 32 × 32 map and the pyramid's channels cost
  most of a training step (measured: docs/compare.md).

Nothing is downloaded: the networks are built from scratch; a user's weights file is loaded by
:func:`pneumo_yolo.nets.checkpoints.load_initial_weights`.

Adapted to this data, each for a stated reason:

- **One channel**: the ResNet's first convolution takes 1 channel and the transform normalises
  with one mean and standard deviation (``image_mean=[0.5]``, ``image_std=[0.25]``). The
  radiograph is not copied into three identical channels, which would only triple the first
  layer's work; RGB weights from a file are summed over their colour channels, as Ultralytics
  does for ``channels: 1``.
- **Size**: ``min_size`` and ``max_size`` are the training size, so torchvision's transform does
  not upscale every image to 800 px; the inputs are already ``imgsz`` squares.
- **Anchors** follow the size: torchvision's 32–512 px anchors are meant for 800 px images, so
  they are scaled by ``imgsz / 800``. The compact backbones put two sizes on each level, a
  factor √2 apart, and count an anchor as an object from IoU 0.5 (torchvision: 0.7), so that
  each opacity has several anchors to learn from, not one.
- **Proposals and sampled regions**: an RSNA radiograph has at most 4 opacities, so 32 sampled
  regions per image in training (torchvision: 512) and 50 proposals in prediction (1000)
  suffice; up to half of the sampled regions are positive (torchvision: a quarter), since the
  few opacities would otherwise be drowned by background regions. The v2 box head runs four 3×3
  convolutions on every region, so its cost grows with their number and dominates at small
  image sizes: on this project's 2-core CPU at 64 px, 128 regions took about 4 s per training
  image.
- **Masks** (Mask R-CNN): the ellipse inscribed in each box (:func:`pneumo_yolo.train.data.box_masks`),
  closer to the rounded opacities than the filled box. Predictions use the box head's boxes;
  the masks only shape the training, so the mask branch is dropped for prediction
  (:func:`boxes_only`): pasting 20 masks per image into the picture made Mask R-CNN predict
  over ten times slower than Faster R-CNN on the CPU, for nothing that is used.

>>> model_name("faster-rcnn", "resnet50"), model_name("mask-rcnn", "resnet34")
('fasterrcnn_resnet50_fpn_v2', 'maskrcnn_resnet34_fpn')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .detector import MAX_DETECTIONS, Found
from .torch_net import TorchDetector

RCNN_ARCHS = {"faster-rcnn": "fasterrcnn", "mask-rcnn": "maskrcnn"}
"""Our arch name → torchvision's name of the family."""
BACKBONES = ("resnet18", "resnet34", "resnet50")
"""The backbones of ``--model``: the compact ResNet-18 and -34 pyramids, and torchvision's ResNet-50 v2."""
DEFAULT_BACKBONE = "resnet50"
COMPACT_STAGES = (2, 3, 4)
"""The ResNet stages (strides 8, 16, 32) that feed the compact backbones' pyramid."""
COMPACT_CHANNELS = 128
COMPACT_REPRESENTATION = 256
"""Width of the compact backbones' box head (two fully connected layers; torchvision's: 1024)."""
COMPACT_SCALES = (1.0, 2**0.5)
"""Anchor sizes per pyramid level of the compact backbones, as factors of the level's size."""
COMPACT_MATCH_IOU = 0.5
POSITIVE_FRACTION = 0.5
ASPECT_RATIOS = (0.5, 1.0, 2.0)
MASK_SHAPE = "ellipse"
"""The mask Mask R-CNN trains on, derived from each box."""
COMPACT_MASK_LAYERS = 4
"""Convolutions of the compact backbones' mask head (torchvision's: 4)."""
BASE_ANCHORS = (32, 64, 128, 256, 512)
"""torchvision's anchor sizes for its 800 px images, one per FPN level."""
TRAIN_REGIONS = 32
TEST_PROPOSALS = 50
IMAGE_MEAN, IMAGE_STD = 0.5, 0.25
NUM_CLASSES = 2
"""Background and opacity."""


def model_name(arch: str, backbone: str) -> str:
    """The name of ``arch`` with ``backbone``: torchvision's builder for ResNet-50, ``<family>_<backbone>_fpn`` for the compact ones."""
    return f"{RCNN_ARCHS[arch]}_{backbone}_fpn" + ("_v2" if backbone == DEFAULT_BACKBONE else "")


def _anchor_sizes(imgsz: int, levels: tuple[int, ...], scales: tuple[float, ...]) -> tuple[tuple[int, ...], ...]:
    """torchvision's anchor size of each pyramid level (``levels`` index :data:`BASE_ANCHORS`) scaled to ``imgsz``, times each of ``scales``.

    >>> _anchor_sizes(128, (2, 3, 4), (1.0, 2**0.5))
    ((20, 29), (41, 58), (82, 116))
    """
    return tuple(
        tuple(max(4, round(BASE_ANCHORS[level] * scale * imgsz / 800)) for scale in scales) for level in levels
    )


def build_rcnn(arch: str, imgsz: int, backbone: str = DEFAULT_BACKBONE) -> Any:
    """A randomly initialised 2-class (background, opacity) detector of ``arch`` with ``backbone`` for 1-channel ``imgsz`` squares."""
    import torch
    import torchvision.models.detection as detection
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r} of {arch}: choose one of {', '.join(BACKBONES)}")
    options = dict(
        num_classes=NUM_CLASSES,
        min_size=imgsz,
        max_size=imgsz,
        image_mean=[IMAGE_MEAN],
        image_std=[IMAGE_STD],
        box_batch_size_per_image=TRAIN_REGIONS,
        box_positive_fraction=POSITIVE_FRACTION,
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=5 * TEST_PROPOSALS,
        rpn_post_nms_top_n_test=TEST_PROPOSALS,
        box_detections_per_img=MAX_DETECTIONS,
    )
    if backbone == DEFAULT_BACKBONE:
        model = getattr(detection, model_name(arch, backbone))(weights=None, weights_backbone=None, **options)
        sizes = _anchor_sizes(imgsz, tuple(range(len(BASE_ANCHORS))), (1.0,))
        model.rpn.anchor_generator = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
    else:
        model = compact_rcnn(arch, imgsz, backbone, options)
    old = model.backbone.body.conv1
    model.backbone.body.conv1 = torch.nn.Conv2d(
        1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
    )
    return model


def compact_rcnn(arch: str, imgsz: int, backbone: str, options: dict[str, Any]) -> Any:
    """``arch`` on a compact ``backbone`` (:func:`compact_backbone`): two anchor sizes per level, matched from IoU :data:`COMPACT_MATCH_IOU`.

    Mask R-CNN's mask head has :data:`COMPACT_CHANNELS` channels too (torchvision's: 256).
    """
    import torchvision.models.detection as detection
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead

    sizes = _anchor_sizes(imgsz, (*COMPACT_STAGES, len(BASE_ANCHORS) - 1), COMPACT_SCALES)
    anchors = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
    parts = dict(
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(COMPACT_CHANNELS, anchors.num_anchors_per_location()[0]),
        rpn_fg_iou_thresh=COMPACT_MATCH_IOU,
        box_head=TwoMLPHead(COMPACT_CHANNELS * 7 * 7, COMPACT_REPRESENTATION),
        box_predictor=FastRCNNPredictor(COMPACT_REPRESENTATION, options["num_classes"]),
    )
    options = {**options, "num_classes": None}
    if arch == "mask-rcnn":
        mask_head = MaskRCNNHeads(COMPACT_CHANNELS, (COMPACT_CHANNELS,) * COMPACT_MASK_LAYERS, 1)
        mask_predictor = MaskRCNNPredictor(COMPACT_CHANNELS, COMPACT_CHANNELS, NUM_CLASSES)
        return detection.MaskRCNN(
            compact_backbone(backbone), mask_head=mask_head, mask_predictor=mask_predictor, **parts, **options
        )
    return detection.FasterRCNN(compact_backbone(backbone), **parts, **options)


def compact_backbone(backbone: str) -> Any:
    """A ResNet-18 or -34 body (batch norm, every layer trained) with a :data:`COMPACT_CHANNELS`-channel pyramid on :data:`COMPACT_STAGES`."""
    import torchvision.models as models
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    body = getattr(models, backbone)(weights=None)
    stage_channels = {1: 64, 2: 128, 3: 256, 4: 512}
    return BackboneWithFPN(
        body,
        {f"layer{stage}": str(i) for i, stage in enumerate(COMPACT_STAGES)},
        [stage_channels[stage] for stage in COMPACT_STAGES],
        COMPACT_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )


def rcnn_loss(model: Any, images: list[Any], targets: list[dict[str, Any]]) -> tuple[Any, dict[str, float]]:
    """The summed training loss of a batch and each of its parts (torchvision's loss dictionary)."""
    wanted = ("boxes", "labels", "masks") if model.roi_heads.has_mask() else ("boxes", "labels")
    losses = model(images, [{key: target[key] for key in wanted} for target in targets])
    return sum(losses.values()), {key: float(value.detach()) for key, value in losses.items()}


def boxes_only(model: Any) -> Any:
    """``model`` without its mask branch, if it has one: torchvision then returns boxes and scores only."""
    model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = model.roi_heads.mask_predictor = None
    return model


def rcnn_detect(model: Any, batch: Any, conf: float) -> list[Found]:
    """``(xyxy, scores)`` per image of a ``[N, 1, S, S]`` batch, in the pixels of the ``S`` square, scores at least ``conf``."""
    model.roi_heads.score_thresh = conf
    outputs = model(list(batch))
    return [
        (out["boxes"].float().cpu().numpy().astype(np.float64), out["scores"].float().cpu().numpy().astype(np.float64))
        for out in outputs
    ]


class RcnnDetector(TorchDetector):
    """A Faster R-CNN or Mask R-CNN checkpoint; Mask R-CNN predicts without its mask branch (:func:`boxes_only`)."""

    def loaded(self) -> None:
        if self.arch == "mask-rcnn":
            boxes_only(self.model)

    def build(self, imgsz: int) -> Any:
        return build_rcnn(self.arch, imgsz, self.backbone)

    def detect_squares(self, batch: Any) -> list[Found]:
        return rcnn_detect(self.model, batch, self.conf)
