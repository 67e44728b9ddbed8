"""What the torchvision and segmentation families share: a square, one-channel input, and boxes scaled back.

Every non-YOLO network sees each image stretched to an ``imgsz`` × ``imgsz`` square
(:func:`square_input`), in training as in prediction, so it sees the same pixels in both. A
family subclasses :class:`TorchDetector` with how it builds its network (:meth:`~TorchDetector.build`)
and how it reads boxes from a batch of squares (:meth:`~TorchDetector.detect_squares`); the
checkpoint it loads is :mod:`.checkpoints`' plain file of tensors.

>>> square_input(np.zeros((64, 32), np.uint8), 128).shape
(128, 128)
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import cv2
import numpy as np

from ..runtime.devices import Devices
from .detector import RAW_CONF, Detector, Found


def square_input(image: np.ndarray, imgsz: int) -> np.ndarray:
    """A uint8 H×W image resized (stretched) to ``imgsz`` × ``imgsz``; the model input of every non-YOLO arch."""
    if image.shape[:2] == (imgsz, imgsz):
        return image
    return cv2.resize(image, (imgsz, imgsz), interpolation=cv2.INTER_AREA)


class TorchDetector(Detector):
    """A non-YOLO checkpoint (``checkpoint``: the dict :func:`~.checkpoints.read_checkpoint` returns) on ``device``.

    :meth:`build` makes the network of the checkpoint's ``arch`` and ``backbone``.
    """

    def __init__(
        self,
        checkpoint: dict[str, Any],
        *,
        imgsz: int | None = None,
        device: Devices = Devices(),
        tta: bool = False,
        conf: float = RAW_CONF,
    ) -> None:
        self.arch = checkpoint["arch"]
        self.backbone: str = checkpoint["backbone"]
        super().__init__(imgsz=imgsz or checkpoint["imgsz"], device=device.resolve().torch, tta=tta, conf=conf)
        self.model = self.build(self.imgsz)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.loaded()
        self.model.to(self.device).eval()

    @abstractmethod
    def build(self, imgsz: int) -> Any:
        """The family's network, ready for the checkpoint's weights."""

    def loaded(self) -> None:
        """What the family does once the checkpoint's weights are in :attr:`model` (nothing, unless it says)."""

    @abstractmethod
    def detect_squares(self, batch: Any) -> list[Found]:
        """``(xyxy, scores)`` per image of a ``[N, 1, S, S]`` float batch in 0..1, in the pixels of the square."""

    def run(self, images: list[np.ndarray]) -> list[Found]:
        import torch

        squares = np.stack([square_input(image, self.imgsz) for image in images])
        batch = torch.from_numpy(squares).to(self.device)[:, None].float().div_(255.0)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], enabled=self.device.startswith("cuda")):
            found = self.detect_squares(batch)
        scaled = []
        for image, (boxes, scores) in zip(images, found):
            height, width = image.shape[:2]
            scaled.append((boxes * np.array([width, height, width, height]) / self.imgsz, scores))
        return scaled
