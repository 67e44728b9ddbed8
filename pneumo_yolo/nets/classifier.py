"""The image-level gate's network: an Ultralytics classifier giving P(opacity) per grayscale image.

The winners of the challenge multiplied every box score by the image's P(opacity). ``train --model
yolo11n-cls.yaml`` (any model Ultralytics builds for its ``classify`` task) trains such a
classifier (:mod:`pneumo_yolo.train.classifier`), ``predict --classifier`` loads it here. Class 1
is opacity. The grayscale images go in as three equal channels: Ultralytics 8.4 classifies
3-channel images only (docs/train.md says what a 1-channel classifier would take and save).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.classify_view import CLASS_NAMES
from ..runtime.devices import Devices
from .ultralytics_weights import load_ultralytics, trained_imgsz

CLASSIFY_TASK = "classify"
PREDICT_BATCH = 32
"""Images per call of the classifier in prediction."""


class ClassifierError(RuntimeError):
    """Weights that cannot serve as the opacity classifier; the message says why."""


class ImageClassifier:
    """An Ultralytics classifier trained by ``train``, giving P(opacity) per grayscale image.

    Only a weights file that exists on disk is loaded: ``.pt`` files are pickles, so load only
    weights you trust.

    Example::

        gate = ImageClassifier(Path("runs/gate/weights/best.pt"))
        p_opacity = gate.probabilities([load_image(path, 512).pixels for path in paths])
    """

    def __init__(
        self, weights: Path, *, imgsz: int | None = None, device: Devices = Devices(), batch: int = PREDICT_BATCH
    ) -> None:
        self.model = load_ultralytics(
            weights,
            CLASSIFY_TASK,
            error=ClassifierError,
            named=str(weights),
            kind="an image classifier",
            advice="train one with --model yolo11n-cls.yaml",
        )
        names = list(self.model.names.values())
        if "opacity" not in names:
            raise ClassifierError(f"{weights}: its classes are {names}, not {list(CLASS_NAMES)}")
        self.opacity = names.index("opacity")
        self.imgsz = int(imgsz or trained_imgsz(self.model) or 224)
        self.device = device.resolve().first
        self.batch = max(1, batch)

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(opacity) of each uint8 H×W image, in order, as a float64 array of ``len(images)``."""
        found = np.empty(len(images), dtype=np.float64)
        for start in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(image) for image in images[start : start + self.batch]]
            results = self.model.predict(chunk, imgsz=self.imgsz, device=self.device, verbose=False, save=False)
            found[start : start + len(chunk)] = [float(result.probs.data[self.opacity]) for result in results]
        return found
