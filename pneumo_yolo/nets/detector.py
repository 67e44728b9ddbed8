"""The interface of every detector family: raw ``xyxy`` boxes and scores per image, with horizontal-flip TTA.

A family (:mod:`.yolo`, :mod:`.rcnn`, :mod:`.unet`) implements one method, :meth:`Detector.run`,
on a list of uint8 H×W images; the base class adds the flipped pass of TTA and un-flips its
boxes, so that every family, and ensembles that mix them, give ``predict``, ``tune`` and
``evaluate`` the same thing. :func:`pneumo_yolo.nets.load.load_detector` picks the family of
a weights file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..boxes import mirror_xyxy

RAW_CONF = 0.05
"""Confidence floor of raw detections (the lowest threshold ``tune`` tries by default), unless the
post-processing threshold is lower still."""
MAX_DETECTIONS = 20
"""Boxes kept per image from the model (an RSNA image has at most 4 opacities)."""

Found = tuple[np.ndarray, np.ndarray]
"""``(xyxy boxes (N, 4) float64, scores (N,) float64)`` of one image, in its own pixels."""


class DetectorError(RuntimeError):
    """A weights file that cannot serve as a detector; the message names it and says why."""


class Detector(ABC):
    """A trained detector: ``imgsz`` (its input side), ``device``, ``tta`` and the raw-score floor ``conf``."""

    def __init__(self, *, imgsz: int, device: str, tta: bool = False, conf: float = RAW_CONF) -> None:
        self.imgsz, self.device, self.tta, self.conf = int(imgsz), device, tta, conf

    @abstractmethod
    def run(self, images: list[np.ndarray]) -> list[Found]:
        """One pass of the network over ``images``: each image's boxes in its own pixels, scores at least :attr:`conf`."""

    @property
    def passes(self) -> int:
        """Box lists per image: the plain pass, and with TTA the flipped one."""
        return 2 if self.tta else 1

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(boxes, scores, pass)`` per image, boxes in the image's own pixels; pass 1 is the flipped one, un-flipped."""
        if not images:
            return []
        plain = self.run(images)
        if not self.tta:
            return [(boxes, scores, np.zeros(len(scores), np.int64)) for boxes, scores in plain]
        flipped = self.run([np.ascontiguousarray(image[:, ::-1]) for image in images])
        found = []
        for image, (boxes, scores), (flip_boxes, flip_scores) in zip(images, plain, flipped):
            unflipped = mirror_xyxy(flip_boxes, image.shape[1])
            pass_index = np.r_[np.zeros(len(scores), np.int64), np.ones(len(flip_scores), np.int64)]
            found.append((np.r_[boxes, unflipped].reshape(-1, 4), np.r_[scores, flip_scores], pass_index))
        return found
