"""The whole pipeline on synthetic data, small enough for a laptop CPU.

synth → convert → train (from scratch) → predict on a separate test set → submission.csv →
the RSNA score against the synthetic test labels. Every stage is the same library call the
matching command makes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..runtime.devices import Devices

if TYPE_CHECKING:
    from ..eval.metric import MetricResult


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    n_train: int = 300
    n_test: int = 60
    imgsz: int = 256
    epochs: int = 25
    batch: int = 16
    model: str = "yolo11n.yaml"
    seed: int = 0
    preset: str = "easy"
    devices: Devices = Devices()


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its outputs and what it scored."""

    submission: Path
    best: Path
    result: MetricResult
    validation: dict
    elapsed_s: float


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage into ``out`` (``rsna/``, ``dataset/``, ``runs/demo/``, ``submission.csv``).

    Reruns start over: each stage replaces what the previous demo wrote in ``out``.
    """
    from converters.settings import ConvertSettings
    from converters.synthetic import synthetic_dataset

    from ..eval.postprocess import PostprocessConfig
    from ..eval.scoring import evaluate_submission, load_scoring_set
    from ..predict.device import PredictSettings
    from ..predict.run import predict_folder
    from ..synth.write import REAL_SIDE
    from ..train.common import TUNED_YAML, TrainSettings
    from ..train.run import train

    devices = settings.devices.resolve()  # a device this machine lacks stops the demo before any work
    started = time.perf_counter()
    out = Path(out).absolute()
    rsna, dataset = synthetic_dataset(
        out,
        n_train=settings.n_train,
        n_test=settings.n_test,
        dicom_size=REAL_SIDE,
        preset=settings.preset,
        settings=ConvertSettings(imgsz=settings.imgsz, seed=settings.seed),
        steps=6,
        log=log,
    )

    log(f"[3/6] training {settings.model} from scratch for {settings.epochs} epochs")
    train_settings = TrainSettings(
        model=settings.model,
        imgsz=settings.imgsz,
        epochs=settings.epochs,
        batch=settings.batch,
        devices=devices,
        project=out / "runs",
        name="demo",
        overrides={"exist_ok": True, "seed": settings.seed},
        score_val=True,
    )
    trained = train(dataset / "data.yaml", train_settings)
    assert trained is not None  # None only in the extra processes of a multi-GPU Lightning run
    log(f"      {trained.final_line()}")

    submission = out / "submission.csv"
    log(f"[4/6] predicting the {settings.n_test} test DICOMs with {trained.best.name} and {TUNED_YAML}")
    config = PostprocessConfig.from_yaml(trained.run_dir / TUNED_YAML)
    predicted = predict_folder(
        rsna / "stage_2_test_images",
        submission,
        PredictSettings(weights=(trained.best,), config=config),
        devices=devices,
    )
    log(f"[5/6] wrote {submission} ({predicted.n_images} rows, {predicted.n_with_boxes} with boxes)")

    scoring = load_scoring_set(rsna / "stage_2_test_labels.csv")
    result = evaluate_submission(submission, scoring)
    elapsed = time.perf_counter() - started
    log(f"[6/6] RSNA score on the synthetic test set: {result.score:.4f} ({result.n_images} images scored)")
    log(result.summary())
    log(f"demo finished in {elapsed / 60:.1f} min")
    return DemoResult(submission, trained.best, result, dict(trained.rsna_val or {}), elapsed)
