"""``train``: the checks every trainer shares, then the YOLO trainer or the Lightning one, as the settings' ``arch`` says.

The settings (:class:`~.common.TrainSettings`) were checked when they were built; what depends on
the dataset (its size, its parts) is checked here, before torch or Ultralytics load, so mistakes
fail in well under a second.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..data.dataset import ConvertedDataset
from ..nets import YOLO
from ..runtime.memory import check_train_memory
from .common import DEFAULT_IMGSZ, TrainResult, TrainSettings, check_imgsz
from .yolo import train_yolo


def train(dataset: ConvertedDataset | Path, settings: TrainSettings) -> TrainResult | None:
    """Train (or resume) a model on ``dataset`` (a :class:`ConvertedDataset`, or the path of its YAML) and return where its outputs are.

    ``settings.arch`` ``yolo`` trains a YOLO detector or an opacity classifier, as ``model``'s task says
    (:func:`.yolo.train_yolo`); ``faster-rcnn``, ``mask-rcnn`` and ``unet`` train that network
    (:func:`.lightning.train_arch`), ``model`` then being an optional weights file to start
    from; that returns ``None`` in the extra processes of a multi-GPU run. ``score_val`` also
    scores ``best.pt`` on the validation split, as the ``train`` command does. The run trains at
    ``settings.imgsz``, else at the size the dataset was converted at.

    Example::

        result = train(Path("datasets/rsna/data.yaml"), TrainSettings(model="yolo11s.yaml", epochs=30))
        result.best  # <cwd>/runs/exp/weights/best.pt
    """
    if not isinstance(dataset, ConvertedDataset):
        dataset = ConvertedDataset.from_yaml(dataset)
    imgsz = settings.imgsz or dataset.imgsz or DEFAULT_IMGSZ
    if settings.imgsz is None:
        check_imgsz(imgsz, settings.arch, "dataset_imgsz")
    settings = replace(settings, project=settings.project.expanduser().resolve())
    if not settings.resume and settings.devices.names[:1] in (("cpu",), ("mps",)):
        check_train_memory(settings.batch, imgsz)
    if settings.arch != YOLO:
        dataset.check_parts()
        from .lightning import (
            train_arch,  # here, not above: importing Lightning takes seconds, which a YOLO run or a mistake should not wait for
        )

        return train_arch(dataset, settings, imgsz)
    return train_yolo(dataset, settings, imgsz)
