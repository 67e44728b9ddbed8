"""The Ultralytics YOLO family of :class:`~.detector.Detector` (YOLO11, YOLOv3 and every other YOLO config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.devices import Devices
from .detector import MAX_DETECTIONS, RAW_CONF, Detector, DetectorError, Found
from .ultralytics_weights import load_ultralytics, trained_imgsz

DETECT_TASK = "detect"


class YoloDetector(Detector):
    """An Ultralytics YOLO detector checkpoint.

    Only a weights file that exists on disk is loaded: ``.pt`` files are pickles, so load
    only weights you trust.
    """

    def __init__(
        self,
        weights: Path,
        *,
        imgsz: int | None = None,
        device: Devices = Devices(),
        tta: bool = False,
        conf: float = RAW_CONF,
    ) -> None:
        self.model = load_ultralytics(
            weights,
            DETECT_TASK,
            error=DetectorError,
            named=f"--weights {weights}",
            kind="a detector",
            advice="an image classifier goes to --classifier",
        )
        super().__init__(
            imgsz=imgsz or trained_imgsz(self.model) or 640,
            device=device.resolve().first,
            tta=tta,
            conf=conf,
        )
        self.predictor_class = without_cpu_warmup(self.model.task_map[self.model.task]["predictor"])

    def run(self, images: list[np.ndarray]) -> list[Found]:
        results = self.model.predict(
            images,
            imgsz=self.imgsz,
            conf=self.conf,
            max_det=MAX_DETECTIONS,
            device=self.device,
            verbose=False,
            save=False,
            predictor=self.predictor_class,
        )
        return [
            (r.boxes.xyxy.cpu().numpy().astype(np.float64), r.boxes.conf.cpu().numpy().astype(np.float64))
            for r in results
        ]


def without_cpu_warmup(predictor: type) -> type:
    """A subclass of the Ultralytics predictor class ``predictor`` that skips the warm-up on the CPU.

    There the warm-up of a PyTorch model runs no forward pass: it only imports torchvision, so
    that NMS uses torchvision's kernel rather than Ultralytics' own, which keeps the same boxes.
    That import also imports ``torch._dynamo`` and, with a CUDA build of torch, Triton: about
    150 MB more in the predicting process (docs/predict.md). Ultralytics' NMS loops in Python
    over the boxes it keeps: as fast at :data:`~.detector.RAW_CONF`, slower with a far lower
    ``--conf``, where images keep hundreds of candidate boxes. On a GPU the warm-up runs as
    before. (An image classifier's predictor imports torchvision for its transforms anyway, so
    it is left as it is.)
    """

    class CpuPredictor(predictor):
        def setup_model(self, model: Any, verbose: bool = True) -> None:
            super().setup_model(model, verbose)
            self.done_warmup = self.device.type == "cpu"

    return CpuPredictor
