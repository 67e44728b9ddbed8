"""Synthetic RSNA-like chest radiographs, labels and folders, for tests and the demo.

A case is first *sampled* (:mod:`.sample`: anatomy, view, class and opacity boxes, all from
one RNG, into a :class:`ChestSpec`), then *rendered* (:mod:`.render`: a pure function of
the spec), and whole data sets are *written* in the real RSNA layout (:mod:`.write`).
Imports point one way: write → render → sample.
"""

from .render import render_chest
from .sample import (
    CLASSES,
    NORMAL,
    NOT_NORMAL,
    OPACITY,
    PRESETS,
    Anatomy,
    ChestSpec,
    Mimic,
    Opacity,
    Preset,
    SynthError,
    patient_ids,
    preset_params,
    sample_chest,
)
from .write import SynthSummary, label_rows, make_rsna_like

__all__ = [
    "CLASSES",
    "NORMAL",
    "NOT_NORMAL",
    "OPACITY",
    "PRESETS",
    "Anatomy",
    "ChestSpec",
    "Mimic",
    "Opacity",
    "Preset",
    "SynthError",
    "SynthSummary",
    "label_rows",
    "make_rsna_like",
    "patient_ids",
    "preset_params",
    "render_chest",
    "sample_chest",
]
