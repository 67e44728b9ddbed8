"""The comparison's outputs: ``compare.json``, the table ``compare.md`` and the figure ``compare.png``.

``compare.json``::

    {"test_images": 300, "val_images": 100, "wall_min": 21.4, "settings": {...}, "note": "...",
     "rows": [{"arch": "faster-rcnn", "model": "fasterrcnn_resnet18_fpn",
               "score": 0.12, "interval": [0.09, 0.15], "of_yolo11": 0.61, "val_score": 0.16,
               "budget": {"minutes": 6.0, "clock": "cpu"}, "epochs": 9.2, "steps": 172,
               "train_s": 360.4, "train_wall_s": 201.0, "curve_scoring_s": 40.2,
               "curve": [{"epoch": 2, "step": 37, "train_min": 1.1, "wall_min": 0.6, "val_score": 0.03}, ...],
               "predict_img_s": 21.3, "postprocess": {...}}, ...]}

``train_s`` is what the budget counted (CPU seconds on the CPU, wall seconds on a GPU: ``budget.clock``),
``train_wall_s`` the wall seconds of the same training loops; ``curve_scoring_s`` the wall
seconds spent scoring the learning curve, outside the budget. ``of_yolo11`` is the row's test
score over YOLO11's (the goal: at least 0.5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..eval.bootstrap import Interval
from ..eval.postprocess import PostprocessConfig
from ..files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from pathlib import Path

    from .compare_settings import CompareSettings

NOTE = (
    "Every row trained for the same budget from scratch on small synthetic images; the learning curves show which were "
    "still rising when it ran out. Rows whose intervals overlap are not told apart by these test images."
)
COLOURS = {
    "yolo11": "#1f77b4",
    "yolov3": "#ff7f0e",
    "faster-rcnn": "#2ca02c",
    "mask-rcnn": "#d62728",
    "unet": "#9467bd",
}


@dataclass(frozen=True)
class Row:
    """One arch's result: its test score (with its interval) at the post-processing tuned on the validation split."""

    arch: str
    model: str
    test: Interval
    """NaN where no test image counted (the metric leaves out negative images without a box)."""
    val_score: float
    record: dict[str, Any]
    """The run's ``curve.json`` (:class:`pneumo_yolo.train.budget.TrainingRecord`): budget, epochs, steps, seconds, curve."""
    predict_img_s: float
    postprocess: PostprocessConfig


def _rounded(score: float) -> float | None:
    """A score for JSON: ``None`` where the metric had no image to count (every test image negative and left empty)."""
    return round(score, 4) if math.isfinite(score) else None


def _shown(score: float | None) -> str:
    return f"{score:.4f}" if score is not None and math.isfinite(score) else "n/a"


def curve_text(curve: Sequence[dict[str, Any]]) -> str:
    """A learning curve as its validation scores in order.

    >>> curve_text([{"val_score": 0.0}, {"val_score": None}, {"val_score": 0.1234}])
    '0.000 → n/a → 0.123'
    """
    return " → ".join("n/a" if point["val_score"] is None else f"{point['val_score']:.3f}" for point in curve)


def _of_yolo11(rows: Sequence[Row]) -> dict[str, float | None]:
    """Each row's test score over YOLO11's, where both are known."""
    reference = next((r.test.estimate for r in rows if r.arch == "yolo11"), float("nan"))
    ratios = {
        r.arch: r.test.estimate / reference
        for r in rows
        if math.isfinite(r.test.estimate) and math.isfinite(reference) and reference > 0
    }
    return {r.arch: round(ratios[r.arch], 2) if r.arch in ratios else None for r in rows}


def summary(rows: Sequence[Row], settings: CompareSettings, val_images: int, wall_min: float | None) -> dict[str, Any]:
    """What ``compare.json`` holds (see the module doc)."""
    ratios = _of_yolo11(rows)
    return {
        "test_images": settings.n_test,
        "val_images": val_images,
        "wall_min": None if wall_min is None else round(wall_min, 1),
        "settings": {
            **asdict(settings),
            "models": dict(settings.models),
            "options": {row: dict(options) for row, options in settings.options.items()},
        },
        "note": NOTE,
        "rows": [
            {
                "arch": r.arch,
                "model": r.model,
                "score": _rounded(r.test.estimate),
                "interval": [_rounded(r.test.low), _rounded(r.test.high)],
                "of_yolo11": ratios[r.arch],
                "val_score": _rounded(r.val_score),
                **r.record,
                "predict_img_s": round(r.predict_img_s, 2),
                "postprocess": asdict(r.postprocess),
            }
            for r in rows
        ],
    }


def table(rows: Sequence[Row], settings: CompareSettings, val_images: int) -> str:
    """``compare.md``: one line per row, then what was trained and scored on."""
    ratios = _of_yolo11(rows)
    lines = [
        "| arch | model | RSNA score, test (95 % interval) | × YOLO11 | validation (tuned there) | budget | epochs | steps | training s (budget clock / wall) | learning curve, validation | predict (images/s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        record = r.record
        budget = record["budget"]
        budget_text = f"{budget['minutes']:g} {budget['clock']}-min" if budget else "none"
        ratio = "n/a" if ratios[r.arch] is None else f"{ratios[r.arch]:.2f}"
        lines.append(
            f"| {r.arch} | {r.model} | {_shown(r.test.estimate)} [{_shown(r.test.low)}, {_shown(r.test.high)}] | {ratio} | {_shown(r.val_score)} "
            f"| {budget_text} | {record['epochs']:g} | {record['steps']} | {record['train_s']:.0f} / {record['train_wall_s']:.0f} "
            f"| {curve_text(record['curve'])} | {r.predict_img_s:.1f} |"
        )
    footer = (
        f"\n\nTrained on {settings.n_train - val_images} and tuned on {val_images} synthetic radiographs ({settings.preset} preset), "
        f"scored on {settings.n_test} held-out test images, at {settings.imgsz} px. {NOTE}\n"
    )
    return "\n".join(lines) + footer


def figure(rows: Sequence[Row], n_test: int) -> bytes:
    """Two panels: the test scores with their intervals (a dashed line at half of YOLO11's, the goal), and the learning curves against the training minutes counted."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 3.2 + 0.3 * len(rows)))
    bars, curves = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    labels = [f"{r.arch}\n{r.model}" for r in rows][::-1]
    scores = [r.test.estimate for r in rows][::-1]  # a row without a score (nan) gets no bar, and says so
    low = [
        s - r.test.low if math.isfinite(s) and math.isfinite(r.test.low) else 0.0 for s, r in zip(scores, rows[::-1])
    ]
    high = [
        r.test.high - s if math.isfinite(s) and math.isfinite(r.test.high) else 0.0 for s, r in zip(scores, rows[::-1])
    ]
    bars.barh(labels, scores, xerr=[low, high], capsize=3, color=[COLOURS.get(r.arch, "#4c72b0") for r in rows[::-1]])
    for y, (score, above) in enumerate(zip(scores, high)):
        if math.isfinite(score):
            bars.text(score + above, y, f" {score:.3f}", va="center", fontsize=8)
        else:
            bars.text(0, y, " no score", va="center", fontsize=8, style="italic")
    reference = next((r.test.estimate for r in rows if r.arch == "yolo11" and math.isfinite(r.test.estimate)), None)
    if reference:
        bars.axvline(reference / 2, color="grey", linestyle="--", linewidth=1, label="half of YOLO11's score")
        bars.legend(fontsize=8, loc="lower right")
    bars.set_xlabel(f"RSNA score on {n_test} held-out test images (95 % interval)")
    bars.set_xlim(0, max(1e-6, *(s + h for s, h in zip(scores, high))) * 1.25)
    clocks = set()
    for r in rows:
        points = [(p["train_min"], p["val_score"] or 0.0) for p in r.record["curve"]]
        clocks.add(r.record["clock"])
        if points:
            curves.plot(*zip(*points), marker="o", label=r.arch, color=COLOURS.get(r.arch))
    curves.set_xlabel(f"training minutes counted ({' / '.join(sorted(clocks)) or 'cpu'} clock)")
    curves.set_ylabel("RSNA score, validation (tuned)")
    curves.set_title("Learning curves", fontsize=10)
    curves.set_ylim(bottom=0)
    curves.grid(alpha=0.3)
    if any(r.record["curve"] for r in rows):
        curves.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_outputs(
    out: Path, rows: list[Row], settings: CompareSettings, val_images: int, *, wall_min: float | None = None
) -> None:
    """``compare.json``, ``compare.md`` and ``compare.png`` in ``out``."""
    atomic_write_text(out / "compare.json", json.dumps(summary(rows, settings, val_images, wall_min), indent=2) + "\n")
    atomic_write_text(out / "compare.md", table(rows, settings, val_images))
    atomic_write_bytes(out / "compare.png", figure(rows, settings.n_test))
