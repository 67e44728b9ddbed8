"""Data command: ``convert``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import app, fail, warn


@app.command("convert")
def convert(
    images: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Folder of .dcm files, searched recursively; the file stem is the patientId.",
        ),
    ],
    labels: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="stage_2_train_labels.csv (comma or semicolon separated).")
    ],
    out: Annotated[Path, typer.Option(help="Output dataset folder.")],
    class_info: Annotated[
        Optional[Path],
        typer.Option(
            exists=True, dir_okay=False, help="stage_2_detailed_class_info.csv: stratify the split by its 3 classes."
        ),
    ] = None,
    imgsz: Annotated[
        Optional[int],
        typer.Option(
            callback=options.convert_imgsz,
            help="Longest side of the written PNGs, 8 to 4096; train and predict at the same size (train needs a multiple of 32, at least 32).",
            show_default="original size",
            rich_help_panel="Images",
        ),
    ] = None,
    channels: Annotated[
        int,
        typer.Option(
            callback=options.channels,
            metavar="1|3",
            help="Model input channels written into data.yaml: 1 or 3; PNGs are always grayscale.",
            rich_help_panel="Images",
        ),
    ] = 1,
    png_compression: Annotated[
        Optional[int],
        typer.Option(
            min=0,
            max=9,
            help="PNG zlib level 0-9 (9 is smallest and slowest).",
            show_default="OpenCV's fast default",
            rich_help_panel="Images",
        ),
    ] = None,
    val_fraction: Annotated[
        float,
        typer.Option(
            callback=options.val_fraction,
            help="Share of patients in the validation split, in [0, 1).",
            rich_help_panel="Split",
        ),
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the split.", rich_help_panel="Split")] = 0,
    folds: Annotated[
        Optional[int],
        typer.Option(
            min=2,
            rich_help_panel="Split",
            help="K-fold cross-validation: every image written once, in its fold; data_foldI.yaml trains on the other folds and validates on fold I (data.yaml is fold 0). Replaces --val-fraction.",
        ),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            callback=options.worker_count,
            help="Worker processes (at most twice the cores).",
            show_default="all cores",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an output folder converted with other settings.")
    ] = False,
) -> None:
    """Convert RSNA DICOMs + label CSV into a YOLO dataset (PNGs, label files, data.yaml).

    Safe to interrupt and rerun: finished images are skipped. Exit code 1 if any input failed
    (listed in OUT/errors.csv); everything else is still converted.

    Example: pneumo-yolo convert --images stage_2_train_images --labels stage_2_train_labels.csv
    --class-info stage_2_detailed_class_info.csv --out datasets/rsna --imgsz 512
    """
    from converters.rsna import ConvertError, ConvertSettings, convert_rsna

    from ..data.labels import LabelFileError
    from ..files import OutputError, check_outputs
    from ..settings import SettingError
    from .flags import flag_message

    try:
        check_outputs(
            {}, folders={"--out": out}, inputs={"--images": images, "--labels": labels, "--class-info": class_info}
        )
        settings = ConvertSettings(
            imgsz=imgsz,
            channels=channels,
            val_fraction=val_fraction,
            seed=seed,
            folds=folds,
            png_compression=png_compression,
        )
        report = convert_rsna(
            images, labels, out, class_info=class_info, settings=settings, workers=workers, overwrite=overwrite
        )
    except SettingError as error:
        raise fail(f"error: {flag_message(error)}", code=2) from None
    except (ConvertError, OutputError) as error:
        raise fail(f"error: {error}", code=2) from None
    except LabelFileError as error:
        raise fail(f"error: {error}") from None
    for warning in report.warnings:
        warn(warning)
    for file, problem in report.errors:
        typer.secho(f"failed: {file}: {problem}", err=True, fg=typer.colors.RED)
    typer.echo(
        f"converted {report.converted}, skipped {report.skipped} (already done), failed {report.failed} "
        f"in {report.elapsed_s:.1f} s ({report.images_per_s:.1f} images/s) -> {report.out / 'data.yaml'}"
    )
    if report.errors:
        typer.echo(f"problems listed in {report.out / 'errors.csv'}", err=True)
        raise typer.Exit(code=1)
