"""The one loader of every detector's weights: a plain checkpoint of ours, else an Ultralytics YOLO model."""

from __future__ import annotations

from pathlib import Path

from ..runtime.devices import Devices
from .archs import DETECTORS
from .checkpoints import CheckpointError, read_checkpoint
from .detector import RAW_CONF, Detector, DetectorError
from .yolo import YoloDetector


def load_detector(
    weights: Path, *, imgsz: int | None = None, device: Devices = Devices(), tta: bool = False, conf: float = RAW_CONF
) -> Detector:
    """The detector of a weights file, on ``device`` (resolved here unless it is): an arch checkpoint of ours (read safely), else a YOLO model."""
    weights = Path(weights)
    if not weights.is_file():
        raise DetectorError(f"--weights {weights}: no such file (predict loads only weights files that exist on disk)")
    try:
        checkpoint = read_checkpoint(weights)
    except CheckpointError as error:
        raise DetectorError(f"--weights {error}") from None
    if checkpoint is None:
        return YoloDetector(weights, imgsz=imgsz, device=device, tta=tta, conf=conf)
    family = DETECTORS.get(checkpoint["arch"])
    if family is None:
        raise DetectorError(f"--weights {weights}: unknown arch {checkpoint['arch']!r}")
    return family(checkpoint, imgsz=imgsz, device=device, tta=tta, conf=conf)
