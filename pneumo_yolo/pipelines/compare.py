"""The comparison: YOLO11, YOLOv3, Faster R-CNN, Mask R-CNN and U-Net on one bench, on an equal budget.

Same data, same split, same training budget, same post-processing, same metric, with the
library's own stages:

1. synth (training and test sets, the hard preset by default) → ``convert`` with one
   train/validation split;
2. each arch trains on the training split for the same budget of training time
   (:mod:`pneumo_yolo.train.budget`: CPU minutes on the CPU, wall minutes on a GPU), its
   learning curve scored on the validation split along the way;
3. each predicts the validation images, and the post-processing (threshold, merge, shrink) is
   tuned on them with ``tune``'s grid;
4. each predicts the held-out test images, which no training or tuning step saw, and is
   scored there at its tuned post-processing, with a 95 % bootstrap interval over the test
   images (:func:`pneumo_yolo.eval.bootstrap.score_interval`).

Writes ``compare.json``, ``compare.md`` and ``compare.png`` (:mod:`.compare_report`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

from ..runtime.lifetime import cpu_seconds, job_processes
from .compare_report import Row, curve_text, write_outputs
from .compare_settings import MODELS, ROWS, CompareSettings, check_rows, parse_models

__all__ = ["MODELS", "ROWS", "CompareSettings", "check_rows", "parse_models", "run_compare"]


def model_label(arch: str, model: str) -> str:
    """What a row trained, as the table names it: a YOLO config, or the network a backbone builds.

    >>> model_label("yolo", "yolo11n.yaml"), model_label("unet", "resnet34")
    ('yolo11n.yaml', 'unet-resnet34')
    """
    from ..nets.archs import is_backbone, model_name

    return model_name(arch, model) if arch != "yolo" and is_backbone(arch, model) else model


def run_compare(
    out: Path, settings: CompareSettings = CompareSettings(), log: Callable[[str], None] = print
) -> list[Row]:
    """Run everything into ``out`` (``rsna/``, ``dataset/``, ``runs/``, ``raw/``) and write the table there.

    OpenMP's threads are told to sleep rather than spin while they wait (``OMP_WAIT_POLICY=PASSIVE``,
    unless set), before torch is first imported: on a CPU that other programs share, spinning
    threads burned up to four times the CPU time of the same training steps, and the budget
    counts CPU time.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from converters.rsna import ConvertSettings
    from converters.synthetic import synthetic_dataset

    from ..data.dataset import DATA_YAML, ConvertedDataset
    from ..eval.scoring import load_scoring_set

    started, cpu_started = time.perf_counter(), cpu_seconds()
    out = Path(out).absolute()
    rows = check_rows(settings.rows)
    rsna, dataset_root = synthetic_dataset(
        out,
        n_train=settings.n_train,
        n_test=settings.n_test,
        dicom_size=settings.dicom_size,
        preset=settings.preset,
        settings=ConvertSettings(imgsz=settings.imgsz, val_fraction=settings.val_fraction, seed=settings.seed),
        steps=3,
        log=log,
    )
    dataset = ConvertedDataset.from_yaml(dataset_root / DATA_YAML)
    val_images = len(dataset.listed("val"))
    truth = {
        "val": load_scoring_set(rsna / "stage_2_train_labels.csv").boxes,
        "test": load_scoring_set(rsna / "stage_2_test_labels.csv").boxes,
    }
    log(
        f"[3/3] training each for {settings.budget_min:g} min, tuning on {val_images} validation images and scoring on "
        f"{settings.n_test} test images: {', '.join(rows)}"
    )
    results = train_rows(rows, settings, out, dataset, rsna, truth, log)
    wall_min, cpu_min = (time.perf_counter() - started) / 60, (cpu_seconds() - cpu_started) / 60
    write_outputs(out, results, settings, val_images, wall_min=wall_min)
    log(
        f"comparison finished in {wall_min:.1f} min ({cpu_min:.1f} CPU-min with its row and decoding processes) -> {out / 'compare.md'}"
    )
    return results


def train_rows(
    rows: tuple[str, ...],
    settings: CompareSettings,
    out: Path,
    dataset,
    rsna: Path,
    truth: dict,
    log: Callable[[str], None],
) -> list[Row]:
    """Every row (:func:`compare_row`), in table order: one after another, or several at once in processes of their own.

    On the CPU the rows train at once, one per core (:meth:`CompareSettings.rows_at_once`),
    each with its share of the cores as PyTorch threads: a row's budget is the CPU time of its
    own process, so it gets the same work either way, and the cores are not left idle while one
    row waits on its data loading. Each such process writes its output to ``out/logs/<row>.log``.
    """
    from ..runtime.devices import cpu_count

    cores = cpu_count()
    settings = replace(settings, devices=settings.devices.resolve())  # once, for every row
    at_once = settings.rows_at_once(len(rows), on_cpu=settings.devices.on_cpu, cores=cores)
    if at_once == 1:
        results = []
        for row in rows:
            log(f"      {row}: training for {settings.budget_min:g} min")
            results.append(compare_row(row, settings, out, dataset, rsna, truth))
            log(row_summary(results[-1]))
        return results
    threads = max(1, cores // at_once)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log(
        f"      {at_once} rows at a time, {threads} thread{'s' if threads > 1 else ''} each; each row's output in {logs}"
    )
    with job_processes(at_once) as pool:  # after a kill -9 of this process, no row trains on
        pending = {
            pool.submit(_row_in_process, row, settings, out, dataset, rsna, truth, threads, logs / f"{row}.log"): row
            for row in rows
        }
        found = {}
        for job in as_completed(pending):
            found[pending[job]] = job.result()
            log(row_summary(found[pending[job]]))
    return [found[row] for row in rows]


def _row_in_process(
    row: str, settings: CompareSettings, out: Path, dataset, rsna: Path, truth: dict, threads: int, log_file: Path
) -> Row:
    """Worker process (not a daemon, so prediction may start decoding processes): one row with ``threads`` PyTorch threads, its output into ``log_file``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported here; the trainers then keep the count
    import torch

    torch.set_num_threads(threads)
    with open(log_file, "w") as output:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    try:
        return compare_row(row, settings, out, dataset, rsna, truth)
    finally:
        sys.stdout.flush(), sys.stderr.flush()


def compare_row(row: str, settings: CompareSettings, out: Path, dataset, rsna: Path, truth: dict) -> Row:
    """Train, tune and score one row (see the module doc)."""
    from ..eval.bootstrap import score_interval
    from ..eval.detections import read_raw
    from ..eval.tune import score_config, tune
    from ..predict.device import PredictSettings
    from ..predict.run import predict_folder
    from ..train.budget import read_record
    from ..train.common import TrainSettings
    from ..train.run import train

    arch, model = settings.plan(row)
    train_settings = TrainSettings(
        model=model,
        arch=arch,
        imgsz=settings.imgsz,
        batch=settings.batch,
        devices=settings.devices,
        name=row,
        project=out / "runs",
        overrides=settings.overrides(row),
        budget_min=settings.budget_min,
        curve_points=settings.curve_points,
    )
    trained = train(dataset, train_settings)
    if trained is None:
        raise RuntimeError(f"{row}: an extra process of a multi-GPU run has no results")
    record = read_record(trained.run_dir)
    how = PredictSettings(weights=(trained.best,), imgsz=settings.imgsz, batch=settings.batch, progress=False)
    raw_dir = out / "raw"
    val_raw, test_raw = raw_dir / f"{row}-val.parquet", raw_dir / f"{row}-test.parquet"
    val_images = dataset.listed("val")
    predict_folder(
        dataset.root / "images" / "val",
        val_raw.with_suffix(".csv"),
        replace(how, original_sizes=dataset.original_sizes(val_images)),
        devices=settings.devices,
        save_raw=val_raw,
    )
    report = predict_folder(
        rsna / "stage_2_test_images", test_raw.with_suffix(".csv"), how, devices=settings.devices, save_raw=test_raw
    )
    tuned = tune(read_raw(val_raw), truth["val"])
    result = score_config(read_raw(test_raw), truth["test"], tuned.best)
    interval = score_interval(result.image_scores, seed=settings.seed)
    return Row(
        row, row_label(row, settings), interval, tuned.best_result.score, record, report.steady_images_per_s, tuned.best
    )


def row_label(row: str, settings: CompareSettings) -> str:
    """What a row trains, with its options, as the log and the table name it.

    >>> row_label("mask-rcnn", CompareSettings())
    'maskrcnn_resnet18_fpn, lr0=0.002'
    """
    arch, model = settings.plan(row)
    return model_label(arch, model) + "".join(
        f", {key}={value}" for key, value in settings.options.get(row, {}).items()
    )


def row_summary(found: Row) -> str:
    """One line of a finished row: its test score and interval, validation score, how far it trained, its curve."""
    interval, record = found.test, found.record
    return (
        f"      {found.arch} ({found.model}): test score {interval.estimate:.4f} [{interval.low:.4f}, {interval.high:.4f}] (validation {found.val_score:.4f}), "
        f"{record['epochs']:g} epochs, {record['steps']} steps in {record['train_s']:.0f} {record['clock']}-s; curve {curve_text(record['curve'])}"
    )
