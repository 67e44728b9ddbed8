"""Faster R-CNN and Mask R-CNN (torchvision's ``*_resnet50_fpn_v2``), built offline for 1-channel radiographs.

Nothing is downloaded: ``weights=None`` and ``weights_backbone=None`` build the networks from
scratch; a user's weights file is loaded by :func:`pneumo_yolo.nets.checkpoints.load_initial_weights`.

Adapted to this data, each for a stated reason:

- **One channel**: the ResNet's first convolution takes 1 channel and the transform normalises
  with one mean and standard deviation (``image_mean=[0.5]``, ``image_std=[0.25]``). The
  radiograph is not copied into three identical channels, which would only triple the first
  layer's work; RGB weights from a file are summed over their colour channels, as Ultralytics
  does for ``channels: 1``.
- **Size**: ``min_size`` and ``max_size`` are the training size, so torchvision's transform does
  not upscale every image to 800 px; the inputs are already ``imgsz`` squares.
- **Anchors** follow the size: torchvision's 32–512 px anchors are meant for 800 px images, so
  they are scaled by ``imgsz / 800``.
- **Proposals and sampled regions**: an RSNA radiograph has at most 4 opacities, so 32 sampled
  regions per image in training (torchvision: 512; up to 8 of them positive) and 50 proposals
  in prediction (1000) suffice. The v2 box head runs four 3×3 convolutions on every region, so
  its cost grows with their number and dominates at small image sizes: on this project's
  2-core CPU at 64 px, 128 regions took about 4 s per training image.
- **Masks** (Mask R-CNN): the ellipse inscribed in each box (:func:`pneumo_yolo.train.data.box_masks`),
  closer to the rounded opacities than the filled box. Predictions use the box head's boxes;
  the masks only shape the training, so the mask branch is dropped for prediction
  (:func:`boxes_only`): pasting 20 masks per image into the picture made Mask R-CNN predict
  over ten times slower than Faster R-CNN on the CPU, for nothing that is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .detector import MAX_DETECTIONS, Found
from .torch_net import TorchDetector

RCNN_ARCHS = {"faster-rcnn": "fasterrcnn_resnet50_fpn_v2", "mask-rcnn": "maskrcnn_resnet50_fpn_v2"}
"""Our arch name → torchvision's builder."""
MASK_SHAPE = "ellipse"
"""The mask Mask R-CNN trains on, derived from each box."""
BASE_ANCHORS = (32, 64, 128, 256, 512)
"""torchvision's anchor sizes for its 800 px images, one per FPN level."""
TRAIN_REGIONS = 32
TEST_PROPOSALS = 50
IMAGE_MEAN, IMAGE_STD = 0.5, 0.25


def build_rcnn(arch: str, imgsz: int, *, max_detections: int = MAX_DETECTIONS) -> Any:
    """A randomly initialised 2-class (background, opacity) detector of ``arch`` for 1-channel ``imgsz`` squares."""
    import torch
    import torchvision.models.detection as detection
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    builder = getattr(detection, RCNN_ARCHS[arch])
    model = builder(
        weights=None, weights_backbone=None, num_classes=2, min_size=imgsz, max_size=imgsz,
        image_mean=[IMAGE_MEAN], image_std=[IMAGE_STD], box_batch_size_per_image=TRAIN_REGIONS,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=5 * TEST_PROPOSALS, rpn_post_nms_top_n_test=TEST_PROPOSALS,
        box_detections_per_img=max_detections,
    )  # fmt: skip
    old = model.backbone.body.conv1
    model.backbone.body.conv1 = torch.nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    sizes = tuple((max(4, round(size * imgsz / 800)),) for size in BASE_ANCHORS)
    model.rpn.anchor_generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return model


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
    return [(out["boxes"].float().cpu().numpy().astype(np.float64), out["scores"].float().cpu().numpy().astype(np.float64)) for out in outputs]


class RcnnDetector(TorchDetector):
    """A Faster R-CNN or Mask R-CNN checkpoint; Mask R-CNN predicts without its mask branch (:func:`boxes_only`)."""

    def __init__(self, checkpoint: dict[str, Any], **options: Any) -> None:
        super().__init__(checkpoint, **options)
        if self.arch == "mask-rcnn":
            boxes_only(self.model)

    def build(self, imgsz: int) -> Any:
        return build_rcnn(self.arch, imgsz)

    def detect_squares(self, batch: Any) -> list[Found]:
        return rcnn_detect(self.model, batch, self.conf)
