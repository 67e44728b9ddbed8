"""The ``compare`` command: every arch on the same synthetic data, split, training budget, post-processing and metric."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.compare_settings import MODELS, ROWS, CompareSettings
from . import options
from .app import app, fail, refuse_bad_outputs

_DEFAULTS = CompareSettings()
_SIZES = "Sizes"


@app.command("compare")
def compare(
    out: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="Folder for everything it writes; the table is OUT/compare.md. A rerun needs --overwrite.",
        ),
    ] = Path("compare"),
    archs: Annotated[
        str,
        typer.Option(
            "--rows", metavar="ROW,…", help=f"Rows (detectors) to run, comma-separated, from {','.join(ROWS)}."
        ),
    ] = ",".join(ROWS),
    budget_min: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="Training budget of every row, in minutes: of CPU time (all threads of its process together) on the CPU, of wall time on a GPU.",
        ),
    ] = _DEFAULTS.budget_min,
    curve_points: Annotated[
        int,
        typer.Option(
            min=0, help="Points of each row's learning curve (validation score against training minutes); 0: none."
        ),
    ] = _DEFAULTS.curve_points,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="ROW=MODEL",
            help="A row's train --model, repeatable: a YOLO config (yolov3=yolov3.yaml) or a backbone (faster-rcnn=resnet50, unet=resnet18). "
            "Defaults: " + ", ".join(f"{row}={name}" for row, name in MODELS.items()) + ".",
        ),
    ] = None,
    n_train: Annotated[
        int,
        typer.Option(
            min=20,
            max=options.MAX_SYNTH_IMAGES,
            help="Synthetic training radiographs (split into training and validation).",
            rich_help_panel=_SIZES,
        ),
    ] = _DEFAULTS.n_train,
    n_test: Annotated[
        int,
        typer.Option(
            min=1,
            max=options.MAX_SYNTH_IMAGES,
            help="Synthetic test radiographs: every score is measured on them, and nothing is trained or tuned on them.",
            rich_help_panel=_SIZES,
        ),
    ] = _DEFAULTS.n_test,
    dicom_size: Annotated[
        int, typer.Option(min=64, help="Side of the synthetic DICOMs in pixels.", rich_help_panel=_SIZES)
    ] = _DEFAULTS.dicom_size,
    imgsz: Annotated[
        int,
        typer.Option(
            callback=options.model_imgsz,
            help="Image size for conversion, training and prediction (multiple of 32).",
            rich_help_panel=_SIZES,
        ),
    ] = _DEFAULTS.imgsz,
    batch: Annotated[
        int, typer.Option(min=1, help="Batch size of every arch.", rich_help_panel=_SIZES)
    ] = _DEFAULTS.batch,
    preset: Annotated[
        str,
        typer.Option(
            callback=options.synth_preset, metavar=options.choices(options.PRESETS), help="Synthetic data preset."
        ),
    ] = _DEFAULTS.preset,
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            metavar=options.DEVICE_METAVAR,
            help="'cpu' or a GPU index. Default: GPU 0 if there is one, else CPU.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data, the split and training.")] = _DEFAULTS.seed,
    parallel: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Rows trained at once, each in its own process with its share of the cores as threads. Default: on the CPU one per core, on a GPU one.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an earlier comparison's --out (only a folder that compare wrote itself)."
        ),
    ] = False,
) -> None:
    """Train YOLO11, YOLOv3, Faster R-CNN, Mask R-CNN and U-Net for the same budget on one split and score them on held-out synthetic images.

    Each arch's learning curve is scored on the validation split along the way (outside the
    budget), and its post-processing is tuned there, never on the test images. Writes
    OUT/compare.json, OUT/compare.md (the table, each score with its 95 % bootstrap interval)
    and OUT/compare.png (the scores and the learning curves). At the defaults, about 20 minutes
    on 2 CPU cores (docs/compare.md).
    """
    from ..files import OutputError
    from ..owned import owned_folder
    from ..pipelines.compare import check_rows, parse_models, run_compare
    from ..runtime.devices import Devices
    from ..settings import SettingError
    from .flags import flag_message

    refuse_bad_outputs({}, folders={"--out": out})
    try:
        rows = check_rows([part.strip() for part in archs.split(",") if part.strip()])
        models = parse_models(model or [])
        devices = Devices.parse(device)
    except SettingError as error:
        raise fail(flag_message(error), code=2) from error
    except ValueError as error:
        raise fail(str(error), code=2) from error
    settings = CompareSettings(
        n_train=n_train,
        n_test=n_test,
        dicom_size=dicom_size,
        imgsz=imgsz,
        budget_min=budget_min,
        curve_points=curve_points,
        batch=batch,
        models=models,
        rows=rows,
        preset=preset,
        seed=seed,
        devices=devices,
        parallel=parallel,
    )
    refuse_bad_outputs(
        {},
        folders={"--out": out},
        overwrite=overwrite,
        owner="compare",
        checks=[lambda: devices.names and devices.resolve()],
    )
    try:
        with owned_folder(out, "compare"):
            run_compare(out, settings, log=typer.echo)
    except OutputError as error:
        raise fail(f"error: {error}", code=2) from None
