"""Checks of option values at parse time: a bad value exits with code 2 and names the valid ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..settings import MAX_IMGSZ

STRIDE = 32
"""YOLO's largest stride: train and predict sizes must be multiples of it."""

PRESETS = ("easy", "hard")
"""The synthetic data presets (:data:`pneumo_yolo.synth.sample.PRESETS`), named here so that ``--help`` lists them
without importing the synthesiser; a test checks that both agree."""
ARCHS = ("yolo", "faster-rcnn", "mask-rcnn", "unet")
"""The detector families of ``train --arch`` (:data:`pneumo_yolo.nets.archs.ARCHS`), for ``--help``; a test checks both agree."""
DEVICE_METAVAR = "cpu|0|0,1,…"
"""How ``--help`` shows ``--device``: the CPU, one GPU index, or several."""


def choices(names: tuple[str, ...]) -> str:
    """The metavar that lists ``names`` in ``--help``.

    >>> choices(PRESETS)
    'easy|hard'
    """
    return "|".join(names)


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


def convert_setting(field: str) -> Callable[[Any], Any]:
    """The check of one ``convert`` option at parse time: :class:`converters.settings.ConvertSettings`' own rule, no copy of it.

    >>> convert_setting("channels")(3)
    3
    """

    def check(value: Any) -> Any:
        from converters.settings import ConvertSettings

        from ..settings import SettingError

        try:
            ConvertSettings(**{field: value})
        except SettingError as error:
            raise typer.BadParameter(f"{value} {error.problem}") from None
        return value

    return check


convert_imgsz = convert_setting("imgsz")
"""``--imgsz`` of convert: the longest side of the written PNGs, from 8 to 4096 (``None``: the original size)."""
channels = convert_setting("channels")
"""``--channels``: 1 (grayscale, the default) or 3."""
val_fraction = convert_setting("val_fraction")
"""``--val-fraction``: a share in [0, 1)."""


def device(value: str | None) -> str | None:
    """``--device``: GPU indices, ``cpu`` or ``mps``, read by :meth:`~pneumo_yolo.runtime.devices.Devices.parse`; whether the GPUs exist is checked when the run starts."""
    from ..runtime.devices import DeviceError, Devices

    try:
        Devices.parse(value)
    except DeviceError as error:
        raise typer.BadParameter(f"{error.value}: {error.problem}") from None
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
            _postprocess_setting({key: number})
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
        iou_value = (numbers(iou) or (0.0,))[0] if iou else 0.0
        if method != "none":
            _postprocess_setting({"merge": method, "merge_iou": iou_value})
        found.append((method, iou_value))
    return tuple(found)


def _postprocess_setting(setting: dict[str, Any]) -> None:
    """Raise ``typer.BadParameter`` with the post-processing's own message for a setting it refuses."""
    from ..eval.postprocess import ConfigError, PostprocessConfig

    try:
        PostprocessConfig(**setting)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
