"""The ``train`` command."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..train.common import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_IMGSZ, DEFAULT_NAME
from . import options
from .app import app, fail, refuse_bad_outputs

_RUN = "Run"
_FOLDS = "Cross-validation folds"
_NETWORK = "Network"


def _arch(value: str) -> str:
    from ..nets.archs import ARCHS  # torch-side modules load only when train runs, not for --help

    if value not in ARCHS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(ARCHS)}")
    return value


def _model(model: str, online: bool) -> object:
    """A YOLO ``--model`` checked where it can be before training: a file that exists, or weights here or downloadable,
    and a checkpoint that is no text file or cut-short download (raises ``WeightsError``)."""
    from ..runtime.offline import downloads_allowed, weights_dir
    from ..runtime.weights import WeightsError, checkpoint_problem, resolve_model

    source = resolve_model(model, weights_dir=weights_dir(), allow_download=online or downloads_allowed())
    if not (source.is_config or source.download) and (problem := checkpoint_problem(Path(source.source))):
        raise WeightsError(f"--model {model}: cannot be loaded as YOLO weights ({problem})")
    return source


@app.command("train")
def train_command(
    data: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Dataset YAML written by `pneumo-yolo convert` (datasets/rsna/data.yaml)."
        ),
    ],
    model: Annotated[
        Optional[str],
        typer.Option(
            help="YOLO: checkpoint (.pt: a path, or a name such as yolo11s.pt placed in the weights folder) "
            "or model config (.yaml, e.g. yolo11s.yaml or yolov3.yaml: trained from scratch). A classification model "
            "(yolo11n-cls.yaml, a -cls checkpoint) trains the image-level opacity classifier. Not needed with --resume. "
            "Other archs: a backbone, or a weights file to start from. Backbones of faster-rcnn and mask-rcnn: resnet18, resnet34 "
            "(compact pyramids for CPU budgets) or resnet50 (the default: torchvision's ResNet-50-FPN v2); of unet: any "
            "segmentation-models-pytorch encoder, e.g. resnet18 (the default), resnet34, efficientnet-b0, mobilenet_v2, or tu-NAME for a timm model NAME. "
            "A weights file is a path (write ./resnet18 for a file named like a backbone): a best.pt of the same arch, whose "
            "backbone it keeps, or a torchvision .pth state dict for the default backbone. Without --model: the default "
            "backbone from scratch."
        ),
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            callback=_arch,
            metavar=options.choices(options.ARCHS),
            help="Detector: yolo (Ultralytics), faster-rcnn or mask-rcnn (torchvision, on a ResNet-FPN that --model "
            "chooses), unet (segmentation U-Net whose map is read as boxes; --model chooses its encoder). The last three "
            "train with PyTorch Lightning and save weights/best.pt as plain tensors, with their backbone, which predict "
            "loads without running pickled code.",
        ),
    ] = "yolo",
    imgsz: Annotated[
        Optional[int],
        typer.Option(
            callback=options.model_imgsz,
            help="Training image size (pixels, multiple of 32).",
            show_default=f"the dataset's convert --imgsz, else {DEFAULT_IMGSZ}; half that for a classifier",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Number of epochs.")] = DEFAULT_EPOCHS,
    batch: Annotated[int, typer.Option(help="Batch size (all GPUs together); -1 for AutoBatch.")] = DEFAULT_BATCH,
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            metavar=options.DEVICE_METAVAR,
            help="'0' one GPU, '0,1,2,3' several (DDP), 'cpu'. Default: GPU 0 if there is one, else CPU.",
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(help="Run name: outputs go to PROJECT/NAME.", rich_help_panel=_RUN)
    ] = DEFAULT_NAME,
    project: Annotated[
        Optional[Path],
        typer.Option(help="Folder for runs. Default: ./runs.", file_okay=False, rich_help_panel=_RUN),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the interrupted run PROJECT/NAME from weights/last.pt.", rich_help_panel=_RUN
        ),
    ] = False,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Any other Ultralytics training argument, e.g. --set lr0=0.002 --set cos_lr=true (repeatable). "
            "Other archs take lr0, weight_decay, seed, workers and exist_ok.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    folds: Annotated[
        Optional[int],
        typer.Option(
            min=2,
            rich_help_panel=_FOLDS,
            help="Train every fold of a `convert --folds K` dataset (K as converted) into NAME-foldI, one after another, or one per device at a time with --device 0,1.",
        ),
    ] = None,
    fold: Annotated[
        Optional[int],
        typer.Option(
            min=0,
            rich_help_panel=_FOLDS,
            help="Train only this fold of a `convert --folds K` dataset, into NAME-foldI.",
        ),
    ] = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Allow downloading pretrained weights named on --model (off by default: runs air-gapped).",
            rich_help_panel=_NETWORK,
        ),
    ] = False,
) -> None:
    """Train a YOLO detector (or an opacity classifier), or a Faster R-CNN, Mask R-CNN or U-Net, on a converted dataset, fully offline.

    Outputs follow Ultralytics' layout in runs/NAME/ (weights/best.pt, results.csv or, for --arch, metrics.csv, plots),
    with rsna_val.json (the RSNA metric on the validation split; for a classifier,
    classifier_val.json: top-1 accuracy and ROC AUC of P(opacity)) and trained_on.txt (the
    patients the model must never be scored on). The augmentation defaults live in
    pneumo_yolo/cfg/cxr_train.yaml.
    """
    from dataclasses import replace

    from ..data.classify_view import ClassifyViewError
    from ..data.dataset import ConvertedDataset, DatasetError
    from ..files import OutputError
    from ..runtime.devices import Devices
    from ..runtime.memory import ResourceError
    from ..runtime.weights import WeightsError
    from ..settings import SettingError
    from ..train.common import TrainConfigError, TrainingDiverged, TrainSettings
    from ..train.folds import check_fold_count, fold_data, fold_name, train_folds
    from ..train.run import train
    from ..train.yolo import parse_overrides
    from .flags import flag_message

    if folds is not None and fold is not None:
        raise typer.BadParameter("give --folds K (every fold) or --fold I (one fold), not both")
    devices = Devices.parse(device)  # checked by the option's callback
    refuse_bad_outputs(
        {},
        folders={"--project": project or Path("runs")},
        inputs={"--data": data},
        checks=[
            lambda: devices.names and devices.resolve(),
            lambda: model and arch == "yolo" and not resume and _model(model, online),
        ],
    )
    try:
        settings = TrainSettings(
            model=model,
            arch=arch,
            imgsz=imgsz,
            epochs=epochs,
            batch=batch,
            devices=devices,
            name=name,
            project=project or Path("runs"),
            resume=resume,
            online=online,
            overrides=parse_overrides(set_ or []),
            score_val=True,
        )
        dataset = ConvertedDataset.from_yaml(data)
        if folds is not None:
            check_fold_count(dataset, folds)
            results = train_folds(dataset, settings, folds=range(folds), log=typer.echo)
        elif fold is not None:
            results = [train(fold_data(dataset, fold), replace(settings, name=fold_name(name, fold)))]
        else:
            results = [train(dataset, settings)]
    except SettingError as error:
        raise fail(flag_message(error), code=2) from None
    except (OutputError, ResourceError, TrainConfigError, WeightsError) as error:
        raise fail(str(error), code=2) from None
    except (ClassifyViewError, DatasetError, TrainingDiverged) as error:
        raise fail(str(error)) from None
    for result in results:
        if result is not None:  # None: an extra process of a multi-GPU run
            typer.echo(result.final_line())
