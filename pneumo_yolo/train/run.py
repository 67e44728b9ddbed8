"""``train``: the checks every trainer shares, then the YOLO trainer or the Lightning one, as ``arch`` says.

Everything that can be checked without torch or Ultralytics (the dataset, the run name, the
sizes, weights that would need a download) is checked first, so mistakes fail in well under a
second.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.dataset import ConvertedDataset
from ..nets.archs import YOLO
from ..runtime.devices import Devices
from ..runtime.memory import check_train_memory
from .common import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_IMGSZ,
    DEFAULT_NAME,
    TrainConfigError,
    TrainResult,
    check_run_name,
    check_sizes,
)
from .yolo import check_option_keys, train_yolo


def train(
    dataset: ConvertedDataset | Path,
    model: str | None = None,
    *,
    imgsz: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch: int = DEFAULT_BATCH,
    device: str | None = None,
    name: str = DEFAULT_NAME,
    project: Path | None = None,
    resume: bool = False,
    online: bool = False,
    overrides: Mapping[str, Any] | None = None,
    score_val: bool = False,
    arch: str = YOLO,
    budget_min: float | None = None,
    curve_points: int = 0,
) -> TrainResult | None:
    """Train (or resume) a model on ``dataset`` (a :class:`ConvertedDataset`, or the path of its YAML) and return where its outputs are.

    ``arch`` ``yolo`` trains a YOLO detector or an opacity classifier, as ``model``'s task says
    (:func:`.yolo.train_yolo`); ``faster-rcnn``, ``mask-rcnn`` and ``unet`` train that network
    (:func:`.lightning.train_arch`), ``model`` then being an optional weights file to start
    from; that returns ``None`` in the extra processes of a multi-GPU run. ``score_val`` also
    scores ``best.pt`` on the validation split, as the ``train`` command does.

    ``budget_min`` trains for that many minutes instead of ``epochs`` (CPU minutes on the CPU,
    wall minutes on a GPU: :mod:`.budget`); ``curve_points`` scores the learning curve on the
    validation split that many times along the run. Either writes ``curve.json`` to the run.

    Example::

        result = train(Path("datasets/rsna/data.yaml"), "yolo11s.yaml", epochs=30)
        result.best  # <cwd>/runs/exp/weights/best.pt
    """
    if not isinstance(dataset, ConvertedDataset):
        dataset = ConvertedDataset.from_yaml(dataset)
    name = check_run_name(name)
    project = (Path(project) if project else Path.cwd() / "runs").expanduser().resolve()
    check_option_keys(overrides or {}, None, "--set")
    size_given = imgsz is not None
    imgsz = imgsz or dataset.imgsz or DEFAULT_IMGSZ
    check_sizes(
        imgsz,
        epochs,
        batch,
        "--imgsz" if size_given else "the dataset's size (convert --imgsz; give train --imgsz to change it)",
    )
    if not resume and device is not None and Devices.parse(device).names[:1] in (("cpu",), ("mps",)):
        check_train_memory(batch, imgsz)
    if budget_min is not None and (budget_min <= 0 or resume):
        raise TrainConfigError(
            f"budget {budget_min} min: a budget must be more than 0 minutes, for a new run (not --resume)"
        )
    options = dict(
        imgsz=imgsz,
        epochs=epochs,
        batch=batch,
        device=device,
        name=name,
        project=project,
        resume=resume,
        overrides=overrides,
        score_val=score_val,
        budget_min=budget_min,
        curve_points=curve_points,
    )
    if arch != YOLO:
        dataset.check_parts()
        from .lightning import (
            train_arch,  # here, not above: importing Lightning takes seconds, which a YOLO run or a mistake should not wait for
        )

        return train_arch(dataset, arch, model, **options)
    return train_yolo(dataset, model, size_given=size_given, online=online, **options)
