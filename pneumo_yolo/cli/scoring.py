"""Scoring commands: ``tune``, ``evaluate``, ``validate-submission``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, fail, warn
from .options import Split, split_name

_SCOPE = "Patients to score"
_GRID = "Search grid"


@app.command("tune")
def tune(
    raw: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Raw detections (.csv or .parquet) from `predict --save-raw`.")],
    labels: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="stage_2_train_labels.csv (comma or semicolon separated).")],
    manifest: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="OUT/manifest.csv of `convert`: tune only on its patients.", rich_help_panel=_SCOPE)] = None,
    split: Annotated[Optional[Split], typer.Option(help="Tune only on this split of --manifest.", rich_help_panel=_SCOPE)] = None,
    config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Base post-processing YAML: the default to compare with and the settings outside the grid.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the best configuration.", show_default="postprocess.yaml next to --raw")] = None,
    conf: Annotated[Optional[str], typer.Option(help="Confidence thresholds, e.g. 0.1,0.2,0.3.", show_default="0.05 to 0.95 by 0.05", rich_help_panel=_GRID)] = None,
    merges: Annotated[Optional[str], typer.Option(help="Merges, e.g. none,nms:0.4,wbf:0.5.", show_default="none,nms:0.3,nms:0.4,nms:0.5,wbf:0.4,wbf:0.5,wbf:0.6", rich_help_panel=_GRID)] = None,
    shrink: Annotated[Optional[str], typer.Option(help="Shrink factors, e.g. 1,0.875.", show_default="1,0.95,0.9,0.875,0.85,0.83,0.8", rich_help_panel=_GRID)] = None,
    top: Annotated[int, typer.Option(min=1, help="Rows of the table of best configurations.")] = 10,
) -> None:
    """Search the confidence threshold, merge method and IoU, and shrink factor that maximise the metric.

    Prints the best configuration next to the default's score and writes it as a YAML that `predict` reads.

    Example: pneumo-yolo tune --raw runs/val_raw.parquet --labels stage_2_train_labels.csv --manifest datasets/rsna/manifest.csv --split val
    """
    from pneumo_yolo.labels import LabelFileError
    from pneumo_yolo.postprocess import ConfigError, PostprocessConfig
    from pneumo_yolo.raw import RawFileError, read_raw
    from pneumo_yolo.submission import load_scoring_set
    from pneumo_yolo.tune import DEFAULT_CONF, DEFAULT_MERGES, DEFAULT_SHRINK, TuneError, TuneGrid, images_to_score, parse_merges, parse_numbers
    from pneumo_yolo.tune import tune as run_tune

    out = out or raw.parent / "postprocess.yaml"
    try:
        base = PostprocessConfig.from_yaml(config) if config else PostprocessConfig()
        grid = TuneGrid(
            conf=parse_numbers(conf) if conf else DEFAULT_CONF,
            merges=parse_merges(merges) if merges else DEFAULT_MERGES,
            shrink=parse_numbers(shrink) if shrink else DEFAULT_SHRINK,
        )
        scoring = load_scoring_set(labels, manifest, split_name(split))
        detections, notes = images_to_score(read_raw(raw), scoring)
        report = run_tune(detections, scoring.boxes, base, grid)
    except (ConfigError, TuneError, LabelFileError, RawFileError) as error:
        raise fail(f"error: {error}") from None
    for note in scoring.notes + notes:
        warn(note)
    typer.echo(report.summary(top))
    report.best.to_yaml(out, comment=f"pneumo-yolo tune: score {report.best_result.score:.4f} on {report.n_images} images of {raw.name}")
    typer.echo(f"wrote the best configuration to {out}")


@app.command("evaluate")
def evaluate(
    submission: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Submission CSV (patientId,PredictionString).")],
    labels: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="stage_2_train_labels.csv (comma or semicolon separated).")],
    manifest: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="OUT/manifest.csv of `convert`: score only its patients.", rich_help_panel=_SCOPE)] = None,
    split: Annotated[Optional[Split], typer.Option(help="Score only this split of --manifest.", rich_help_panel=_SCOPE)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")] = False,
) -> None:
    """Score a submission with the RSNA leaderboard metric (mean over IoU 0.40-0.75).

    A scored patient missing from the submission counts as "no prediction"; a submission patient not in the labels is an error.

    Example: pneumo-yolo evaluate --submission sub.csv --labels stage_2_train_labels.csv --manifest datasets/rsna/manifest.csv --split val
    """
    from pneumo_yolo.labels import LabelFileError
    from pneumo_yolo.submission import SubmissionError, evaluate_submission, load_scoring_set

    try:
        scoring = load_scoring_set(labels, manifest, split_name(split))
        result = evaluate_submission(submission, scoring)
    except (LabelFileError, SubmissionError) as error:
        raise fail(f"error: {error}") from None
    for note in scoring.notes:
        warn(note)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.summary())


@app.command("validate-submission")
def validate_submission(
    submission: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Submission CSV to check.")],
    sample: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="stage_2_sample_submission.csv: the patients to cover.")] = None,
    ids: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="The patients to cover: a CSV with a patientId column, or one id per line.")] = None,
    manifest: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="manifest.csv with the image sizes.", show_default="every image 1024×1024")] = None,
    max_problems: Annotated[int, typer.Option(min=0, help="Print at most this many problems (0: all).")] = 50,
) -> None:
    """Check a submission before uploading it: exit code 0 when valid, 1 with the list of problems.

    Errors: the header; missing, duplicate, extra and invalid patient ids; malformed PredictionStrings (not 5 numbers per box, NaN, negative width or height, confidence outside 0-1). Warnings (still valid: Kaggle scores them): boxes reaching outside the image.

    Example: pneumo-yolo validate-submission sub.csv --sample stage_2_sample_submission.csv
    """
    from pneumo_yolo.labels import LabelFileError
    from pneumo_yolo.submission import SubmissionError, errors_only, read_manifest, read_patient_ids
    from pneumo_yolo.submission import validate_submission as check

    if (sample is None) == (ids is None):
        raise typer.BadParameter("give exactly one of --sample or --ids")
    try:
        expected = read_patient_ids(sample or ids)
        sizes = read_manifest(manifest) if manifest else None
        problems = check(submission, expected, sizes)
    except (LabelFileError, SubmissionError) as error:
        raise fail(f"error: {error}") from None
    shown = problems if max_problems == 0 else problems[:max_problems]
    for problem in shown:
        typer.echo(f"{submission}: {'warning: ' if problem.warning else ''}{problem}", err=True)
    if len(shown) < len(problems):
        typer.echo(f"… and {len(problems) - len(shown):,} more (see --max-problems)", err=True)
    errors = errors_only(problems)
    if errors:
        raise fail(f"invalid: {len(errors):,} problem(s) in {submission}" + _warnings_note(problems, errors))
    typer.echo(f"valid: {submission} covers the {len(expected):,} expected patients" + _warnings_note(problems, errors))


def _warnings_note(problems: list, errors: list) -> str:
    warnings = len(problems) - len(errors)
    return f" ({warnings:,} warning(s))" if warnings else ""
