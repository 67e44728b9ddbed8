"""The report's HTML: one self-contained page (inline CSS, no script, no external address).

Pictures are referenced by relative paths inside the report folder, so the folder opens
offline from disk. Text is escaped; the only patient data shown are patientIds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

from .analysis import COUNT_BINS, Analysis, Scored, Tile

CHART_IOU = "iou"
CHART_CONFIDENCE = "confidence"
CHART_COUNTS = "counts"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 256px; }
figure img { width: 256px; height: auto; display: block; }
figcaption { font-size: 0.8em; word-break: break-all; }
.legend span { font-weight: bold; }
.note { color: #8a6d00; }
"""


def _number(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: str, alt: str) -> str:
    return f'<img src="{escape(path)}" alt="{escape(alt)}">'


def _gallery(heading: str, tiles: Sequence[Tile], overlays: Mapping[str, str], empty: str) -> str:
    shown = [tile for tile in tiles if tile.patient_id in overlays]
    if not shown:
        return f"<h3>{escape(heading)}</h3><p>{escape(empty)}</p>"
    figures = "".join(
        f'<figure><a href="{escape(overlays[t.patient_id])}">{_image(overlays[t.patient_id], t.patient_id)}</a>'
        f"<figcaption><b>{escape(t.patient_id)}</b><br>{escape(t.caption)}</figcaption></figure>"
        for t in shown
    )
    return f'<h3>{escape(heading)}</h3><div class="gallery">{figures}</div>'


def _metric_section(scored: Scored, charts: Mapping[str, str]) -> str:
    result = scored.result
    rows = [[f"{t:.2f}", _number(v)] for t, v in zip(result.thresholds, result.per_threshold)]
    share = "n/a" if np.isnan(result.negative_fp_share) else f"{result.negative_fp_share:.1%}"
    facts = _table(
        ["", "value"],
        [
            ["score (mean over images)", _number(result.score)],
            ["images scored", f"{result.n_images:,}"],
            ["positive images: score", f"{_number(result.score_positive)} ({result.n_positive:,} images)"],
            [
                "negative images with a prediction: score",
                f"{_number(result.score_negative)} ({result.n_negative:,} images)",
            ],
            ["share of negative images with any prediction", share],
        ],
    )
    curve = _table(
        ["confidence threshold", "score"],
        [[f"{t:.2f}", _number(s)] for t, s in zip(scored.conf_thresholds, scored.conf_scores)],
    )
    return (
        "<h2>RSNA metric</h2>"
        "<p>Images with neither truth nor prediction are left out of the mean, as on the leaderboard.</p>"
        f"{facts}<h3>Per IoU threshold</h3>{_table(['IoU threshold', 'score'], rows)}{_image(charts[CHART_IOU], 'score per IoU threshold')}"
        f"<h3>Score against the confidence threshold</h3>{_image(charts[CHART_CONFIDENCE], 'score against confidence threshold')}"
        f"<details><summary>table</summary>{curve}</details>"
    )


def _counts_section(analysis: Analysis, charts: Mapping[str, str]) -> str:
    true_counts = analysis.scored.true_counts if analysis.scored else None
    header = ["boxes per image", "images (predicted)"] + (["images (true)"] if true_counts is not None else [])
    rows = []
    for i, label in enumerate(COUNT_BINS):
        row = [label, f"{analysis.predicted_counts[i]:,}"]
        if true_counts is not None:
            row.append(f"{true_counts[i]:,}")
        rows.append(row)
    return f"<h2>Boxes per image</h2>{_table(header, rows)}{_image(charts[CHART_COUNTS], 'boxes per image')}"


def render_page(
    title: str, analysis: Analysis, charts: Mapping[str, str], overlays: Mapping[str, str], notes: Sequence[str]
) -> str:
    """The whole page. ``charts`` maps :data:`CHART_IOU` etc. and ``overlays`` maps patientIds to relative PNG paths."""
    galleries = analysis.galleries
    truth = '<span style="color:#080">green</span> ground truth, ' if analysis.scored is not None else ""
    legend = (
        f'<p class="legend">Overlays: {truth}<span style="color:#c00">red</span> predictions with their confidence.'
        + (" Matches are counted at IoU 0.4, the metric's most lenient threshold." if truth else "")
        + "</p>"
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{analysis.n_images:,} images reported.</p>",
        "".join(f'<p class="note">{escape(note)}</p>' for note in notes),
    ]
    if analysis.scored is not None:
        parts.append(_metric_section(analysis.scored, charts))
    parts.append(_counts_section(analysis, charts))
    parts.append("<h2>Galleries</h2>" + legend)
    if analysis.scored is not None:
        parts += [
            _gallery("Worst false positives", galleries.false_positives, overlays, "No false positive."),
            _gallery("Worst missed opacities", galleries.missed, overlays, "No missed opacity."),
            _gallery("Best hits", galleries.best, overlays, "No hit."),
        ]
    else:
        parts.append(
            _gallery("Most confident predictions (no labels given)", galleries.predictions, overlays, "No prediction.")
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)
