"""The ablation: which of the RSNA winners' steps helps, each scored on held-out synthetic test images.

One run of the library's own stages, on the hard synthetic preset:

1. synth (train and test sets) → ``convert --folds K`` → train a detector and an image
   classifier per fold;
2. out-of-fold detections: every training image predicted (with flip TTA and the classifier)
   only by the fold models that never trained on it;
3. test detections: every test image predicted by every fold model;
4. six stages, each tuned on out-of-fold detections only and scored on the test set, which no
   training or tuning step saw:

   ========================  ===========================================================
   stage                     what changes
   ========================  ===========================================================
   raw detector              fold 0's detector, default threshold and merge, no shrink
   + tuned threshold/merge   conf, merge and its IoU tuned on fold 0's out-of-fold images
   + gate                    fold 0's classifier: score × p^α, images under a threshold
   + flip TTA                the flipped pass fused with the plain one (fusion IoU tuned)
   + fold ensemble           every fold's detectors and classifiers, tuned on all training images
   + tuned shrink            the box shrink factor searched too
   ========================  ===========================================================

The ensemble's fusion IoU is tuned on two members per image (each training image has one
out-of-fold model and its flipped pass) and applied to ``2 K`` members on the test images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..eval.combine import combine_members, stack_images
from ..eval.detections import RawDetections, read_raw
from ..eval.metric import MetricResult
from ..eval.postprocess import PostprocessConfig
from ..eval.scoring import load_scoring_set
from ..eval.tune import TuneGrid, score_config, tune
from ..files import atomic_write_bytes, atomic_write_text

NO_SHRINK = (1.0,)
STAGES = ("raw detector", "+ tuned threshold and merge", "+ gate", "+ flip TTA", "+ fold ensemble", "+ tuned shrink")


@dataclass(frozen=True)
class AblationSettings:
    """Sizes of the ablation; the defaults ran in 11.9 min (20.6 CPU-min) on 2 CPU cores."""

    n_train: int = 360
    n_test: int = 150
    dicom_size: int = 512
    imgsz: int = 192
    folds: int = 3
    epochs: int = 20
    classifier_epochs: int = 10
    batch: int = 16
    model: str = "yolo11n.yaml"
    classifier: str = "yolo11n-cls.yaml"
    preset: str = "hard"
    seed: int = 0
    device: str | None = None


@dataclass(frozen=True)
class Stage:
    """One row of the ablation: its test score and what its post-processing was tuned on."""

    stage: str
    score: float
    tuned_on: str
    config: PostprocessConfig
    result: MetricResult


def stage_rows(
    oof: list[RawDetections],
    test: list[RawDetections],
    oof_truth: dict,
    test_truth: dict,
    grid: TuneGrid = TuneGrid(),
) -> list[Stage]:
    """The six stages from out-of-fold (``oof[i]``: fold ``i``'s validation images) and test (``test[i]``: fold ``i``'s model) tables.

    Every table holds two members (the plain and the flipped pass) and the fold classifier's
    probability. ``grid`` is what tuning searches; every stage but the last keeps shrink at 1.
    Pure: no model runs here.
    """
    first_oof, first_test = oof[0], test[0]
    all_oof = stack_images(oof)
    ensemble = combine_members(test)
    plain_grid = replace(grid, shrink=NO_SHRINK)
    base = PostprocessConfig(shrink=1.0)
    fold0 = f"out-of-fold images of fold 0 ({len(first_oof)})"
    everyone = f"out-of-fold images of every fold ({len(all_oof)})"
    plans = [
        (STAGES[0], None, first_test.only_members([0]).without_probability(), "nothing: the defaults"),
        (STAGES[1], first_oof.only_members([0]).without_probability(), first_test.only_members([0]).without_probability(), fold0),
        (STAGES[2], first_oof.only_members([0]), first_test.only_members([0]), fold0),
        (STAGES[3], first_oof, first_test, fold0),
        (STAGES[4], all_oof, ensemble, everyone),
        (STAGES[5], all_oof, ensemble, everyone),
    ]
    stages = []
    for name, tune_on, score_on, tuned_on in plans:
        config = base
        if tune_on is not None:
            config = tune(tune_on, oof_truth, base, grid if name == STAGES[5] else plain_grid).best
        stages.append(Stage(name, 0.0, tuned_on, config, score_config(score_on, test_truth, config)))
    return [replace(stage, score=stage.result.score) for stage in stages]


def check_out_of_fold(patient_ids: list[str], run_dirs: list[Path]) -> None:
    """Refuse to predict an image with a model whose ``trained_on.txt`` lists it."""
    from ..train.common import TRAINED_ON

    for run_dir in run_dirs:
        seen = set(patient_ids) & set((run_dir / TRAINED_ON).read_text().split())
        if seen:
            raise RuntimeError(f"{run_dir} trained on {len(seen)} image(s) it was about to be scored on, e.g. {sorted(seen)[0]}")


def write_outputs(out: Path, stages: list[Stage], test_images: int) -> None:
    """``ablation.json``, ``ablation.md`` and ``ablation.png`` (a bar chart) in ``out``."""
    from ..report.plots import score_bars

    summary = {
        "test_images": test_images,
        "stages": [
            {"stage": s.stage, "score": round(s.score, 4), "tuned_on": s.tuned_on, "postprocess": asdict(s.config)} for s in stages
        ],
    }
    atomic_write_text(out / "ablation.json", json.dumps(summary, indent=2) + "\n")
    lines = ["| stage | RSNA score on the test set | change | tuned on |", "| --- | --- | --- | --- |"]
    for previous, stage in zip([None, *stages], stages):
        change = "" if previous is None else f"{stage.score - previous.score:+.4f}"
        lines.append(f"| {stage.stage} | {stage.score:.4f} | {change} | {stage.tuned_on} |")
    atomic_write_text(out / "ablation.md", "\n".join(lines) + f"\n\nScored on {test_images} held-out synthetic test images.\n")
    chart = score_bars([s.stage for s in stages], [s.score for s in stages], f"RSNA score on {test_images} held-out test images")
    atomic_write_bytes(out / "ablation.png", chart)


def run_ablation(out: Path, settings: AblationSettings = AblationSettings(), log: Callable[[str], None] = print) -> list[Stage]:
    """Run everything into ``out`` (``rsna/``, ``dataset/``, ``runs/``, ``raw/``) and write the report there."""
    from converters.rsna import ConvertSettings
    from converters.synthetic import synthetic_dataset

    from ..data.dataset import DATA_YAML, ConvertedDataset
    from ..train.folds import fold_name, train_folds
    from ..predict.run import predict_folder

    started = time.perf_counter()
    out = Path(out).absolute()
    raw_dir = out / "raw"
    rsna, dataset_root = synthetic_dataset(
        out, n_train=settings.n_train, n_test=settings.n_test, dicom_size=settings.dicom_size, preset=settings.preset,
        settings=ConvertSettings(imgsz=settings.imgsz, folds=settings.folds, seed=settings.seed), steps=5, log=log,
    )  # fmt: skip
    dataset = ConvertedDataset.from_yaml(dataset_root / DATA_YAML)
    folds = range(settings.folds)
    common = dict(imgsz=settings.imgsz, batch=settings.batch, project=out / "runs", overrides={"exist_ok": True, "seed": settings.seed})
    log(f"[3/5] training {settings.folds} detectors ({settings.model}, {settings.epochs} epochs) and classifiers ({settings.classifier})")
    detectors = train_folds(dataset, settings.model, folds=folds, device=settings.device, name="detector", log=log, epochs=settings.epochs, **common)
    classifiers = train_folds(
        dataset, settings.classifier, folds=folds, device=settings.device, name="classifier", log=log, epochs=settings.classifier_epochs, **common
    )
    log("[4/5] predicting: each training image by the fold models that never trained on it, each test image by every fold model")
    oof, test = [], []
    sizes = dataset.original_sizes(dataset.images("fold0"))  # the manifest's sizes of every patient
    for fold, detector, classifier in zip(folds, detectors, classifiers):
        val_ids = [path.stem for path in dataset.fold(fold).listed("val")]
        check_out_of_fold(val_ids, [detector.run_dir, classifier.run_dir])
        for kind, source, ids, tables in (("oof", dataset.root / "images" / f"fold{fold}", val_ids, oof), ("test", rsna / "stage_2_test_images", None, test)):
            raw = raw_dir / f"{fold_name(kind, fold)}.parquet"
            predict_folder(
                detector.best, source, raw.with_suffix(".csv"), classifiers=[classifier.best], tta=True, save_raw=raw,
                imgsz=settings.imgsz, device=settings.device, expected_ids=ids, original_sizes=sizes if kind == "oof" else None,
            )  # fmt: skip
            tables.append(read_raw(raw))
    log("[5/5] tuning on out-of-fold detections and scoring every stage on the test set")
    oof_truth = load_scoring_set(rsna / "stage_2_train_labels.csv").boxes
    test_truth = load_scoring_set(rsna / "stage_2_test_labels.csv").boxes
    stages = stage_rows(oof, test, oof_truth, test_truth)
    write_outputs(out, stages, settings.n_test)
    for stage in stages:
        log(f"      {stage.stage:<28} {stage.score:.4f}   (tuned on {stage.tuned_on})")
    log(f"ablation finished in {(time.perf_counter() - started) / 60:.1f} min -> {out / 'ablation.md'}")
    return stages
