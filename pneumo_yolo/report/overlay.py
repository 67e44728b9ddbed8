"""Overlay pictures: a radiograph with ground truth boxes in green and predictions in red with their confidence.

A picture is drawn as palette indices (254 gray levels, then green and red) and saved as a
palette PNG: a third of the size of an RGB one, with the same look.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from ..dicom.read import DicomReadError, read_header, read_radiograph, resize_longest

OVERLAY_SIDE = 512
"""Longest side of an overlay picture, in pixels."""
GRAY_LEVELS = 254
TRUTH_INDEX = GRAY_LEVELS
PREDICTION_INDEX = GRAY_LEVELS + 1
TRUTH_RGB = (0, 255, 0)
PREDICTION_RGB = (255, 0, 0)
PALETTE = [round(i * 255 / (GRAY_LEVELS - 1)) for i in range(GRAY_LEVELS) for _ in range(3)] + [
    *TRUTH_RGB,
    *PREDICTION_RGB,
]
LINE = 2
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.45


class OverlayError(ValueError):
    """An image that cannot be drawn; the message names the file."""


def load_picture(
    path: Path, original_size: tuple[float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float]]:
    """An 8-bit grayscale picture, shrunk to :data:`OVERLAY_SIDE` pixels if larger, and the ``(W, H)`` grid its boxes live in.

    A DICOM knows its own grid; a PNG or JPEG (a converted image may be smaller than the original)
    uses ``original_size`` when given, else its own size.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        try:
            header = read_header(path)
            image = read_radiograph(path, OVERLAY_SIDE if max(header.width, header.height) > OVERLAY_SIDE else None)
        except DicomReadError as error:
            raise OverlayError(str(error)) from None
        return image.pixels, (float(image.width), float(image.height))
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise OverlayError(f"{path}: not a readable PNG/JPEG image")
    height, width = pixels.shape
    size = original_size or (float(width), float(height))
    return resize_longest(pixels, OVERLAY_SIDE if max(height, width) > OVERLAY_SIDE else None), size


def to_picture(boxes_ltwh: np.ndarray, original_size: tuple[float, float], picture_size: tuple[int, int]) -> np.ndarray:
    """Integer corners ``x1 y1 x2 y2`` (inclusive, in picture pixels) of ``ltwh`` boxes given in the original grid.

    >>> to_picture(np.array([[100, 200, 300, 400.0]]), (1024, 1024), (512, 512)).tolist()
    [[50, 100, 199, 299]]
    """
    (width, height), (columns, rows) = original_size, picture_size
    b = np.asarray(boxes_ltwh, dtype=np.float64).reshape(-1, 4)
    scale = np.array([columns / width, rows / height, columns / width, rows / height])
    corners = np.round(np.c_[b[:, :2], b[:, :2] + b[:, 2:]] * scale).astype(int)
    corners[:, 2:] -= 1
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, columns - 1)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, rows - 1)
    return corners


def _label(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    """Red text with a black outline above ``(x, y)``, or just inside the box when there is no room above."""
    (_, text_height), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
    baseline = y - 4 if y - 4 - text_height >= 0 else y + text_height + 4
    mask = np.zeros_like(canvas)
    cv2.putText(mask, text, (x + 2, baseline), _FONT, _FONT_SCALE, 255, 1)
    glyphs = mask > 127  # OpenCV antialiases text, which palette indices cannot blend
    canvas[cv2.dilate(glyphs.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0
    canvas[glyphs] = PREDICTION_INDEX


def draw_overlay(
    pixels: np.ndarray, original_size: tuple[float, float], truth: np.ndarray | None, rows: np.ndarray
) -> np.ndarray:
    """Palette indices of ``pixels`` with ``truth`` (``ltwh``) in green, then ``rows`` (``conf x y w h``) in red with labels."""
    levels = np.round(pixels.astype(np.float32) * ((GRAY_LEVELS - 1) / 255)).astype(np.uint8)
    canvas = np.ascontiguousarray(levels)
    picture_size = (pixels.shape[1], pixels.shape[0])
    if truth is not None:
        for x1, y1, x2, y2 in to_picture(truth, original_size, picture_size):
            cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2), int(y2)), TRUTH_INDEX, LINE)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    for conf, (x1, y1, x2, y2) in zip(rows[:, 0], to_picture(rows[:, 1:], original_size, picture_size)):
        cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2), int(y2)), PREDICTION_INDEX, LINE)
        _label(canvas, f"{conf:.2f}", int(x1), int(y1))
    return canvas


def encode_png(indices: np.ndarray) -> bytes:
    """A palette PNG of :func:`draw_overlay`'s indices."""
    from PIL import Image

    picture = Image.fromarray(indices, mode="P")
    picture.putpalette(PALETTE)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
