"""Benchmark of ``predict``: DICOM folder → submission CSV, against the model alone, and the pipeline's ceiling.

Run: ``.venv/bin/python bench/predict.py [--n 1000 10000] [--imgsz 512] [--batch 32] [--workers auto]``
and ``.venv/bin/python bench/predict.py --null-model [--n 1000] [--ceiling-workers 0 1 2]``.

The model is yolo11n (single channel, one class, as ``train`` builds it from our data.yaml),
with random weights: its speed does not depend on training. "Model only" times
:meth:`pneumo_yolo.nets.detector.Detector.detect` on batches decoded beforehand; "end to end" times
:func:`pneumo_yolo.predict.run.predict_folder` from the DICOM files, decoding, post-processing and
writing the CSV included, both once the model is loaded and with the start-up (imports, model
loading) counted; it runs first, as the command would, so the model-only run leaves nothing in
its memory figure. Each N runs in its own process, so its peak memory (of the process tree,
decoding workers included: RSS every 50 ms, and PSS, which counts shared pages once, every second) is its own. Goals: end to end
≥ 0.85 × model only; peak memory under 1 GB and flat as N grows.

``--null-model`` replaces the network by a detector that returns three fixed boxes at once, so
what is timed is what a GPU would see: decoding, batching, post-processing and writing (the
submission and a raw table) alone, with W decoding processes. It is compared with W × the rate at which one core decodes
(``load_image`` in a loop, measured just before in the same process; W = 0 decodes in the
predicting process and is compared with one core). Goal: ≥ 0.85 × W × that rate, as far as the cores allow.
The CPU time of the predicting process and of its decoding processes, per image, and the share of
all cores that the run kept busy (start-up included), tell whether a shortfall is waiting or a
lack of cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import CACHE, PeakMemory, model_only_ms, synthetic_dicoms  # noqa: E402

from pneumo_yolo.predict.device import PredictSettings  # noqa: E402
from pneumo_yolo.runtime.devices import CPU, CPU_BATCH, GPU_BATCH  # noqa: E402

NULL_BOXES = np.array([[100.0, 120.0, 300.0, 420.0], [600.0, 150.0, 820.0, 500.0], [110.0, 130.0, 290.0, 410.0]])
NULL_SCORES = np.array([0.9, 0.6, 0.3])


def random_weights(imgsz: int) -> Path:
    """A yolo11n detector with 1 input channel and 1 class, saved like a trained checkpoint."""
    path = CACHE / f"yolo11n-1ch-{imgsz}.pt"
    if not path.is_file():
        import torch

        from pneumo_yolo.runtime.offline import import_ultralytics

        import_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
        model.args = {"imgsz": imgsz}
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "detect"}}, path)
    return path


class NullEnsemble:
    """Stands in for :class:`~pneumo_yolo.predict.ensemble.Ensemble`: the same three boxes for every image, at once."""

    passes = 1

    def __init__(self, imgsz: int) -> None:
        self.imgsz = imgsz

    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [
            (NULL_BOXES * image.shape[1] / 1024, NULL_SCORES, np.zeros(len(NULL_SCORES), np.int64)) for image in images
        ]

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        return np.full(len(images), np.nan)


def decode_rate(source: Path, imgsz: int, n: int = 200) -> float:
    """Images per second that one core decodes (DICOM → model input), one after another.

    OpenCV runs on one thread here, as in the decoding processes: with its default thread pool
    the resize alone uses every core, and the rate is no longer one core's.
    """
    import cv2

    from pneumo_yolo.predict.decoding import list_inputs, load_image

    paths = list_inputs(source)[:n]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        load_image(paths[0], imgsz)
        started = time.perf_counter()
        for path in paths:
            load_image(path, imgsz)
        return len(paths) / (time.perf_counter() - started)
    finally:
        cv2.setNumThreads(threads)


def measure(n: int, imgsz: int, batch: int | None, workers: int | None) -> dict:
    """One N: model-only and end-to-end images/s, and the end-to-end peak memory."""
    from pneumo_yolo.nets.yolo import YoloDetector
    from pneumo_yolo.predict.decoding import list_inputs, load_image
    from pneumo_yolo.predict.run import predict_folder

    source = synthetic_dicoms(n) / "stage_2_train_images"
    weights = random_weights(imgsz)
    with (
        tempfile.TemporaryDirectory() as scratch,
        PeakMemory() as memory,
    ):  # first, so that nothing of the model-only run counts
        report = predict_folder(
            source,
            Path(scratch) / "submission.csv",
            PredictSettings(weights=(weights,), imgsz=imgsz, batch=batch, workers=workers, progress=False),
            devices=CPU,
        )
    detector = YoloDetector(weights, imgsz=imgsz, device=CPU)
    images = [load_image(path, imgsz).pixels for path in list_inputs(source)[: min(n, 256)]]
    model_only = 1000 / model_only_ms(detector, images, batch or CPU_BATCH)
    return {
        "n": n,
        "model_only": model_only,
        "end_to_end": report.images_per_s,
        "steady": report.steady_images_per_s,
        "startup_s": report.startup_s,
        "workers": report.workers,
        "batch": report.batch,
        "peak_mb": memory.peak_mb,
        "peak_pss_mb": memory.peak_pss_mb,
        "errors": len(report.errors),
    }


def measure_null(n: int, imgsz: int, batch: int | None, workers: int) -> dict:
    """One N and W with the null model: images/s of the pipeline alone, the CPU it used, and its peak memory."""
    from pneumo_yolo.predict import device as one_device
    from pneumo_yolo.predict.run import predict_folder

    source = synthetic_dicoms(n) / "stage_2_train_images"
    one_device.load_ensemble = lambda *args, imgsz=None, **kwargs: NullEnsemble(imgsz)
    rate = decode_rate(
        source, imgsz
    )  # just before, in this process: the load of a shared machine changes by the minute
    before = os.times()
    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        report = predict_folder(
            source,
            Path(scratch) / "submission.csv",
            PredictSettings(
                weights=(Path("null.pt"),), imgsz=imgsz, batch=batch or GPU_BATCH, workers=workers, progress=False
            ),
            devices=CPU,
            save_raw=Path(scratch) / "raw.parquet",
        )
    after = os.times()
    return {
        "n": n,
        "workers": workers,
        "steady": report.steady_images_per_s,
        "decode_rate": rate,
        "elapsed_s": report.elapsed_s,
        "cpu_s": after.user + after.system - before.user - before.system,
        "children_cpu_s": after.children_user + after.children_system - before.children_user - before.children_system,
        "peak_mb": memory.peak_mb,
        "peak_pss_mb": memory.peak_pss_mb,
    }


def run_one(args: list[str]) -> dict:
    """This script in a fresh process (``--one …``); its JSON result."""
    result = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def ceiling(args: argparse.Namespace) -> None:
    """The null-model table: W, images/s, the ratio to W × the single-core decode rate, and the CPU it took."""
    from pneumo_yolo.runtime.devices import cpu_count

    batch = ["--batch", str(args.batch)] if args.batch else []
    cores = cpu_count()
    for n in args.n:
        print(f"null model, N={n} imgsz={args.imgsz} batch={args.batch or GPU_BATCH}, {cores} cores")
        print(
            "| W | images/s | one core decodes (img/s) | ratio to W × single-core decode "
            "| CPU ms per image: predicting process + decoding processes | cores busy | peak memory of the process tree, RSS / PSS |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for workers in args.ceiling_workers:
            result = run_one(
                ["--one", str(n), "--imgsz", str(args.imgsz), "--workers", str(workers), "--null-model", *batch]
            )
            ratio = result["steady"] / (max(1, workers) * result["decode_rate"])
            busy = (result["cpu_s"] + result["children_cpu_s"]) / (result["elapsed_s"] * cores)
            print(
                f"| {workers} | {result['steady']:.1f} | {result['decode_rate']:.1f} | {ratio:.2f} "
                f"| {1000 * result['cpu_s'] / n:.2f} + {1000 * result['children_cpu_s'] / n:.2f} | {busy:.0%} "
                f"| {result['peak_mb']:.0f} / {result['peak_pss_mb']:.0f} MB |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument(
        "--batch",
        type=int,
        help="images per model call (default: predict's, 4 on the CPU; 32 with --null-model, as on a GPU)",
    )
    parser.add_argument("--workers", default="auto", help="decoding processes beside inference: auto or a number")
    parser.add_argument(
        "--null-model", action="store_true", help="the pipeline's ceiling: a detector that returns at once"
    )
    parser.add_argument(
        "--ceiling-workers", type=int, nargs="+", help="W values of --null-model (default: 0 to the number of cores)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workers = None if args.workers == "auto" else int(args.workers)
    if args.one:
        print(
            json.dumps(
                measure_null(args.one, args.imgsz, args.batch, workers)
                if args.null_model
                else measure(args.one, args.imgsz, args.batch, workers)
            )
        )
        return
    if args.null_model:
        from pneumo_yolo.runtime.devices import cpu_count

        args.ceiling_workers = args.ceiling_workers or list(range(cpu_count() + 1))
        ceiling(args)
        return
    for n in args.n:
        synthetic_dicoms(n)
        batch = ["--batch", str(args.batch)] if args.batch else []
        result = run_one(["--one", str(n), "--imgsz", str(args.imgsz), "--workers", args.workers, *batch])
        model_only = result["model_only"]
        print(
            f"N={n} imgsz={args.imgsz} batch={result['batch']} CPU, {result['workers']} decoding process(es): model only {model_only:.1f} img/s | "
            f"end to end {result['steady']:.1f} img/s once the model is loaded ({result['steady'] / model_only:.2f} of model only), "
            f"{result['end_to_end']:.1f} img/s with the {result['startup_s']:.1f} s start-up ({result['end_to_end'] / model_only:.2f}) | "
            f"peak memory of the process tree {result['peak_mb']:.0f} MB RSS, {result['peak_pss_mb']:.0f} MB PSS",
            flush=True,
        )


if __name__ == "__main__":
    main()
