"""The ``ablation`` command: which of the RSNA winners' steps helps, on a folder in the Kaggle layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.ablation_settings import AblationSettings
from . import options
from .app import app, fail

_DEFAULTS = AblationSettings()
_SPLIT = "Split"
_MODELS = "Models"


def _fraction(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"{value:g} is not in (0, 1); give a count of patients with --n-test instead")
    return value


def _seeds(value: str) -> str:
    items = [item.strip() for item in value.split(",")]
    if not all(item.isdigit() for item in items) or len(set(map(int, items))) != len(items):
        raise typer.BadParameter(
            f"{value!r} is not valid; give distinct whole numbers ≥ 0 separated by commas, e.g. 0,1,2"
        )
    return value


@app.command("ablation")
def ablation(
    rsna: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A folder in the Kaggle layout: stage_2_train_images/, stage_2_train_labels.csv (and stage_2_detailed_class_info.csv, for the strata).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="Folder for everything it writes; a rerun reuses what finished there. The report is OUT/ablation.md.",
        ),
    ] = Path("ablation"),
    test_size: Annotated[
        float,
        typer.Option(
            "--test-fraction",
            callback=_fraction,
            rich_help_panel=_SPLIT,
            help="Share of the patients held out as test images, never trained or tuned on; the same for every seed.",
        ),
    ] = _DEFAULTS.test_size,
    n_test: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            rich_help_panel=_SPLIT,
            help="Number of test patients instead of a share (--test-fraction).",
        ),
    ] = None,
    folds: Annotated[
        int,
        typer.Option(
            min=2,
            rich_help_panel=_SPLIT,
            help="Cross-validation folds of the rest: one detector and one classifier each.",
        ),
    ] = _DEFAULTS.folds,
    model: Annotated[
        str,
        typer.Option(
            rich_help_panel=_MODELS,
            help="Detector, as for train: a .yaml to train from scratch, or a .pt (e.g. yolo11s.pt in the weights folder, or with --online).",
        ),
    ] = _DEFAULTS.model,
    classifier: Annotated[
        str,
        typer.Option(
            "--classifier-model",
            rich_help_panel=_MODELS,
            help="Image classifier (the gate) to train, as train --model takes it, e.g. yolo11s-cls.pt.",
        ),
    ] = _DEFAULTS.classifier,
    imgsz: Annotated[
        int,
        typer.Option(
            callback=options.model_imgsz,
            rich_help_panel=_MODELS,
            help="Image size for conversion, training and prediction (multiple of 32).",
        ),
    ] = _DEFAULTS.imgsz,
    epochs: Annotated[
        int, typer.Option(min=1, rich_help_panel=_MODELS, help="Training epochs of each detector.")
    ] = _DEFAULTS.epochs,
    classifier_epochs: Annotated[
        int, typer.Option(min=1, rich_help_panel=_MODELS, help="Training epochs of each image classifier.")
    ] = _DEFAULTS.classifier_epochs,
    batch: Annotated[int, typer.Option(min=1, rich_help_panel=_MODELS, help="Training batch size.")] = _DEFAULTS.batch,
    seeds: Annotated[
        str,
        typer.Option(
            callback=_seeds,
            help="Seeds to repeat the whole run with (folds, training, tuning) on the same test images, e.g. 0,1,2: the report gives the mean and spread.",
        ),
    ] = "0",
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            metavar=options.DEVICE_METAVAR,
            help="'cpu', a GPU index, or several ('0,1,2,3': one fold per GPU at a time). Default: GPU 0 if there is one, else CPU.",
        ),
    ] = None,
    online: Annotated[
        bool,
        typer.Option("--online", help="Allow downloading pretrained weights named by --model or --classifier-model."),
    ] = False,
) -> None:
    """Score raw detector → tuned threshold → gate → flip TTA → fold ensemble → shrink on held-out test images of a Kaggle-layout folder.

    Splits the patients (test images, K folds), trains a detector and a classifier per fold,
    tunes every step on out-of-fold detections only, and writes OUT/ablation.json,
    OUT/ablation.md and OUT/ablation.png (each stage with its 95 % interval, the oracle apart).
    Rerun after an interruption: finished trainings and predictions are reused.

    Example: pneumo-yolo synth --out rsna --n-train 960 --dicom-size 512 --preset hard && pneumo-yolo ablation --rsna rsna --n-test 600
    """
    from converters.rsna import ConvertError

    from ..data.classify_view import ClassifyViewError
    from ..data.dataset import DatasetError
    from ..data.labels import LabelFileError
    from ..files import OutputError, check_outputs
    from ..pipelines.ablation import AblationRunError, run_ablation
    from ..pipelines.ablation_data import AblationDataError
    from ..runtime.devices import Devices
    from ..runtime.weights import WeightsError
    from ..settings import SettingError
    from ..train.common import TrainConfigError
    from .flags import flag_message

    settings = AblationSettings(
        test_size=test_size if n_test is None else n_test,
        folds=folds,
        model=model,
        classifier=classifier,
        imgsz=imgsz,
        epochs=epochs,
        classifier_epochs=classifier_epochs,
        batch=batch,
        seeds=tuple(int(item) for item in seeds.split(",")),
        devices=Devices.parse(device),
        online=online,
    )
    try:
        check_outputs({}, folders={"--out": out}, inputs={"--rsna": rsna})
        run_ablation(rsna, out, settings, log=typer.echo)
    except SettingError as error:
        raise fail(f"error: {flag_message(error)}", code=2) from None
    except (AblationDataError, ConvertError, OutputError, TrainConfigError, WeightsError) as error:
        raise fail(f"error: {error}", code=2) from None
    except (AblationRunError, ClassifyViewError, DatasetError, LabelFileError) as error:
        raise fail(f"error: {error}") from None
