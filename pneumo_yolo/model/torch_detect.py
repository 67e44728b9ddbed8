"""Prediction with a Faster R-CNN, Mask R-CNN or U-Net checkpoint, and the one loader of every detector's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .archs import TORCH_ARCHS, build_model, read_checkpoint, torch_device
from .predict import MAX_DETECTIONS, RAW_CONF, Detector, PredictError
from .rcnn import boxes_only, rcnn_detect
from .torch_data import square_input
from .unet import unet_detect


class TorchDetector(Detector):
    """A Faster R-CNN, Mask R-CNN or U-Net checkpoint behind :class:`~.predict.Detector`'s interface.

    Each image is stretched to the model's square (:func:`~.torch_data.square_input`), as in
    training, and its boxes are scaled back to the image's pixels; TTA's flipped pass and its
    un-flipping are :class:`~.predict.Detector`'s own.
    """

    def __init__(
        self, checkpoint: dict[str, Any], weights: Path, *, imgsz: int | None = None, device: str | None = None, tta: bool = False, conf: float = RAW_CONF
    ) -> None:
        self.arch = checkpoint["arch"]
        if self.arch not in TORCH_ARCHS:
            raise PredictError(f"--weights {weights}: unknown arch {self.arch!r}")
        self.imgsz = int(imgsz or checkpoint["imgsz"])
        self.device = torch_device(device)
        self.tta, self.conf = tta, conf
        self.model = build_model(self.arch, self.imgsz, **({} if self.arch == "unet" else {"max_detections": MAX_DETECTIONS}))
        self.model.load_state_dict(checkpoint["state_dict"])
        if self.arch == "mask-rcnn":
            boxes_only(self.model)
        self.model.to(self.device).eval()

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        squares = np.stack([square_input(image, self.imgsz) for image in images])
        batch = torch.from_numpy(squares).to(self.device)[:, None].float().div_(255.0)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], enabled=self.device.startswith("cuda")):
            if self.arch == "unet":
                found = unet_detect(self.model, batch, self.conf, MAX_DETECTIONS)
            else:
                found = rcnn_detect(self.model, batch, self.conf)
        scaled = []
        for image, (boxes, scores) in zip(images, found):
            height, width = image.shape[:2]
            scaled.append((boxes * np.array([width, height, width, height]) / self.imgsz, scores))
        return scaled


def load_detector(
    weights: Path, *, imgsz: int | None = None, device: str | None = None, tta: bool = False, conf: float = RAW_CONF
) -> Detector:
    """The detector of a weights file: an arch checkpoint of ours (read safely), else an Ultralytics YOLO model."""
    weights = Path(weights)
    if not weights.is_file():
        raise PredictError(f"--weights {weights}: no such file (predict loads only weights files that exist on disk)")
    checkpoint = read_checkpoint(weights)
    if checkpoint is None:
        return Detector(weights, imgsz=imgsz, device=device, tta=tta, conf=conf)
    return TorchDetector(checkpoint, weights, imgsz=imgsz, device=device, tta=tta, conf=conf)
