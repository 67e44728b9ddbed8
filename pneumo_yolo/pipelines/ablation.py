"""The ablation: which of the RSNA winners' steps helps, each scored on held-out test images, on any folder in the Kaggle layout.

The chain, for each seed (``OUT/seed<S>/``), with the library's own stages:

1. split the patients (:mod:`.ablation_data`): test images (the same for every seed), and the
   rest into ``K`` folds, converted (``convert --folds K``);
2. train a detector and an image classifier per fold;
3. predict: each fold's images by that fold's models (out of fold, with flip TTA and the
   classifier), and the test images by every fold's models;
4. tune on out-of-fold detections and score six stages on the test images
   (:mod:`.ablation_stages`), with the oracle apart and the diagnostics;

then report the seeds (:mod:`.ablation_report`). A rerun reuses every training and prediction
that finished with the same settings (:mod:`.ablation_steps`), so an interrupted run is simply
run again. ``make ablation`` runs it on a synthetic folder written by ``pneumo-yolo synth``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..data.dataset import DATA_YAML, ConvertedDataset
from ..eval.detections import RawDetections
from ..files import atomic_write_text
from ..runtime.lifetime import cpu_seconds
from .ablation_data import KaggleFolder, Split, check_fold_strata, split_patients, write_fold_inputs
from .ablation_report import SeedRun, write_report
from .ablation_settings import AblationSettings
from .ablation_stages import Tables, diagnostics, stage_rows
from .ablation_steps import TRAIN_OVERRIDES, TrainedModel, ids_digest, predicted_table, train_models


def run_ablation(
    rsna: Path, out: Path, settings: AblationSettings = AblationSettings(), log: Callable[[str], None] = print
) -> dict:
    """Run every seed of ``settings`` on the Kaggle folder ``rsna`` into ``out`` and write the report there; returns its JSON summary."""
    started = time.perf_counter()
    out = Path(out).absolute()
    folder = KaggleFolder.read(rsna)
    dropped = (
        f" ({folder.left_out} left out: a DICOM or label rows missing, or unusable rows)" if folder.left_out else ""
    )
    log(f"{len(folder.boxes)} patients in {folder.root}{dropped}")
    split = split_patients(folder.strata, settings.test_size)
    check_fold_strata({pid: folder.strata[pid] for pid in split.folds}, settings.folds)
    settings = replace(settings, devices=settings.devices.resolve())
    runs = []
    for seed in settings.seeds:
        log(f"seed {seed}: {len(split.test)} test and {len(split.folds)} fold patients ({settings.folds} folds)")
        wall, cpu = time.perf_counter(), cpu_seconds()
        runs.append(run_seed(folder, split, out / f"seed{seed}", seed, settings, log))
        log(
            f"seed {seed} took {(time.perf_counter() - wall) / 60:.1f} min wall, {(cpu_seconds() - cpu) / 60:.1f} CPU-min (this process and its finished children)"
        )
    report = write_report(out, runs)
    log(f"ablation finished in {(time.perf_counter() - started) / 60:.1f} min -> {out / 'ablation.md'}")
    return report


def run_seed(
    folder: KaggleFolder, split: Split, out: Path, seed: int, settings: AblationSettings, log: Callable[[str], None]
) -> SeedRun:
    """One seed's whole chain in ``out``: convert, train, predict, tune and score."""
    atomic_write_text(out / "test_ids.txt", "".join(f"{pid}\n" for pid in split.test))
    log(f"[1/4] converting the fold patients at {settings.imgsz} px into {settings.folds} folds")
    dataset = _converted(folder, split, out, seed, settings)
    log(
        f"[2/4] training {settings.folds} detectors ({settings.model}, {settings.epochs} epochs) and classifiers ({settings.classifier}, {settings.classifier_epochs})"
    )
    from ..train.common import TrainSettings

    common = TrainSettings(
        imgsz=settings.imgsz,
        batch=settings.batch,
        devices=settings.devices,
        project=out / "runs",
        online=settings.online,
        overrides={**TRAIN_OVERRIDES, "seed": seed},
    )
    folds = range(settings.folds)
    detectors = train_models(
        dataset, folds, replace(common, name="detector", model=settings.model, epochs=settings.epochs), log=log
    )
    classifiers = train_models(
        dataset,
        folds,
        replace(common, name="classifier", model=settings.classifier, epochs=settings.classifier_epochs),
        log=log,
    )
    log("[3/4] predicting each fold's images out of fold, and the test images with every fold's models")
    oof, test = _predicted(dataset, folder, list(split.test), detectors, classifiers, out / "raw", settings, log)
    log("[4/4] tuning on out-of-fold detections, scoring every stage on the test images")
    tables = Tables(oof=oof, test=test, truth=folder.boxes)
    stages, oracle = stage_rows(tables)
    run = SeedRun(seed, stages, oracle, diagnostics(tables))
    write_report(out, [run])
    for stage in stages:
        log(f"      {stage.stage:<28} {stage.result.score:.4f}   (tuned on {stage.tuned_on})")
    log(f"      {'oracle (leakage)':<28} {oracle.result.score:.4f}")
    return run


def _converted(
    folder: KaggleFolder, split: Split, out: Path, seed: int, settings: AblationSettings
) -> ConvertedDataset:
    """The fold patients converted into ``out/dataset`` (``convert --folds K``; a rerun converts only what is missing)."""
    from converters.rsna import ConvertSettings, convert_rsna

    images, labels_csv, class_csv = write_fold_inputs(folder, split.folds, out / "inputs")
    convert_rsna(
        images,
        labels_csv,
        out / "dataset",
        class_info=class_csv,
        overwrite=True,
        progress=False,
        settings=ConvertSettings(imgsz=settings.imgsz, folds=settings.folds, seed=seed),
    )
    return ConvertedDataset.from_yaml(out / "dataset" / DATA_YAML)


def _predicted(
    dataset: ConvertedDataset,
    folder: KaggleFolder,
    test_ids: list[str],
    detectors: list[TrainedModel],
    classifiers: list[TrainedModel],
    raw: Path,
    settings: AblationSettings,
    log: Callable[[str], None],
) -> tuple[list[RawDetections], list[RawDetections]]:
    """Per fold: its images by its own models (``oof-fold<i>``), and the test images by its models (``test-fold<i>``)."""
    oof: list[RawDetections] = []
    test: list[RawDetections] = []
    original_sizes = dataset.original_sizes(
        [path for fold in range(settings.folds) for path in dataset.images(f"fold{fold}")]
    )
    for fold, detector, classifier in zip(range(settings.folds), detectors, classifiers):
        val_ids = [path.stem for path in dataset.fold(fold).listed("val")]
        check_out_of_fold(val_ids + test_ids, fold, [detector, classifier])
        for kind, source, ids, tables in (
            ("oof", dataset.root / "images" / f"fold{fold}", val_ids, oof),
            ("test", folder.images, test_ids, test),
        ):
            table = raw / f"{kind}-fold{fold}.parquet"
            record = {
                "detector": detector.fingerprint,
                "classifier": classifier.fingerprint,
                "images": ids_digest(ids),
                "imgsz": settings.imgsz,
                "tta": True,
            }

            sizes = original_sizes if kind == "oof" else None

            def predict(
                detector=detector, classifier=classifier, source=source, ids=ids, table=table, sizes=sizes
            ) -> None:
                _predict(detector, classifier, source, ids, table, sizes, settings)

            tables.append(predicted_table(table, record, predict, log))
    return oof, test


def _predict(
    detector: TrainedModel,
    classifier: TrainedModel,
    source: Path,
    ids: list[str],
    table: Path,
    sizes: dict | None,
    settings: AblationSettings,
) -> None:
    """Predict ``ids`` under ``source`` with one fold's detector (and its flipped pass) and classifier, into the raw table ``table``."""
    from ..predict.device import PredictSettings
    from ..predict.run import predict_folder

    predict_settings = PredictSettings(
        weights=(detector.best,),
        classifiers=(classifier.best,),
        tta=True,
        imgsz=settings.imgsz,
        original_sizes=sizes,
        progress=False,
    )
    report = predict_folder(
        source,
        table.with_suffix(".csv"),
        predict_settings,
        devices=settings.devices,
        save_raw=table,
        expected_ids=ids,
    )
    if report.errors:
        raise AblationRunError(
            f"{len(report.errors)} image(s) could not be predicted, e.g. {report.errors[0][0]}: {report.errors[0][1]} (all in {report.errors_path})"
        )


class AblationRunError(RuntimeError):
    """A step of the ablation that failed; the message says which and why."""


def check_out_of_fold(patient_ids: list[str], fold: int, models: list[TrainedModel]) -> None:
    """Refuse to predict an image with a model whose ``trained_on.txt`` lists it."""
    from ..train.common import TRAINED_ON

    for model in models:
        seen = set(patient_ids) & set((model.run_dir / TRAINED_ON).read_text().split())
        if seen:
            raise AblationRunError(
                f"{model.run_dir} (fold {fold}) trained on {len(seen)} image(s) it was about to be scored on, e.g. {sorted(seen)[0]}"
            )
