"""Checks of option values at parse time: a bad value exits with code 2 and names the valid ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import typer

STRIDE = 32
"""YOLO's largest stride: train and predict sizes must be multiples of it."""
MAX_IMGSZ = 4096
"""The largest ``--imgsz`` of every command: a whole radiograph at full resolution (a 43 cm detector
at 0.1 mm pixels is about 4,300 pixels; RSNA's images are 1,024). A model at 4,096 px does 64 times
the work of one at 512 and holds about 1.3 GB per image on the CPU (docs/predict.md), so a larger
size is a typo, not a plan."""
MIN_CONVERT_IMGSZ = 8
MAX_SYNTH_IMAGES = 100_000
"""``--n-train`` and ``--n-test`` at most (synth's own bound, :data:`pneumo_yolo.synth.sample.MAX_IMAGES`)."""


def model_imgsz(value: int | None) -> int | None:
    """``--imgsz`` of train and predict: a multiple of 32 up to 4096, else the nearest valid size is named.

    >>> model_imgsz(512)
    512
    """
    if value is not None and (value < STRIDE or value % STRIDE or value > MAX_IMGSZ):
        nearest = min(MAX_IMGSZ, max(STRIDE, STRIDE * round(value / STRIDE)))
        problem = f"is more than {MAX_IMGSZ}" if value > MAX_IMGSZ else f"is not a multiple of {STRIDE}"
        raise typer.BadParameter(f"{value} {problem}; the nearest valid size is {nearest}")
    return value


def convert_imgsz(value: int | None) -> int | None:
    """``--imgsz`` of convert: the longest side of the written PNGs, from 8 to 4096 (``None``: the original size)."""
    if value is not None and not MIN_CONVERT_IMGSZ <= value <= MAX_IMGSZ:
        raise typer.BadParameter(
            f"{value} is not valid; give a size from {MIN_CONVERT_IMGSZ} to {MAX_IMGSZ} pixels (train at a multiple of {STRIDE}), or leave it out to keep the original size"
        )
    return value


def device(value: str | None) -> str | None:
    """``--device``: GPU indices, ``cpu`` or ``mps``, read by :meth:`~pneumo_yolo.runtime.devices.Devices.parse`; whether the GPUs exist is checked when the run starts."""
    from ..runtime.devices import DeviceError, Devices

    try:
        Devices.parse(value)
    except DeviceError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def raw_table(value: Path | None) -> Path | None:
    """``--save-raw``: a ``.csv`` or ``.parquet`` file, checked before any model loads."""
    from ..eval.detections import RawFileError, raw_format

    if value is not None:
        try:
            raw_format(value)
        except RawFileError as error:
            raise typer.BadParameter(str(error)) from None
    return value


def max_workers() -> int:
    """The most processes one ``--workers`` may start: twice the cores this process may use, and at least 4.

    Each is a Python process of about 100 MB; more than the cores only wait for them.
    """
    from ..runtime.devices import cpu_count

    return max(4, 2 * cpu_count())


def workers(value: str) -> int | None:
    """``--workers`` of predict and the like: ``auto`` (returned as ``None``) or a whole number from 0 to :func:`max_workers`.

    Only ASCII digits count: ``str.isdigit`` also takes ``²``, which ``int`` refuses.

    >>> workers("auto"), workers("3")
    (None, 3)
    """
    text = value.strip().lower()
    if text == "auto":
        return None
    if not (text.isascii() and text.isdecimal()):
        raise typer.BadParameter(
            f"{value!r} is not valid; use auto or a whole number ≥ 0 (0: decode in the predicting process)"
        )
    return worker_count(int(text))


def worker_count(value: int | None) -> int | None:
    """A number of worker processes (``None``: the default), refused above :func:`max_workers`."""
    if value is not None and value > (limit := max_workers()):
        raise typer.BadParameter(
            f"{value} is more than {limit} (twice the cores this process may use, at least 4): "
            "more processes only wait for the cores and hold memory"
        )
    return value


def channels(value: int) -> int:
    """``--channels``: 1 (grayscale, the default) or 3."""
    if value not in (1, 3):
        raise typer.BadParameter(f"{value} is not valid; use 1 or 3")
    return value


def val_fraction(value: float) -> float:
    """``--val-fraction``: a share in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1)")
    return value


def split_name(value: str | None) -> str | None:
    """``--split``: a split of the converted dataset, ``train``, ``val``, or ``fold<i>`` of a ``--folds`` dataset.

    >>> split_name("fold2")
    'fold2'
    """
    if value is not None and not re.fullmatch(r"train|val|fold\d+", value):
        raise typer.BadParameter(f"{value!r} is not one of 'train', 'val', 'fold0', 'fold1', …")
    return value


def check_split_has_manifest(split: str | None, manifest: Path | None) -> None:
    """``--split`` picks images by the converter's manifest, so it needs ``--manifest``."""
    if split is not None and manifest is None:
        raise typer.BadParameter("--split needs --manifest (the converter's OUT/manifest.csv)", param_hint="'--split'")


def synth_preset(value: str) -> str:
    """``--preset`` of synth and demo: the name of a synthetic data preset (``easy`` or ``hard``)."""
    from ..synth.sample import PRESETS

    if value not in PRESETS:
        raise typer.BadParameter(f"{value!r} is not valid; use one of {', '.join(PRESETS)}")
    return value


def numbers(value: str | None) -> tuple[float, ...] | None:
    """A comma-separated list of numbers (``--shrink 1,0.875``).

    >>> numbers("0.1, 0.2")
    (0.1, 0.2)
    """
    if value is None:
        return None
    found = []
    for item in value.split(","):
        try:
            found.append(float(item))
        except ValueError:
            raise typer.BadParameter(
                f"{item.strip()!r} is not a number; give a comma-separated list like 0.1,0.2"
            ) from None
    return tuple(found)


def postprocess_values(key: str) -> Callable[[str | None], tuple[float, ...] | None]:
    """The check of a ``tune`` grid option: a list of :func:`numbers`, each valid as the post-processing setting ``key``."""

    def check(value: str | None) -> tuple[float, ...] | None:
        found = numbers(value)
        for number in found or ():
            _postprocess_setting(**{key: number})
        return found

    return check


def merges(value: str | None) -> tuple[tuple[str, float], ...] | None:
    """``--merges``: ``none``, ``nms:IOU`` or ``wbf:IOU`` items, comma-separated.

    >>> merges("none,nms:0.4")
    (('none', 0.0), ('nms', 0.4))
    """
    from ..eval.postprocess import MERGE_METHODS

    if value is None:
        return None
    found = []
    for item in (part.strip() for part in value.split(",")):
        method, _, iou = item.partition(":")
        if method not in MERGE_METHODS or (method != "none" and not iou):
            raise typer.BadParameter(
                f"{item!r} is not a merge; write none, nms:IOU or wbf:IOU (e.g. none,nms:0.4,wbf:0.5)"
            )
        iou_value = numbers(iou)[0] if iou else 0.0
        if method != "none":
            _postprocess_setting(merge=method, merge_iou=iou_value)
        found.append((method, iou_value))
    return tuple(found)


def _postprocess_setting(**setting: object) -> None:
    """Raise ``typer.BadParameter`` with the post-processing's own message for a setting it refuses."""
    from ..eval.postprocess import ConfigError, PostprocessConfig

    try:
        PostprocessConfig(**setting)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
