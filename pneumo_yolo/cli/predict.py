"""The ``predict`` command."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import app, fail, refuse_bad_outputs, warn

_PATIENTS = "Patients and image sizes"
_POSTPROCESS = "Post-processing"


@app.command("predict")
def predict_command(
    weights: Annotated[
        list[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Trained detector weights (.pt); repeat for an ensemble (--weights a.pt --weights b.pt): each image is decoded once and every model runs on it. Only load weights you trust: .pt files are pickles.",
        ),
    ],
    source: Annotated[
        Path,
        typer.Option(
            exists=True, help="Folder of .dcm files (searched recursively), or of PNG/JPEG files, or one file."
        ),
    ],
    out: Annotated[
        Path, typer.Option(dir_okay=False, help="Submission CSV to write (patientId,PredictionString).")
    ] = Path("submission.csv"),
    sample: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="stage_2_sample_submission.csv: predict exactly its patients, one row each.",
            rich_help_panel=_PATIENTS,
        ),
    ] = None,
    ids: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Predict exactly these patients: a CSV with a patientId column, or one id per line.",
            rich_help_panel=_PATIENTS,
        ),
    ] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            rich_help_panel=_PATIENTS,
            help="manifest.csv of `convert`: map boxes found on its resized PNGs to the original images' pixels.",
        ),
    ] = None,
    imgsz: Annotated[
        Optional[int],
        typer.Option(
            callback=options.model_imgsz,
            help="Longest image side fed to the model (multiple of 32).",
            show_default="the size it was trained at",
        ),
    ] = None,
    batch: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            show_default="32 on a GPU, 4 on the CPU",
            help="Images per inference batch. On the CPU each image of a batch holds about 20 MB (yolo11n at 512 px).",
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            metavar=options.DEVICE_METAVAR,
            help="'0' for GPU 0, 'cpu'. Several, e.g. '0,1,2,3': the images are split between the GPUs, one process each, into one submission. Default: GPU 0 if there is one, else CPU.",
        ),
    ] = None,
    workers: Annotated[
        str,
        typer.Option(
            callback=options.workers,
            metavar="auto|N",
            help="Decoding processes per device, running beside inference (0: decode in the predicting process). auto: on the CPU 1 (the model itself uses every core); on GPUs the cores but one per GPU, shared equally between the GPUs, at most 8 per GPU and at least 1.",
        ),
    ] = "auto",
    postprocess: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Post-processing YAML, e.g. runs/exp/postprocess_tuned.yaml from train or tune.",
            rich_help_panel=_POSTPROCESS,
        ),
    ] = None,
    conf: Annotated[
        Optional[float],
        typer.Option(
            min=0.0, max=1.0, help="Confidence threshold; overrides the YAML's conf.", rich_help_panel=_POSTPROCESS
        ),
    ] = None,
    classifier: Annotated[
        Optional[list[Path]],
        typer.Option(
            exists=True,
            dir_okay=False,
            rich_help_panel=_POSTPROCESS,
            help="Image classifier weights from `train --model yolo11n-cls.yaml` (repeatable: their probabilities are averaged): each box scores box × p(opacity)^gate_alpha, and no box where p < gate_threshold (see --postprocess).",
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Add a horizontally flipped pass per model, fused with the plain one by WBF at the YAML's fusion_iou.",
            rich_help_panel=_POSTPROCESS,
        ),
    ] = False,
    save_raw: Annotated[
        Optional[Path],
        typer.Option(
            dir_okay=False,
            callback=options.raw_table,
            help="Also write raw detections (.csv or .parquet) for `pneumo-yolo tune`.",
            rich_help_panel=_POSTPROCESS,
        ),
    ] = None,
    dicom_out: Annotated[
        Optional[Path],
        typer.Option(
            file_okay=False,
            help="Also write a DICOM SR per image and a GSPS per image with boxes (DICOM inputs only) into DIR/sr and DIR/gsps.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace --out and --save-raw if they exist, and write into a --dicom-out that holds results already (the results of other images stay).",
        ),
    ] = False,
) -> None:
    """Predict a folder of DICOMs into a Kaggle submission CSV, fully offline.

    DICOMs are read exactly as `convert` reads them; boxes are mapped back to each image's
    original pixels and post-processed. Unreadable files are listed on stderr and in
    OUT.errors.csv (exit code 1); every other image still gets its row.

    Example: pneumo-yolo predict --weights runs/exp/weights/best.pt --source rsna/stage_2_test_images
    --sample rsna/stage_2_sample_submission.csv --postprocess tuned.yaml --out submission.csv
    """
    from dataclasses import replace
    from typing import cast

    from ..data.dataset import read_manifest
    from ..data.labels import LabelFileError
    from ..eval.detections import RawFileError
    from ..eval.postprocess import ConfigError, PostprocessConfig
    from ..eval.submission import SubmissionError, read_patient_ids
    from ..files import OutputError
    from ..nets.checkpoints import is_checkpoint
    from ..nets.classifier import ClassifierError
    from ..nets.detector import DetectorError
    from ..predict.decoding import InputError
    from ..predict.device import PredictError, PredictSettings
    from ..predict.run import errors_path_for, predict_folder
    from ..runtime.devices import Devices
    from ..runtime.memory import ResourceError
    from ..runtime.weights import checkpoint_problem
    from ..settings import SettingError
    from .flags import flag_message

    if sample is not None and ids is not None:
        raise typer.BadParameter("give at most one of --sample and --ids")
    devices = Devices.parse(device)  # checked by the option's callback
    errors_file = f"the errors file of --out ({errors_path_for(out).name})"
    refuse_bad_outputs(
        {"--out": out, "--save-raw": save_raw, errors_file: errors_path_for(out)},
        folders={"--dicom-out": dicom_out},
        inputs={
            "--weights": weights,
            "--classifier": classifier,
            "--source": source,
            "--sample": sample,
            "--ids": ids,
            "--manifest": manifest,
            "--postprocess": postprocess,
        },
        overwrite=overwrite,
        goes_with_others=[errors_file],
        checks=[lambda: devices.names and devices.resolve()],
    )
    unloadable = [  # before torch loads: a text file as weights is refused in a moment
        f"error: {flag} {path}: cannot be loaded as YOLO weights ({problem})"
        for flag, paths in (("--weights", weights), ("--classifier", classifier or []))
        for path in paths
        if not is_checkpoint(path) and (problem := checkpoint_problem(path))
    ]
    if unloadable:
        raise fail("\n".join(unloadable))
    try:
        config = PostprocessConfig.from_yaml(postprocess) if postprocess else PostprocessConfig()
        if conf is not None:
            config = replace(config, conf=conf)
        listing = sample or ids
        expected, duplicates = read_patient_ids(listing) if listing else (None, [])
        if duplicates:
            warn(
                f"{sample or ids} lists {len(duplicates)} patientId(s) more than once, e.g. {duplicates[0]}: each gets one row"
            )
        settings = PredictSettings(
            weights=tuple(weights),
            classifiers=tuple(classifier or ()),
            config=config,
            imgsz=imgsz,
            batch=batch,
            tta=tta,
            workers=cast("int | None", workers),  # options.workers made the text a count, or None for auto
            original_sizes=read_manifest(manifest) if manifest else None,
            dicom_out=dicom_out,
        )
        report = predict_folder(source, out, settings, devices=devices, save_raw=save_raw, expected_ids=expected)
    except SettingError as error:
        raise fail(f"error: {flag_message(error)}", code=2) from None
    except (InputError, OutputError, ResourceError) as error:
        raise fail(f"error: {error}", code=2) from None
    except (
        ClassifierError,
        ConfigError,
        DetectorError,
        LabelFileError,
        PredictError,
        RawFileError,
        SubmissionError,
    ) as error:
        raise fail(f"error: {error}") from None
    for file, problem in report.errors:
        typer.secho(f"failed: {file}: {problem}", err=True, fg=typer.colors.RED)
    if not report.written:
        raise fail(
            f"error: no image was predicted ({len(report.errors)} problem(s) above), so nothing was written: {out} and the other outputs are as they were"
        )
    if report.n_not_asked:
        warn(f"{report.n_not_asked} image(s) in {source} are not among the expected patients and were not predicted")
    if report.picture_pixels:
        warn(
            "boxes on PNG/JPEG inputs are in the pictures' own pixels; give --manifest to map them to the original images"
        )
    typer.echo(
        f"predicted {report.n_images} images ({report.n_with_boxes} with boxes) in {report.elapsed_s:.1f} s "
        f"({report.images_per_s:.1f} images/s; batches of {report.batch}, {report.workers} decoding process(es)"
        + (f" on each of {report.devices} devices" if report.devices > 1 else "")
        + f") -> {report.out} ({report.n_rows} rows)"
        + (f"; raw detections -> {report.raw}" if report.raw else "")
        + (f"; DICOM SR and GSPS -> {report.dicom_out}" if report.dicom_out else "")
    )
    for problem in report.invalid:
        typer.secho(f"{report.out}: {problem}", err=True, fg=typer.colors.RED)
    if report.errors:
        typer.echo(f"{len(report.errors)} problem(s) listed in {report.errors_path}", err=True)
    if report.errors or report.invalid:
        raise typer.Exit(code=1)
