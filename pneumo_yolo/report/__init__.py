"""An offline HTML report of predictions: metric, charts and overlay galleries in one folder.

``write_report`` writes::

    <out>/index.html             the page (inline CSS, relative links only)
    <out>/plots/*.png            metric per IoU threshold, score against confidence, boxes per image
    <out>/overlays/<id>.png      gallery pictures: truth in green, predictions in red with confidence

``pneumo-yolo report`` builds it from files; ``train`` builds it for its validation split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, check_patient_id
from . import plots
from .analysis import COUNT_BINS, Analysis, Predictions, analyse
from .overlay import OverlayError, draw_overlay, encode_png, load_picture
from .page import CHART_CONFIDENCE, CHART_COUNTS, CHART_IOU, render_page

__all__ = [
    "GALLERY_SIZE",
    "REPORT_DIR",
    "Predictions",
    "ReportError",
    "ReportSummary",
    "ReportUsageError",
    "write_report",
]

REPORT_DIR = "report"
GALLERY_SIZE = 12
INDEX = "index.html"
PLOTS = "plots"
OVERLAYS = "overlays"


class ReportError(ValueError):
    """Inputs from which no report can be made; the message says which and why."""


class ReportUsageError(ReportError):
    """A report asked of the wrong place (an ``--images`` that is no folder, or holds no image): a usage error, like predict's."""


@dataclass(frozen=True)
class ReportSummary:
    """Where the page is, what it covers, and what was left out (``notes``)."""

    index: Path
    n_images: int
    score: float | None
    n_overlays: int
    notes: list[str] = field(default_factory=list)


def _coverage(
    predictions: Predictions, images: Mapping[str, Path], truth: Mapping[str, np.ndarray] | None
) -> tuple[list[str], dict | None, list[str]]:
    """Patients to report (predicted and pictured), those to score, and notes on what was left out."""
    reported = [pid for pid in predictions.rows if pid in images]
    notes = []
    if len(reported) < len(predictions.rows):
        notes.append(
            f"{len(predictions.rows) - len(reported):,} predicted patient(s) have no image in the image folder and are left out."
        )
    if len(reported) < len(images):
        notes.append(f"{len(images) - len(reported):,} image(s) have no prediction row and are left out.")
    if truth is None:
        return reported, None, notes
    scored = {pid: truth[pid] for pid in reported if pid in truth}
    if len(scored) < len(reported):
        notes.append(f"{len(reported) - len(scored):,} reported image(s) have no labels and are not scored.")
    return reported, scored, notes


def _write_charts(out: Path, analysis: Analysis) -> dict[str, str]:
    """Write the charts; returns their relative paths by chart name."""
    scored = analysis.scored
    true_counts = scored.true_counts if scored else None
    charts = {CHART_COUNTS: plots.box_count_bars(COUNT_BINS, analysis.predicted_counts, true_counts)}
    if scored is not None:
        charts[CHART_IOU] = plots.iou_threshold_bars(scored.result.thresholds, scored.result.per_threshold)
        charts[CHART_CONFIDENCE] = plots.confidence_curve(scored.conf_thresholds, scored.conf_scores)
    paths = {}
    for name, data in charts.items():
        atomic_write_bytes(out / PLOTS / f"{name}.png", data)
        paths[name] = f"{PLOTS}/{name}.png"
    return paths


def _write_overlays(
    out: Path,
    patient_ids: Sequence[str],
    images: Mapping[str, Path],
    predictions: Predictions,
    truth: Mapping[str, np.ndarray] | None,
    sizes: Mapping[str, tuple[float, float]],
) -> tuple[dict[str, str], list[str]]:
    """Draw each gallery patient; returns the relative paths written and notes on pictures that failed."""
    paths, notes = {}, []
    for pid in patient_ids:
        name = f"{check_patient_id(pid)}.png"
        try:
            pixels, original_size = load_picture(images[pid], sizes.get(pid))
        except OverlayError as error:
            notes.append(f"no overlay for {pid}: {error}")
            continue
        picture = draw_overlay(pixels, original_size, None if truth is None else truth.get(pid), predictions.rows[pid])
        atomic_write_bytes(out / OVERLAYS / name, encode_png(picture))
        paths[pid] = f"{OVERLAYS}/{name}"
    return paths, notes


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete pictures an earlier report left in our own sub-folders, so the folder holds this report only."""
    for folder in (PLOTS, OVERLAYS):
        for path in (out / folder).glob("*.png"):
            if f"{folder}/{path.name}" not in keep:
                path.unlink()


def write_report(
    out: Path,
    images: Mapping[str, Path],
    predictions: Predictions,
    truth: Mapping[str, np.ndarray] | None = None,
    *,
    sizes: Mapping[str, tuple[float, float]] | None = None,
    gallery_size: int = GALLERY_SIZE,
    title: str = "pneumo-yolo report",
    notes: Sequence[str] = (),
) -> ReportSummary:
    """Write ``out/index.html`` with its charts and overlays.

    Args:
        out: report folder (created).
        images: picture per patientId: a DICOM, or a PNG/JPEG (e.g. converted images).
        predictions: boxes per patientId (``conf x y w h``, original pixels).
        truth: ``ltwh`` boxes per labelled patientId; ``None`` shows prediction overlays only.
        sizes: original ``(W, H)`` of resized PNGs (the converter's manifest); raw detections
            and DICOMs bring their own.
        gallery_size: pictures per gallery.
        title: page title.
        notes: lines shown at the top (e.g. what the caller left out).

    Raises:
        ReportError: no patient has both a prediction and an image.
    """
    out = Path(out)
    reported, scored, coverage_notes = _coverage(predictions, images, truth)
    if not reported:
        raise ReportError("no image has a prediction: the image file stems must be the patientIds of the predictions")
    selected = predictions.select(reported)
    analysis = analyse(selected, scored, gallery_size)
    charts = _write_charts(out, analysis)
    all_sizes = {**(sizes or {}), **predictions.sizes()}
    overlays, overlay_notes = _write_overlays(
        out, analysis.galleries.patient_ids(), images, selected, scored, all_sizes
    )
    _remove_stale(out, set(charts.values()) | set(overlays.values()))
    all_notes = [*notes, *coverage_notes, *overlay_notes]
    index = out / INDEX
    atomic_write_text(index, render_page(title, analysis, charts, overlays, all_notes))
    result = analysis.scored.result if analysis.scored else None
    score = None if result is None or np.isnan(result.score) else float(result.score)
    return ReportSummary(index, analysis.n_images, score, len(overlays), all_notes)
