"""The ``report`` command: predictions + images (+ labels) → an offline HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, fail, refuse_bad_outputs, warn


@app.command("report")
def report(
    predictions: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Submission CSV (patientId,PredictionString), or raw detections (.parquet or .csv) from `predict --save-raw`.",
        ),
    ],
    images: Annotated[
        Path,
        typer.Option(
            exists=True, file_okay=False, help="Folder of the images: DICOMs, or converted PNGs (searched recursively)."
        ),
    ],
    labels: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="stage_2_train_labels.csv: adds the metric, the true boxes and the error galleries.",
        ),
    ] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="manifest.csv of `convert`: original image sizes, for converted PNGs smaller than the originals.",
        ),
    ] = None,
    postprocess: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Post-processing YAML applied to raw detections (default: predict's defaults).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(file_okay=False, help="Report folder; the page is OUT/index.html.")] = Path(
        "report"
    ),
    gallery: Annotated[int, typer.Option(min=1, help="Pictures per gallery.")] = 12,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an earlier report in --out (only a folder that report wrote itself)."
        ),
    ] = False,
) -> None:
    """Write an offline HTML report (OUT/index.html) of predictions on a folder of images.

    With --labels: the metric per IoU threshold, the score against the confidence threshold, boxes per image (predicted and true), and galleries of the worst false positives, the worst missed opacities and the best hits. Without: boxes per image and the most confident predictions.

    Overlays show ground truth in green and predictions in red with their confidence. Only patientIds appear on the page.

    Example: pneumo-yolo report --predictions submission.csv --images rsna/stage_2_train_images --labels rsna/stage_2_train_labels.csv
    """
    from ..data.dataset import read_manifest
    from ..data.labels import LabelFileError
    from ..eval.detections import RawFileError
    from ..eval.postprocess import ConfigError, PostprocessConfig
    from ..eval.submission import SubmissionError
    from ..files import OutputError
    from ..owned import owned_folder
    from ..report import ReportError, ReportUsageError, write_report
    from ..report.inputs import list_images, pictures_without_size, read_predictions, read_truth

    refuse_bad_outputs(
        {},
        folders={"--out": out},
        inputs={
            "--predictions": predictions,
            "--images": images,
            "--labels": labels,
            "--manifest": manifest,
            "--postprocess": postprocess,
        },
        overwrite=overwrite,
        owner="report",
    )
    try:
        config = PostprocessConfig.from_yaml(postprocess) if postprocess else PostprocessConfig()
        found = read_predictions(predictions, config)
        pictures, notes = list_images(images)
        truth, label_notes = read_truth(labels) if labels else (None, [])
        sizes = read_manifest(manifest) if manifest else None
        with owned_folder(out, "report"):
            summary = write_report(
                out,
                pictures,
                found,
                truth,
                sizes=sizes,
                gallery_size=gallery,
                title=f"pneumo-yolo report: {predictions.name}",
                notes=notes + label_notes,
            )
    except (OutputError, ReportUsageError) as error:
        raise fail(f"error: {error}", code=2) from None
    except (ConfigError, LabelFileError, RawFileError, ReportError, SubmissionError) as error:
        raise fail(f"error: {error}") from None
    unplaced = pictures_without_size(pictures, found, sizes)
    if unplaced:
        warn(
            f"{len(unplaced)} picture(s) in {images} (PNG/JPEG, e.g. {unplaced[0]}) have no original size: their boxes "
            "are drawn in the pictures' own pixels, misplaced where convert resized them; give --manifest "
            "(the converter's manifest.csv), or raw detections from predict --save-raw"
        )
    for note in summary.notes:
        typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
    score = "" if summary.score is None else f", score {summary.score:.4f}"
    typer.echo(f"report of {summary.n_images:,} images{score}, {summary.n_overlays} overlays -> {summary.index}")
