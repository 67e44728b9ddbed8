"""The training data of the torchvision and U-Net detectors: a converted dataset's PNGs and YOLO label files.

One reader for every arch that is not Ultralytics: the images that a dataset YAML lists for
``train`` or ``val`` (a folder, or a fold's list file), each with the label file Ultralytics
would read for it (``images/`` → ``labels/``, ``0 cx cy w h`` normalised per line; empty or
missing: no box). Every image is stretched to ``imgsz`` × ``imgsz``, as :func:`square_input`
does at prediction (:func:`pneumo_yolo.nets.torch_net.square_input`), so a model sees the same
pixels in training and in prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..boxes import ltwh_to_xyxy, mirror_xyxy, yolo_to_ltwh
from ..data.dataset import ConvertedDataset, label_path_of
from ..nets.torch_net import square_input


def read_label_boxes(image: Path, imgsz: int) -> np.ndarray:
    """The ``xyxy`` boxes of ``image``'s label file in the pixels of the ``imgsz`` square (``(0, 4)``: no box).

    Boxes narrower or lower than one pixel there are left out: torchvision refuses them.
    """
    label = label_path_of(image)
    text = label.read_text() if label.is_file() else ""
    rows = np.array(text.split(), dtype=np.float64).reshape(-1, 5)
    boxes = ltwh_to_xyxy(yolo_to_ltwh(rows[:, 1:], imgsz, imgsz)).reshape(-1, 4).clip(0, imgsz)
    return boxes[(boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)]


def box_masks(boxes: np.ndarray, imgsz: int, shape: str = "ellipse") -> np.ndarray:
    """One uint8 mask per box, ``shape`` ``"ellipse"`` (inscribed in the box) or ``"box"`` (the box filled).

    >>> int(box_masks(np.array([[0.0, 0.0, 4.0, 4.0]]), 6, "box")[0].sum())
    16
    >>> int(box_masks(np.array([[0.0, 0.0, 4.0, 4.0]]), 6, "ellipse")[0, 0, 0])
    0
    """
    masks = np.zeros((len(boxes), imgsz, imgsz), np.uint8)
    y, x = (axis + 0.5 for axis in np.ogrid[:imgsz, :imgsz])  # pixel centres
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        if shape == "box":
            mask[int(round(y1)) : int(round(y2)), int(round(x1)) : int(round(x2))] = 1
        else:
            a, b = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
            mask[(((x - (x1 + x2) / 2) / a) ** 2 + ((y - (y1 + y2) / 2) / b) ** 2) <= 1] = 1
    return masks


class BoxDataset:
    """A torch map-style dataset of ``(image [1, S, S] float in 0..1, target)`` for the listed images.

    ``target`` holds ``boxes`` (``xyxy``, float32), ``labels`` (all 1: opacity) and, with
    ``masks`` set to ``"ellipse"`` (Mask R-CNN) or ``"box"`` (U-Net), ``masks``: one mask per box,
    and ``mask``: their union as a ``[1, S, S]`` float map (the U-Net's target). ``flip`` mirrors half of the images
    horizontally (never vertically: chest X-rays are not upside-down).
    """

    def __init__(
        self, images: list[Path], imgsz: int, *, flip: bool = False, masks: str | None = None, seed: int = 0
    ) -> None:
        self.images, self.imgsz, self.flip, self.masks = list(images), imgsz, flip, masks
        self.rng = np.random.default_rng(seed)

    @classmethod
    def of(
        cls,
        dataset: ConvertedDataset,
        part: str,
        imgsz: int,
        *,
        flip: bool = False,
        masks: str | None = None,
        seed: int = 0,
    ) -> BoxDataset:
        """The images that ``dataset`` lists for ``part`` (``train`` or ``val``)."""
        return cls(dataset.listed(part), imgsz, flip=flip, masks=masks, seed=seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        import torch

        path = self.images[index]
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise OSError(f"{path}: cannot read the image")
        image = square_input(pixels, self.imgsz)
        boxes = read_label_boxes(path, self.imgsz)
        if self.flip and self.rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
            boxes = mirror_xyxy(boxes, self.imgsz)
        target: dict[str, Any] = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
        }
        if self.masks:
            masks = box_masks(boxes, self.imgsz, self.masks)
            target["masks"] = torch.as_tensor(masks)
            target["mask"] = torch.as_tensor(masks.max(axis=0, initial=0)[None], dtype=torch.float32)
        return torch.as_tensor(image, dtype=torch.float32)[None] / 255.0, target


def collate(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Images and targets as lists: torchvision detectors take lists, the U-Net stacks them."""
    return [image for image, _ in batch], [target for _, target in batch]
