"""Benchmark of ``predict``: DICOM folder → submission CSV, against the model alone.

Run: ``.venv/bin/python bench/predict.py [--n 100 1000] [--imgsz 512] [--batch 32]``.

The model is yolo11n (single channel, one class, as ``train`` builds it from our data.yaml),
with random weights: its speed does not depend on training. "Model only" times
:meth:`pneumo_yolo.model.predict.Detector.detect` on batches decoded beforehand; "end to end" times
:func:`pneumo_yolo.model.predict.predict_folder` from the DICOM files, decoding, post-processing and
writing the CSV included, both once the model is loaded and with the start-up (imports, model
loading) counted. Each N runs in its own process, so its peak memory (process tree,
DataLoader workers included) is its own. Goals: end to end ≥ 0.85 × model only; peak memory
flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import CACHE, PeakMemory, synthetic_dicoms  # noqa: E402


def random_weights(imgsz: int) -> Path:
    """A yolo11n detector with 1 input channel and 1 class, saved like a trained checkpoint."""
    path = CACHE / f"yolo11n-1ch-{imgsz}.pt"
    if not path.is_file():
        import torch

        from pneumo_yolo.model.offline import import_ultralytics

        import_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
        model.args = {"imgsz": imgsz}
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "detect"}}, path)
    return path


def measure(n: int, imgsz: int, batch: int, workers: int) -> dict:
    """One N: model-only and end-to-end images/s, and the end-to-end peak memory."""
    from pneumo_yolo.model.inputs import list_inputs, load_image
    from pneumo_yolo.model.predict import Detector, predict_folder

    source = synthetic_dicoms(n) / "stage_2_train_images"
    weights = random_weights(imgsz)
    detector = Detector(weights, imgsz=imgsz, device="cpu")
    paths = list_inputs(source)
    images = [load_image(path, imgsz).pixels for path in paths[: min(n, 256)]]
    detector.detect(images[:batch])
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        detector.detect(images[start : start + batch])
    model_only = len(images) / (time.perf_counter() - started)
    del images  # only the end-to-end run's own memory counts below
    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        report = predict_folder(weights, source, Path(scratch) / "submission.csv", imgsz=imgsz, batch=batch, device="cpu", workers=workers, progress=False)
    return {
        "n": n,
        "model_only": model_only,
        "end_to_end": report.images_per_s,
        "steady": report.steady_images_per_s,
        "startup_s": report.startup_s,
        "peak_mb": memory.peak_mb,
        "errors": len(report.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes beside inference")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.imgsz, args.batch, args.workers)))
        return
    for n in args.n:
        synthetic_dicoms(n)
        command = [sys.executable, __file__, "--one", str(n), "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--workers", str(args.workers)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        model_only = result["model_only"]
        print(
            f"N={n} imgsz={args.imgsz} batch={args.batch} CPU: model only {model_only:.1f} img/s | "
            f"end to end {result['steady']:.1f} img/s once the model is loaded ({result['steady'] / model_only:.2f} of model only), "
            f"{result['end_to_end']:.1f} img/s with the {result['startup_s']:.1f} s start-up ({result['end_to_end'] / model_only:.2f}) | "
            f"peak memory {result['peak_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
