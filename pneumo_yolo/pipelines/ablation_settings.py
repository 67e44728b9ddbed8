"""What the ablation trains and how (:class:`AblationSettings`), apart from the run, so that the CLI reads its defaults without importing the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.devices import Devices


@dataclass(frozen=True)
class AblationSettings:
    """What the ablation trains and how; the defaults are CPU sizes (``make ablation`` gives the split sizes)."""

    test_size: float = 0.1
    folds: int = 3
    model: str = "yolo11n.yaml"
    classifier: str = "yolo11n-cls.yaml"
    imgsz: int = 192
    epochs: int = 20
    classifier_epochs: int = 10
    batch: int = 16
    seeds: tuple[int, ...] = (0,)
    devices: Devices = Devices()
    online: bool = False
