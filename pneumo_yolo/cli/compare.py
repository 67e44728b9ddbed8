"""The ``compare`` command: every arch on the same synthetic data, split, post-processing and metric."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.compare import ROWS, CompareSettings
from . import options
from .app import app, fail

_DEFAULTS = CompareSettings()
_SIZES = "Sizes"


@app.command("compare")
def compare(
    out: Annotated[Path, typer.Option(file_okay=False, help="Folder for everything it writes (replaced on a rerun); the table is OUT/compare.md.")] = Path("compare"),
    archs: Annotated[str, typer.Option(help=f"Rows to run, comma-separated, from {','.join(ROWS)}.")] = ",".join(ROWS),
    n_train: Annotated[int, typer.Option(min=20, help="Synthetic training radiographs (split into training and validation).", rich_help_panel=_SIZES)] = _DEFAULTS.n_train,
    n_test: Annotated[int, typer.Option(min=1, help="Synthetic test radiographs: every score is measured on them, and nothing is trained or tuned on them.", rich_help_panel=_SIZES)] = _DEFAULTS.n_test,
    dicom_size: Annotated[int, typer.Option(min=64, help="Side of the synthetic DICOMs in pixels.", rich_help_panel=_SIZES)] = _DEFAULTS.dicom_size,
    imgsz: Annotated[int, typer.Option(callback=options.model_imgsz, help="Image size for conversion, training and prediction (multiple of 32).", rich_help_panel=_SIZES)] = _DEFAULTS.imgsz,
    yolo_epochs: Annotated[int, typer.Option(min=1, help="Training epochs of YOLO11 and YOLOv3.", rich_help_panel=_SIZES)] = _DEFAULTS.yolo_epochs,
    rcnn_epochs: Annotated[int, typer.Option(min=1, help="Training epochs of Faster R-CNN and Mask R-CNN.", rich_help_panel=_SIZES)] = _DEFAULTS.rcnn_epochs,
    unet_epochs: Annotated[int, typer.Option(min=1, help="Training epochs of the U-Net.", rich_help_panel=_SIZES)] = _DEFAULTS.unet_epochs,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of every arch.", rich_help_panel=_SIZES)] = _DEFAULTS.batch,
    yolov3_model: Annotated[str, typer.Option(help="YOLOv3 config: yolov3-tiny.yaml (CPU-sized), yolov3.yaml or yolov3-spp.yaml.")] = _DEFAULTS.yolov3_model,
    preset: Annotated[str, typer.Option(callback=options.synth_preset, help="Synthetic data preset.")] = _DEFAULTS.preset,
    device: Annotated[Optional[str], typer.Option(callback=options.device, help="'cpu' or a GPU index. Default: GPU 0 if there is one, else CPU.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data, the split and training.")] = _DEFAULTS.seed,
) -> None:
    """Train YOLO11, YOLOv3, Faster R-CNN, Mask R-CNN and U-Net briefly on one split and score them on held-out synthetic images.

    Each arch's post-processing is tuned on the validation split, never on the test images.
    Writes OUT/compare.json, OUT/compare.md (the table) and OUT/compare.png (a bar chart).
    At the defaults, about 25 minutes on 2 CPU cores; CPU-sized runs rank the methods only roughly.
    """
    from ..pipelines.compare import check_rows, run_compare

    try:
        rows = check_rows([part.strip() for part in archs.split(",") if part.strip()])
    except ValueError as error:
        raise fail(str(error)) from error
    settings = CompareSettings(
        n_train=n_train, n_test=n_test, dicom_size=dicom_size, imgsz=imgsz, yolo_epochs=yolo_epochs, rcnn_epochs=rcnn_epochs,
        unet_epochs=unet_epochs, batch=batch, yolov3_model=yolov3_model, rows=rows, preset=preset, seed=seed, device=device,
    )  # fmt: skip
    run_compare(out, settings, log=typer.echo)
