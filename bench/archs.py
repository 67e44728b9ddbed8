"""Benchmark of each arch's predict path on the CPU: images/s of ``predict_folder`` from DICOMs.

Run: ``.venv/bin/python bench/archs.py [--n 64] [--imgsz 256] [--batch 16] [--archs yolo11 unet ...]``.

Every arch runs with random weights (speed does not depend on training): yolo11n and
yolov3-tiny as Ultralytics builds them for one channel and one class, and the Faster R-CNN,
Mask R-CNN and U-Net checkpoints as ``train --arch`` saves them. Each goes through the same
pipeline, :func:`pneumo_yolo.predict.run.predict_folder`: the DICOMs are decoded once, in a
background process, at the model's size; detection; post-processing; the CSV. "steady" is the
images/s once the model is loaded, "model only" times ``detect`` alone on images decoded
beforehand.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import CACHE, synthetic_dicoms  # noqa: E402

ARCHS = ("yolo11", "yolov3", "faster-rcnn", "mask-rcnn", "unet")
YOLO_CONFIGS = {"yolo11": "yolo11n.yaml", "yolov3": "yolov3-tiny.yaml"}


def random_weights(row: str, imgsz: int) -> Path:
    """A randomly initialised weights file of ``row``, saved as training would save it."""
    import torch

    path = CACHE / f"{row}-1ch-{imgsz}.pt"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    if row in YOLO_CONFIGS:
        from pneumo_yolo.runtime.offline import import_ultralytics

        import_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(YOLO_CONFIGS[row], ch=1, nc=1, verbose=False)
        model.args = {"imgsz": imgsz}
        torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "detect"}}, path)
        return path
    from pneumo_yolo.nets.archs import build_model
    from pneumo_yolo.nets.checkpoints import save_checkpoint

    return save_checkpoint(path, row, imgsz, build_model(row, imgsz))


def measure(row: str, n: int, imgsz: int, batch: int) -> dict:
    """Model-only and end-to-end images/s of one arch."""
    from pneumo_yolo.nets.load import load_detector
    from pneumo_yolo.predict.decoding import list_inputs, load_image
    from pneumo_yolo.predict.device import PredictSettings
    from pneumo_yolo.predict.run import predict_folder
    from pneumo_yolo.runtime.devices import CPU

    source = synthetic_dicoms(n) / "stage_2_train_images"
    weights = random_weights(row, imgsz)
    detector = load_detector(weights, imgsz=imgsz, device=CPU)
    images = [load_image(path, imgsz).pixels for path in list_inputs(source)]
    detector.detect(images[:batch])
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        detector.detect(images[start : start + batch])
    model_only = len(images) / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as scratch:
        report = predict_folder(
            source,
            Path(scratch) / "submission.csv",
            PredictSettings(weights=(weights,), imgsz=imgsz, batch=batch, progress=False),
            devices=CPU,
        )
    return {
        "arch": row,
        "n": n,
        "imgsz": imgsz,
        "model_only": model_only,
        "steady": report.steady_images_per_s,
        "startup_s": report.startup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    args = parser.parse_args()
    import torch

    from pneumo_yolo.runtime.devices import cpu_count

    torch.set_num_threads(cpu_count())
    print(
        f"{'arch':<12} {'model only':>12} {'end to end':>12}  (images/s, {args.n} DICOMs at {args.imgsz} px, batch {args.batch}, {cpu_count()} CPU threads)"
    )
    rows = []
    for row in args.archs:
        result = measure(row, args.n, args.imgsz, args.batch)
        rows.append(result)
        print(f"{row:<12} {result['model_only']:>12.1f} {result['steady']:>12.1f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
