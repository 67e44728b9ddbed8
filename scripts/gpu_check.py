"""GPU check: synthesise data, train 2 epochs at 512 with AMP on the GPU, predict, print images/s.

Run on a CUDA machine (no internet needed, installs nothing):

    .venv/bin/python scripts/gpu_check.py [--work DIR] [--n 400] [--n-test 200] [--epochs 2] [--imgsz 512] [--device 0]

``--device cpu --n 40 --n-test 10 --imgsz 128 --epochs 1`` runs the same steps on a CPU as a smoke test.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--n", type=int, default=400, help="synthetic training radiographs")
    parser.add_argument("--n-test", type=int, default=200, help="synthetic test radiographs to predict")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="0")
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="pneumo-gpu-check-"))).absolute()

    from converters.rsna import ConvertSettings, convert_rsna
    from pneumo_yolo.model.offline import import_ultralytics
    from pneumo_yolo.model.prediction import predict_folder
    from pneumo_yolo.synth import make_rsna_like
    from pneumo_yolo.model.train import train

    import_ultralytics()
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False)")
    if args.device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    started = time.perf_counter()
    make_rsna_like(work / "rsna", args.n, seed=0, n_test=args.n_test, overwrite=True, progress=False)
    print(f"synth: {args.n} + {args.n_test} DICOMs in {time.perf_counter() - started:.1f} s")

    report = convert_rsna(
        work / "rsna" / "stage_2_train_images", work / "rsna" / "stage_2_train_labels.csv", work / "dataset",
        settings=ConvertSettings(imgsz=args.imgsz), overwrite=True, progress=False,
    )  # fmt: skip
    print(f"convert: {report.converted + report.skipped} images at {report.images_per_s:.1f} images/s")

    result = train(
        work / "dataset" / "data.yaml", "yolo11n.yaml", imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
        device=args.device, project=work / "runs", name="gpu_check", overrides={"amp": True, "exist_ok": True},
    )  # fmt: skip
    with (result.run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    train_seconds = float(rows[-1]["time"])
    n_train = len(list((work / "dataset" / "images" / "train").glob("*.png")))
    print(f"train: {args.epochs} epochs x {n_train} images in {train_seconds:.1f} s (validation included): "
          f"{args.epochs * n_train / train_seconds:.1f} training images/s, AMP requested")
    print(result.final_line())

    predicted = predict_folder(
        result.best, work / "rsna" / "stage_2_test_images", work / "submission.csv",
        imgsz=args.imgsz, batch=args.batch, device=args.device, workers=2, progress=False,
    )  # fmt: skip
    print(f"predict: {predicted.n_images} DICOMs -> CSV at {predicted.images_per_s:.1f} images/s end to end "
          f"({len(predicted.errors)} errors)")
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()
