"""The ablation's report: ``ablation.json``, ``ablation.md`` and ``ablation.png``, for one seed or the mean of several.

Every stage's score has a 95 % bootstrap interval over the test images, and every step's change
(a stage against the one before) a paired one: both stages scored on the same resampled images
(:mod:`pneumo_yolo.eval.bootstrap`). With several seeds, which all score the same test images,
a score is the mean over the seeds, its interval resamples the images once for all of them, and
the spread over the seeds is shown beside it. A step is *clearly positive* when its change's
interval lies above 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.bootstrap import Interval, change_interval, score_interval
from ..eval.metric import MetricResult
from ..eval.postprocess import PostprocessConfig
from ..files import atomic_write_bytes, atomic_write_text

ORACLE = "oracle: the ensemble tuned on the test images (leakage, an upper bound only)"


@dataclass(frozen=True)
class Stage:
    """One row of the ablation: what its post-processing was tuned on, the configuration, and its test result."""

    stage: str
    tuned_on: str
    config: PostprocessConfig
    result: MetricResult
    recall: float = float("nan")
    """Share of the test images' boxes that a kept box finds at IoU ≥ 0.4 (the metric's lowest threshold)."""


@dataclass(frozen=True)
class SeedRun:
    """Everything one seed measured: the stages, the oracle apart, and the diagnostics."""

    seed: int
    stages: list[Stage]
    oracle: Stage
    diagnostics: Mapping[str, Any] = field(default_factory=dict)


def _rounded(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _interval_fields(interval: Interval, name: str = "score") -> dict[str, float | None]:
    """``{score, ci_low, ci_high}``, or ``{NAME, NAME_ci_low, NAME_ci_high}`` for another ``name``."""
    prefix = "" if name == "score" else f"{name}_"
    return {
        name: _rounded(interval.estimate),
        f"{prefix}ci_low": _rounded(interval.low),
        f"{prefix}ci_high": _rounded(interval.high),
    }


def verdict(change: Interval) -> str:
    """``clearly positive`` when the change's interval lies above 0, ``clearly negative`` below, else ``not clear``.

    >>> verdict(Interval(0.02, 0.01, 0.03)), verdict(Interval(0.02, -0.01, 0.05))
    ('clearly positive', 'not clear')
    """
    if change.low > 0:
        return "clearly positive"
    if change.high < 0:
        return "clearly negative"
    return "not clear"


def summary(runs: Sequence[SeedRun]) -> dict[str, Any]:
    """The JSON summary of one or several seeds' runs on the same test images."""
    n_stages = len(runs[0].stages)
    scores = [np.vstack([run.stages[i].result.image_scores for run in runs]) for i in range(n_stages)]
    stages = []
    for i in range(n_stages):
        per_seed = [run.stages[i].result.score for run in runs]
        row: dict[str, Any] = {"stage": runs[0].stages[i].stage, **_interval_fields(score_interval(scores[i]))}
        row.update(
            scores=[_rounded(s) for s in per_seed],
            sd=_rounded(float(np.std(per_seed, ddof=1)) if len(runs) > 1 else 0.0),
        )
        if i:
            change = change_interval(scores[i - 1], scores[i])
            row.update(_interval_fields(change, "change"))
            row.update(
                changes=[_rounded(run.stages[i].result.score - run.stages[i - 1].result.score) for run in runs],
                verdict=verdict(change),
            )
        row.update(
            tuned_on=runs[0].stages[i].tuned_on, recall=_rounded(float(np.mean([run.stages[i].recall for run in runs])))
        )
        stages.append(row)
    oracle_scores = np.vstack([run.oracle.result.image_scores for run in runs])
    ensemble = next(i for i, stage in enumerate(runs[0].stages) if stage.stage == "+ fold ensemble")
    oracle: dict[str, object] = {"stage": ORACLE, **_interval_fields(score_interval(oracle_scores))}
    oracle["scores"] = [_rounded(run.oracle.result.score) for run in runs]
    oracle.update(_interval_fields(change_interval(oracle_scores, scores[ensemble]), "ensemble_minus_oracle"))
    return {
        "seeds": [run.seed for run in runs],
        "test_images": int(scores[0].shape[1]),
        "stages": stages,
        "oracle": oracle,
        "runs": [
            {
                "seed": run.seed,
                "stages": [
                    {
                        "stage": s.stage,
                        "score": _rounded(s.result.score),
                        "recall": _rounded(s.recall),
                        "tuned_on": s.tuned_on,
                        "postprocess": asdict(s.config),
                    }
                    for s in run.stages
                ],
                "oracle": {"score": _rounded(run.oracle.result.score), "postprocess": asdict(run.oracle.config)},
                "diagnostics": dict(run.diagnostics),
            }
            for run in runs
        ],
    }


def _shown(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else (f"{value:+.4f}" if signed else f"{value:.4f}")


def markdown(report: Mapping[str, Any]) -> str:
    """``ablation.md``: the stages with intervals, the oracle apart, and the diagnostics."""
    seeds = report["seeds"]
    several = len(seeds) > 1
    score_head = "mean RSNA score over seeds (95 % CI)" if several else "RSNA score (95 % CI)"
    lines = [
        f"| stage | {score_head} |"
        + (" spread (min–max) |" if several else "")
        + " change (95 % CI) | step | tuned on |",
        "| --- | --- |" + (" --- |" if several else "") + " --- | --- | --- |",
    ]
    for row in report["stages"]:
        score = f"{_shown(row['score'])} ({_shown(row['ci_low'])}–{_shown(row['ci_high'])})"
        spread = f" {_shown(min(row['scores']))}–{_shown(max(row['scores']))} |" if several else ""
        change = (
            ""
            if "change" not in row
            else f"{_shown(row['change'], True)} ({_shown(row['change_ci_low'], True)} to {_shown(row['change_ci_high'], True)})"
        )
        lines.append(f"| {row['stage']} | {score} |{spread} {change} | {row.get('verdict', '')} | {row['tuned_on']} |")
    oracle = report["oracle"]
    seed_text = f"seeds {', '.join(map(str, seeds))}" if several else f"seed {seeds[0]}"
    lines += [
        "",
        f"Scored on {report['test_images']} held-out test images ({seed_text}); a step is clearly positive when its change's interval lies above 0.",
        "",
        f"Kept apart, {ORACLE}: {_shown(oracle['score'])} ({_shown(oracle['ci_low'])}–{_shown(oracle['ci_high'])}). "
        f"The fold ensemble stage minus the oracle: {_shown(oracle['ensemble_minus_oracle'], True)} "
        f"({_shown(oracle['ensemble_minus_oracle_ci_low'], True)} to {_shown(oracle['ensemble_minus_oracle_ci_high'], True)}).",
        "",
        "Diagnostics on the test images, per seed:",
        "",
    ]
    for run in report["runs"]:
        diagnostics = run["diagnostics"]
        aucs = ", ".join(_shown(a) for a in diagnostics.get("classifier_roc_auc", []))
        detector = ", ".join(_shown(a) for a in diagnostics.get("detector_roc_auc", []))
        recalls = ", ".join(f"{s['stage']} {_shown(s['recall'])}" for s in run["stages"])
        lines.append(
            f"- seed {run['seed']}: classifier ROC AUC per fold {aucs}, their mean's {_shown(diagnostics.get('ensemble_classifier_roc_auc'))}"
            + (f" (each detector's highest box score: {detector})" if detector else "")
            + f"; box recall at IoU 0.4 after each stage's post-processing: {recalls}."
        )
    return "\n".join(lines) + "\n"


def chart(report: Mapping[str, Any]) -> bytes:
    """``ablation.png``: each stage's (mean) score with its 95 % interval, each seed's score as a dot, the oracle as a dashed line."""
    import io

    from matplotlib.figure import Figure

    rows = report["stages"][::-1]
    figure = Figure(figsize=(8.0, 1.8 + 0.45 * len(rows)))
    axes = figure.subplots()
    y = np.arange(len(rows))
    score = np.array([row["score"] for row in rows], dtype=float)
    low = score - np.array([row["ci_low"] if row["ci_low"] is not None else row["score"] for row in rows], dtype=float)
    high = (
        np.array([row["ci_high"] if row["ci_high"] is not None else row["score"] for row in rows], dtype=float) - score
    )
    axes.barh(y, score, color="#4c72b0", xerr=[low, high], capsize=4, error_kw={"ecolor": "#333333"})
    if len(report["seeds"]) > 1:
        for i, row in enumerate(rows):
            axes.plot(
                row["scores"],
                [i] * len(row["scores"]),
                "o",
                color="#dd8452",
                markersize=4,
                label="one seed" if i == 0 else None,
            )
    oracle = report["oracle"]["score"]
    axes.axvline(
        oracle, color="#c44e52", linestyle="--", label=f"oracle, tuned on the test images (leakage): {oracle:.3f}"
    )
    for i, (value, above) in enumerate(zip(score, high)):
        axes.text(max(value + above, *rows[i].get("scores", [])), i, f"  {value:.3f}", va="center", fontsize=8)
    axes.set_yticks(y, [row["stage"] for row in rows])
    seeds = len(report["seeds"])
    what = f"mean over {seeds} seeds, " if seeds > 1 else ""
    axes.set_xlabel(f"RSNA score on {report['test_images']} held-out test images ({what}95 % bootstrap interval)")
    axes.set_xlim(0, max(float(np.nanmax(score + high)), oracle) * 1.25)
    axes.legend(loc="upper right", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def write_report(out: Path, runs: Sequence[SeedRun]) -> dict[str, Any]:
    """Write ``ablation.json``, ``ablation.md`` and ``ablation.png`` of ``runs`` into ``out``; returns the JSON summary."""
    report = summary(runs)
    atomic_write_text(Path(out) / "ablation.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(Path(out) / "ablation.md", markdown(report))
    atomic_write_bytes(Path(out) / "ablation.png", chart(report))
    return report
