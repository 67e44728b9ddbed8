"""The comparison: YOLO11, YOLOv3, Faster R-CNN, Mask R-CNN and U-Net on one bench.

Same data, same split, same post-processing, same metric, with the library's own stages:

1. synth (training and test sets, the hard preset by default) → ``convert`` with one
   train/validation split;
2. each arch trains on the training split (``train --arch``);
3. each predicts the validation images, and the post-processing (threshold, merge, shrink) is
   tuned on them with ``tune``'s grid;
4. each predicts the held-out test images, which no training or tuning step saw, and is
   scored there at its tuned post-processing.

Writes ``compare.json`` (``{"rows": [{"arch", "model", "score", "train_s", "predict_img_s", ...}]}``),
``compare.md`` and ``compare.png``. ``predict_img_s`` is the images per second of ``predict``
on the test images once the model is loaded (decoding, inference, post-processing, writing).
At CPU sizes every arch trains for minutes from scratch, so the table ranks the methods only
roughly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..eval.detections import read_raw
from ..eval.postprocess import PostprocessConfig
from ..eval.scoring import load_scoring_set
from ..eval.tune import score_config, tune
from ..files import atomic_write_bytes, atomic_write_text

ROWS = ("yolo11", "yolov3", "faster-rcnn", "mask-rcnn", "unet")
"""The rows of the table, in order: each names an arch of ``train --arch`` (the two YOLOs by model)."""
CPU_NOTE = (
    "CPU-sized runs (small images, minutes of training from scratch) rank the methods only roughly: "
    "the heavier networks are the furthest from converged."
)


@dataclass(frozen=True)
class CompareSettings:
    """Sizes of the comparison; the defaults ran in 11.0 min (19.6 CPU-min) on 2 CPU cores for all five rows.

    The batch is 16 for every arch because on a CPU a training step of the R-CNNs and the U-Net
    costs nearly the same at 4 images as at 16 (the backward pass through their tens of millions
    of weights dominates), so larger batches give more images per minute.
    """

    n_train: int = 200
    n_test: int = 80
    dicom_size: int = 256
    imgsz: int = 128
    val_fraction: float = 0.25
    yolo_epochs: int = 30
    rcnn_epochs: int = 3
    unet_epochs: int = 10
    batch: int = 16
    yolo11_model: str = "yolo11n.yaml"
    yolov3_model: str = "yolov3-tiny.yaml"
    rows: tuple[str, ...] = ROWS
    preset: str = "hard"
    seed: int = 0
    device: str | None = None

    def plan(self, row: str) -> tuple[str, str | None, int, str]:
        """``(arch, --model, epochs, model name)`` of one row."""
        from ..nets.archs import MODEL_NAMES

        if row == "yolo11":
            return "yolo", self.yolo11_model, self.yolo_epochs, self.yolo11_model
        if row == "yolov3":
            return "yolo", self.yolov3_model, self.yolo_epochs, self.yolov3_model
        if row in ("faster-rcnn", "mask-rcnn"):
            return row, None, self.rcnn_epochs, MODEL_NAMES[row]
        if row == "unet":
            return row, None, self.unet_epochs, MODEL_NAMES[row]
        raise ValueError(f"unknown row {row!r}: choose from {', '.join(ROWS)}")


@dataclass(frozen=True)
class Row:
    """One arch's result: its test score at the post-processing tuned on the validation split."""

    arch: str
    model: str
    epochs: int
    score: float
    """NaN where no test image counted (the metric leaves out negative images without a box)."""
    val_score: float
    train_s: float
    predict_img_s: float
    postprocess: PostprocessConfig


def check_rows(rows: Sequence[str]) -> tuple[str, ...]:
    """The rows asked for, checked and in the table's order.

    >>> check_rows(["unet", "yolo11"])
    ('yolo11', 'unet')
    """
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise ValueError(f"--archs {','.join(unknown) or '(none)'}: choose from {', '.join(ROWS)}")
    return tuple(row for row in ROWS if row in rows)


def _rounded(score: float) -> float | None:
    """A score for JSON: ``None`` where the metric had no image to count (every test image negative and left empty)."""
    return round(score, 4) if math.isfinite(score) else None


def _shown(score: float) -> str:
    return f"{score:.4f}" if math.isfinite(score) else "n/a"


def write_outputs(out: Path, rows: list[Row], settings: CompareSettings, val_images: int) -> None:
    """``compare.json``, ``compare.md`` and ``compare.png`` (a bar chart of the test scores) in ``out``."""
    from ..report.plots import score_bars

    summary = {
        "test_images": settings.n_test,
        "val_images": val_images,
        "settings": asdict(settings),
        "note": CPU_NOTE,
        "rows": [
            {"arch": r.arch, "model": r.model, "score": _rounded(r.score), "train_s": round(r.train_s, 1), "predict_img_s": round(r.predict_img_s, 2),
             "epochs": r.epochs, "val_score": _rounded(r.val_score), "postprocess": asdict(r.postprocess)}
            for r in rows
        ],
    }  # fmt: skip
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=2) + "\n")
    lines = [
        "| arch | model | epochs | RSNA score, test | RSNA score, validation (tuned there) | training (s) | predict (images/s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r.arch} | {r.model} | {r.epochs} | {_shown(r.score)} | {_shown(r.val_score)} | {r.train_s:.0f} | {r.predict_img_s:.1f} |")
    footer = (
        f"\n\nTrained on {settings.n_train - val_images} and tuned on {val_images} synthetic radiographs ({settings.preset} preset), "
        f"scored on {settings.n_test} held-out test images, at {settings.imgsz} px. {CPU_NOTE}\n"
    )
    atomic_write_text(out / "compare.md", "\n".join(lines) + footer)
    chart = score_bars([f"{r.arch} ({r.model})" for r in rows], [r.score if math.isfinite(r.score) else 0.0 for r in rows], f"RSNA score on {settings.n_test} held-out test images")
    atomic_write_bytes(out / "compare.png", chart)


def run_compare(out: Path, settings: CompareSettings = CompareSettings(), log: Callable[[str], None] = print) -> list[Row]:
    """Run everything into ``out`` (``rsna/``, ``dataset/``, ``runs/``, ``raw/``) and write the table there."""
    from converters.rsna import ConvertSettings
    from converters.synthetic import synthetic_dataset

    from ..data.dataset import DATA_YAML, ConvertedDataset
    from ..predict.run import predict_folder
    from ..train.run import train

    started = time.perf_counter()
    out = Path(out).absolute()
    raw_dir = out / "raw"
    rows = check_rows(settings.rows)
    rsna, dataset_root = synthetic_dataset(
        out, n_train=settings.n_train, n_test=settings.n_test, dicom_size=settings.dicom_size, preset=settings.preset,
        settings=ConvertSettings(imgsz=settings.imgsz, val_fraction=settings.val_fraction, seed=settings.seed), steps=3, log=log,
    )  # fmt: skip
    dataset = ConvertedDataset.from_yaml(dataset_root / DATA_YAML)
    val_images = dataset.listed("val")
    sizes = dataset.original_sizes(val_images)
    train_truth = load_scoring_set(rsna / "stage_2_train_labels.csv").boxes
    test_truth = load_scoring_set(rsna / "stage_2_test_labels.csv").boxes
    log(f"[3/3] training, tuning on {len(val_images)} validation images and scoring on {settings.n_test} test images: {', '.join(rows)}")
    results = []
    for row in rows:
        arch, model, epochs, model_name = settings.plan(row)
        log(f"      {row}: training {model_name} for {epochs} epochs")
        clock = time.perf_counter()
        trained = train(
            dataset, model, arch=arch, imgsz=settings.imgsz, epochs=epochs, batch=settings.batch, device=settings.device,
            name=row, project=out / "runs", overrides={"exist_ok": True, "seed": settings.seed},
        )  # fmt: skip
        train_s = time.perf_counter() - clock
        common = dict(imgsz=settings.imgsz, device=settings.device, batch=settings.batch, progress=False)
        val_raw, test_raw = raw_dir / f"{row}-val.parquet", raw_dir / f"{row}-test.parquet"
        predict_folder(trained.best, dataset_root / "images" / "val", val_raw.with_suffix(".csv"), save_raw=val_raw, original_sizes=sizes, **common)
        report = predict_folder(trained.best, rsna / "stage_2_test_images", test_raw.with_suffix(".csv"), save_raw=test_raw, **common)
        tuned = tune(read_raw(val_raw), train_truth)
        score = score_config(read_raw(test_raw), test_truth, tuned.best).score
        val_score = tuned.best_result.score
        results.append(Row(row, model_name, epochs, score, val_score, train_s, report.steady_images_per_s, tuned.best))
        log(f"      {row}: test score {score:.4f} (validation {val_score:.4f}), trained in {train_s:.0f} s, predicts {report.steady_images_per_s:.1f} images/s")
    write_outputs(out, results, settings, len(val_images))
    log(f"comparison finished in {(time.perf_counter() - started) / 60:.1f} min -> {out / 'compare.md'}")
    return results
