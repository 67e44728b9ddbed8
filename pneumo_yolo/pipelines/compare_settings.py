"""What a comparison runs: its rows, each row's model, and its sizes (the defaults: docs/compare.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..runtime.devices import Devices

ROWS = ("yolo11", "yolov3", "faster-rcnn", "mask-rcnn", "unet")
"""The rows of the table, in order: each names an arch of ``train --arch`` (the two YOLOs by model)."""
MODELS = {
    "yolo11": "yolo11n.yaml",
    "yolov3": "yolov3-tiny.yaml",
    "faster-rcnn": "resnet18",
    "mask-rcnn": "resnet18",
    "unet": "resnet18",
}
"""Each row's ``train --model``: the size of each arch that learned best within the CPU budget (docs/compare.md)."""
ROW_OPTIONS: dict[str, dict[str, Any]] = {"yolov3": {"optimizer": "AdamW", "lr0": 0.004}, "mask-rcnn": {"lr0": 0.002}}
"""Each row's ``train --set`` options beyond the arch's defaults, chosen like :data:`MODELS` (docs/compare.md#sizes)."""
YOLO_OVERRIDES = {"val": False, "plots": False}
"""Ultralytics' per-epoch validation and plots are off: like the other archs, each YOLO keeps its last epoch's model."""


@dataclass(frozen=True)
class CompareSettings:
    """Sizes of the comparison (the defaults: docs/compare.md says what they took on 2 CPU cores).

    ``budget_min`` is each row's training budget: CPU minutes (all its threads together) on the
    CPU, wall minutes on a GPU. The batch is 16 for every arch; ``options`` holds each row's
    other training settings (:data:`ROW_OPTIONS`).
    """

    n_train: int = 400
    n_test: int = 300
    dicom_size: int = 256
    imgsz: int = 128
    val_fraction: float = 0.25
    budget_min: float = 6.0
    curve_points: int = 6
    batch: int = 16
    models: Mapping[str, str] = field(default_factory=lambda: dict(MODELS))
    options: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {row: dict(options) for row, options in ROW_OPTIONS.items()}
    )
    rows: tuple[str, ...] = ROWS
    preset: str = "hard"
    seed: int = 0
    devices: Devices = Devices()
    parallel: int | None = None
    """Rows trained at once, each in a process of its own; ``None``: on the CPU one per core (at most the rows), on a GPU one."""

    def rows_at_once(self, rows: int, *, on_cpu: bool, cores: int) -> int:
        """How many of ``rows`` rows train at once (see :attr:`parallel`).

        >>> CompareSettings().rows_at_once(5, on_cpu=True, cores=2), CompareSettings().rows_at_once(5, on_cpu=False, cores=16)
        (2, 1)
        >>> CompareSettings(parallel=8).rows_at_once(5, on_cpu=True, cores=2)
        5
        """
        wanted = self.parallel if self.parallel else (cores if on_cpu else 1)
        return max(1, min(wanted, rows))

    def plan(self, row: str) -> tuple[str, str]:
        """``(arch, --model)`` of one row.

        >>> CompareSettings().plan("yolov3"), CompareSettings().plan("mask-rcnn")
        (('yolo', 'yolov3-tiny.yaml'), ('mask-rcnn', 'resnet18'))
        """
        if row not in ROWS:
            raise ValueError(f"unknown row {row!r}: choose from {', '.join(ROWS)}")
        return ("yolo" if row.startswith("yolo") else row), self.models.get(row, MODELS[row])

    def overrides(self, row: str) -> dict[str, Any]:
        """The ``train`` overrides of one row: the seed, the YOLOs' :data:`YOLO_OVERRIDES`, then the row's :attr:`options`.

        >>> CompareSettings(options={"unet": {"lr0": 0.002}}).overrides("unet")
        {'exist_ok': True, 'seed': 0, 'lr0': 0.002}
        """
        arch, _ = self.plan(row)
        return {
            "exist_ok": True,
            "seed": self.seed,
            **(YOLO_OVERRIDES if arch == "yolo" else {}),
            **self.options.get(row, {}),
        }


def check_rows(rows: Sequence[str]) -> tuple[str, ...]:
    """The rows asked for, checked and in the table's order.

    >>> check_rows(["unet", "yolo11"])
    ('yolo11', 'unet')
    """
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise ValueError(f"--rows {','.join(unknown) or '(none)'}: choose from {', '.join(ROWS)}")
    return tuple(row for row in ROWS if row in rows)


def parse_models(items: Sequence[str]) -> dict[str, str]:
    """``ROW=MODEL`` options as ``{row: model}`` over the defaults (:data:`MODELS`).

    >>> parse_models(["faster-rcnn=resnet50", "yolov3=yolov3.yaml"])["faster-rcnn"]
    'resnet50'
    """
    models = dict(MODELS)
    for item in items:
        row, sep, model = (part.strip() for part in item.partition("="))
        if not sep or not model or row not in ROWS:
            raise ValueError(
                f"--model {item!r}: expected ROW=MODEL with ROW one of {', '.join(ROWS)}, e.g. faster-rcnn=resnet34"
            )
        models[row] = model
    return models
