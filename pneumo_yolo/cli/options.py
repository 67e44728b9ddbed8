"""Checks of option values at parse time: a bad value exits with code 2 and names the valid ones."""

from __future__ import annotations

import re

import typer

STRIDE = 32
"""YOLO's largest stride: train and predict sizes must be multiples of it."""


def model_imgsz(value: int | None) -> int | None:
    """``--imgsz`` of train and predict: a positive multiple of 32, else the nearest valid size is named.

    >>> model_imgsz(512)
    512
    """
    if value is not None and (value < STRIDE or value % STRIDE):
        nearest = max(STRIDE, STRIDE * round(value / STRIDE))
        raise typer.BadParameter(f"{value} is not a multiple of {STRIDE}; the nearest valid size is {nearest}")
    return value


def workers(value: str) -> int | None:
    """``--workers``: ``auto`` (returned as ``None``) or a whole number ≥ 0.

    >>> workers("auto"), workers("3")
    (None, 3)
    """
    text = value.strip().lower()
    if text == "auto":
        return None
    if not text.isdigit():
        raise typer.BadParameter(f"{value!r} is not valid; use auto or a whole number ≥ 0 (0: decode in the predicting process)")
    return int(text)


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


def synth_preset(value: str) -> str:
    """``--preset`` of synth and demo: the name of a synthetic data preset (``easy`` or ``hard``)."""
    from ..synth.sample import PRESETS

    if value not in PRESETS:
        raise typer.BadParameter(f"{value!r} is not valid; use one of {', '.join(PRESETS)}")
    return value
