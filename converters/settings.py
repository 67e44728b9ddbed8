"""What ``convert`` writes, as one settings object: built once (by ``pneumo_yolo.cli`` or a pipeline), checked here.

Light on purpose (no OpenCV, pandas or pydicom at import), so that the command line checks its
options with these very rules before anything heavy loads.

>>> ConvertSettings(channels=2)
Traceback (most recent call last):
...
pneumo_yolo.settings.SettingError: channels 2: is not valid; use 1 or 3
"""

from __future__ import annotations

from dataclasses import dataclass

from pneumo_yolo.settings import MAX_IMGSZ, SettingError

MIN_IMGSZ = 8
"""The smallest ``imgsz`` convert writes (a model trains at a multiple of 32, at least 32)."""


@dataclass(frozen=True, kw_only=True)
class ConvertSettings:
    """Everything that changes the bytes written; a rerun must use the same settings.

    ``imgsz``: the longest side of the PNGs (``None``: the original size); ``channels``: the
    model input written into ``data.yaml``; ``val_fraction``: the share of patients in the
    validation split, or ``folds``: K-fold splits instead; ``png_compression``: a zlib level
    (``None``: OpenCV's fast default).
    """

    imgsz: int | None = None
    channels: int = 1
    val_fraction: float = 0.1
    seed: int = 0
    folds: int | None = None
    png_compression: int | None = None

    def __post_init__(self) -> None:
        if self.imgsz is not None and not MIN_IMGSZ <= self.imgsz <= MAX_IMGSZ:
            raise SettingError(
                "imgsz",
                f"is not valid; give a size from {MIN_IMGSZ} to {MAX_IMGSZ} pixels (train at a multiple of 32),"
                " or leave it out to keep the original size",
                value=self.imgsz,
            )
        if self.channels not in (1, 3):
            raise SettingError("channels", "is not valid; use 1 or 3", value=self.channels)
        if self.folds is not None and self.folds < 2:
            raise SettingError("folds", "must be at least 2", value=self.folds)
        if not 0.0 <= self.val_fraction < 1.0:
            raise SettingError("val_fraction", "is not in [0, 1)", value=self.val_fraction)
        if self.png_compression is not None and not 0 <= self.png_compression <= 9:
            raise SettingError("png_compression", "must be a zlib level, 0 to 9", value=self.png_compression)

    @property
    def png_params(self) -> list[int]:
        """``cv2.imencode`` parameters: OpenCV's default (fast, with a filtering strategy) unless a zlib level is set."""
        import cv2

        return [] if self.png_compression is None else [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression]
