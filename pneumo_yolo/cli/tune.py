"""The ``tune`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import app, fail, refuse_bad_outputs, warn

_SCOPE = "Patients to score"
_GRID = "Search grid"


@app.command("tune")
def tune(
    raw: Annotated[
        list[Path],
        typer.Option(
            "--predictions",
            exists=True,
            dir_okay=False,
            help="The predictions to tune on: raw detections (.csv or .parquet) from `predict --save-raw` (a submission CSV has already lost the boxes tune searches over); repeat to tune on several tables of other images together, e.g. each fold's out-of-fold detections.",
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
            help="OUT/manifest.csv of `convert`: tune only on its patients.",
            rich_help_panel=_SCOPE,
        ),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(
            callback=options.split_name,
            metavar="train|val|foldI",
            help="Tune only on this split of --manifest.",
            rich_help_panel=_SCOPE,
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--postprocess",
            exists=True,
            dir_okay=False,
            help="Post-processing YAML to start from: the configuration to compare with, and the settings outside the grid.",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            dir_okay=False,
            help="Where to write the best configuration.",
            show_default="postprocess.yaml next to the first --predictions",
        ),
    ] = None,
    conf: Annotated[
        Optional[str],
        typer.Option(
            "--conf-grid",
            callback=options.postprocess_values("conf"),
            metavar="X,Y,…",
            help="Confidence thresholds to try (predict --conf takes one), e.g. 0.1,0.2,0.3.",
            show_default="0.05 to 0.95 by 0.05",
            rich_help_panel=_GRID,
        ),
    ] = None,
    merges: Annotated[
        Optional[str],
        typer.Option(
            "--merge-grid",
            callback=options.merges,
            metavar="none|nms:IOU|wbf:IOU,…",
            help="Merges to try, e.g. none,nms:0.4,wbf:0.5.",
            show_default="none,nms:0.3,nms:0.4,nms:0.5,wbf:0.4,wbf:0.5,wbf:0.6",
            rich_help_panel=_GRID,
        ),
    ] = None,
    shrink: Annotated[
        Optional[str],
        typer.Option(
            "--shrink-grid",
            callback=options.postprocess_values("shrink"),
            metavar="X,Y,…",
            help="Shrink factors to try, e.g. 1,0.875.",
            show_default="1,0.95,0.9,0.875,0.85,0.83,0.8",
            rich_help_panel=_GRID,
        ),
    ] = None,
    fusion: Annotated[
        Optional[str],
        typer.Option(
            "--fusion-iou-grid",
            callback=options.postprocess_values("fusion_iou"),
            metavar="X,Y,…",
            help="Fusion IoUs to try where an image has several members (an ensemble, TTA), e.g. 0.4,0.5.",
            show_default="0.4,0.5,0.6",
            rich_help_panel=_GRID,
        ),
    ] = None,
    gate_alpha: Annotated[
        Optional[str],
        typer.Option(
            "--gate-alpha-grid",
            callback=options.postprocess_values("gate_alpha"),
            metavar="X,Y,…",
            help="Gate exponents α of score × p^α to try, with a classifier's p, e.g. 0,1.",
            show_default="0,0.5,1",
            rich_help_panel=_GRID,
        ),
    ] = None,
    gate_threshold: Annotated[
        Optional[str],
        typer.Option(
            "--gate-threshold-grid",
            callback=options.postprocess_values("gate_threshold"),
            metavar="X,Y,…",
            help="Gate thresholds to try: no box where p is below, e.g. 0,0.2.",
            show_default="0,0.1,0.2,0.3,0.4",
            rich_help_panel=_GRID,
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Rows of the table of best configurations.")] = 10,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Search the confidence threshold, merge method and IoU, shrink factor, fusion IoU and gate that maximise the metric.

    The fusion IoU is searched where the detections hold several members per image, the gate where they hold a classifier's probability. Prints the best configuration next to the default's score and writes it as a YAML that `predict` reads. The best score is measured on the images it was tuned on, so it is optimistic: tune on out-of-fold or validation detections, and score held-out images with evaluate.

    Example: pneumo-yolo tune --predictions runs/val_raw.parquet --labels stage_2_train_labels.csv --manifest datasets/rsna/manifest.csv --split val
    """
    from typing import cast

    from ..data.labels import LabelFileError
    from ..eval.combine import stack_images
    from ..eval.detections import RawFileError, read_raw
    from ..eval.postprocess import ConfigError, MergeMethod, PostprocessConfig
    from ..eval.scoring import load_scoring_set
    from ..eval.tune import TuneError, TuneGrid, images_to_score
    from ..eval.tune import tune as run_tune

    options.check_split_has_manifest(split, manifest)
    out = out or raw[0].parent / "postprocess.yaml"
    refuse_bad_outputs(
        {"--out": out},
        inputs={"--predictions": raw, "--labels": labels, "--manifest": manifest, "--postprocess": config},
        overwrite=overwrite,
    )
    try:
        base = PostprocessConfig.from_yaml(config) if config else PostprocessConfig()
        default = TuneGrid()
        grid = TuneGrid(  # the callbacks made each given list a tuple of values
            conf=default.conf if conf is None else cast("tuple[float, ...]", conf),
            merges=default.merges if merges is None else cast("tuple[tuple[MergeMethod, float], ...]", merges),
            shrink=default.shrink if shrink is None else cast("tuple[float, ...]", shrink),
            fusion_iou=default.fusion_iou if fusion is None else cast("tuple[float, ...]", fusion),
            gate_alpha=default.gate_alpha if gate_alpha is None else cast("tuple[float, ...]", gate_alpha),
            gate_threshold=default.gate_threshold
            if gate_threshold is None
            else cast("tuple[float, ...]", gate_threshold),
        )
        scoring = load_scoring_set(labels, manifest, split)
        detections, notes = images_to_score(stack_images([read_raw(path) for path in raw]), scoring)
        report = run_tune(detections, scoring.boxes, base, grid)
    except (ConfigError, TuneError, LabelFileError, RawFileError) as error:
        raise fail(f"error: {error}") from None
    for note in scoring.notes + notes:
        warn(note)
    typer.echo(report.summary(top))
    for caveat in report.caveats():
        warn(caveat)
    names = ", ".join(path.name for path in raw)
    report.best.to_yaml(
        out,
        comment=f"pneumo-yolo tune: score {report.best_result.score:.4f} on the {report.n_images} images it was tuned on ({names})",
    )
    typer.echo(f"wrote the best configuration to {out}")
