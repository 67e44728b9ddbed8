"""Data command: ``synth`` (a synthetic RSNA-like data set for tests and the demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import options
from .app import app, fail, refuse_bad_outputs


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(file_okay=False, help="Output folder, laid out like the RSNA download.")],
    n_train: Annotated[int, typer.Option(min=1, max=options.MAX_SYNTH_IMAGES, help="Training radiographs.")] = 200,
    n_test: Annotated[
        int,
        typer.Option(
            min=0,
            max=options.MAX_SYNTH_IMAGES,
            help="Test radiographs (also writes a sample submission and stage_2_test_labels.csv).",
        ),
    ] = 0,
    dicom_size: Annotated[
        int,
        typer.Option(
            min=64,
            max=options.MAX_IMGSZ,
            help="Side of the DICOM images in pixels (RSNA's are 1024); boxes scale with it.",
        ),
    ] = 1024,
    seed: Annotated[int, typer.Option(min=0, help="Seed: the same seed gives the same bytes.")] = 0,
    preset: Annotated[
        str,
        typer.Option(
            callback=options.synth_preset,
            metavar=options.choices(options.PRESETS),
            help="easy: clear opacities. hard: faint opacities, and opacity look-alikes without a box on half of the 'Not Normal' images (same patients and boxes as easy).",
        ),
    ] = "easy",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a data set that synth wrote in OUT before (only such a one).")
    ] = False,
) -> None:
    """Write synthetic chest radiographs in the exact RSNA format, with labels (for tests and demos).

    JPEG-Baseline DICOMs of chests with soft, blotchy lung opacities; label and class CSVs with RSNA-like statistics (22.5% positive, 1-4 boxes per positive image).

    Example: pneumo-yolo synth --out rsna --n-train 300 --n-test 60
    """
    from ..files import OutputError
    from ..owned import owned_folder
    from ..synth import SynthError, make_rsna_like

    refuse_bad_outputs({}, folders={"--out": out}, overwrite=overwrite, owner="synth")
    try:
        with owned_folder(out, "synth"):
            summary = make_rsna_like(
                out, n_train, seed=seed, n_test=n_test, size=dicom_size, preset=preset, overwrite=overwrite
            )
    except OutputError as error:
        raise fail(f"error: {error}", code=2) from None
    except SynthError as error:
        raise fail(f"error: {error}") from None
    test = f" and {summary.test_images} test ({summary.test_positive} with opacity)" if summary.test_images else ""
    typer.echo(
        f"Wrote {summary.train_images} training ({summary.train_positive} with opacity, "
        f"{summary.train_boxes} boxes){test} radiographs of {dicom_size}x{dicom_size} to {summary.out}"
    )
