"""The ``evaluate`` and ``validate-submission`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import app, fail, warn

_SCOPE = "Patients to score"


@app.command("evaluate")
def evaluate(
    submission: Annotated[
        Path,
        typer.Option(
            "--predictions",
            exists=True,
            dir_okay=False,
            help="The predictions to score: a submission CSV (patientId,PredictionString), e.g. predict's --out.",
        ),
    ],
    labels: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="stage_2_train_labels.csv (comma or semicolon separated).")
    ],
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="OUT/manifest.csv of `convert`: score only its patients.",
            rich_help_panel=_SCOPE,
        ),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(
            callback=options.split_name,
            metavar="train|val|foldI",
            help="Score only this split of --manifest.",
            rich_help_panel=_SCOPE,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")] = False,
) -> None:
    """Score a submission with the RSNA leaderboard metric (mean over IoU 0.40-0.75).

    A scored patient missing from the submission counts as "no prediction"; a submission patient not in the labels is an error.

    Example: pneumo-yolo evaluate --predictions sub.csv --labels stage_2_train_labels.csv --manifest datasets/rsna/manifest.csv --split val
    """
    from ..data.labels import LabelFileError
    from ..eval.scoring import evaluate_submission, load_scoring_set
    from ..eval.submission import SubmissionError

    options.check_split_has_manifest(split, manifest)
    try:
        scoring = load_scoring_set(labels, manifest, split)
        result = evaluate_submission(submission, scoring)
    except (LabelFileError, SubmissionError) as error:
        raise fail(f"error: {error}") from None
    for note in scoring.notes:
        warn(note)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.summary())


@app.command("validate-submission")
def validate_submission(
    submission: Annotated[
        Path,
        typer.Option(
            "--predictions", exists=True, dir_okay=False, help="The submission CSV to check, e.g. predict's --out."
        ),
    ],
    sample: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="stage_2_sample_submission.csv: the patients to cover."),
    ] = None,
    ids: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The patients to cover: a CSV with a patientId column, or one id per line.",
        ),
    ] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            exists=True, dir_okay=False, help="manifest.csv with the image sizes.", show_default="every image 1024×1024"
        ),
    ] = None,
    max_problems: Annotated[int, typer.Option(min=0, help="Print at most this many problems (0: all).")] = 50,
) -> None:
    """Check a submission before uploading it: exit code 0 when valid, 1 with the list of problems.

    Errors: the header; missing, duplicate, extra and invalid patient ids; malformed PredictionStrings (not 5 numbers per box, NaN, negative width or height, confidence outside 0-1). Warnings (still valid: Kaggle scores them): boxes reaching outside the image.

    Example: pneumo-yolo validate-submission --predictions sub.csv --sample stage_2_sample_submission.csv
    """
    from ..data.dataset import read_manifest
    from ..data.labels import LabelFileError
    from ..eval.submission import SubmissionError, errors_only, read_patient_ids
    from ..eval.submission import validate_submission as check

    if (sample is None) == (ids is None):
        raise typer.BadParameter("give exactly one of --sample or --ids")
    try:
        listing = sample or ids
        assert listing is not None  # exactly one of them, checked above
        expected, duplicates = read_patient_ids(listing)
        sizes = read_manifest(manifest) if manifest else None
        problems = check(submission, expected, sizes)
    except (LabelFileError, SubmissionError) as error:
        raise fail(f"error: {error}") from None
    if duplicates:
        warn(
            f"{sample or ids} lists {len(duplicates)} patientId(s) more than once, e.g. {duplicates[0]}: each is expected once"
        )
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
