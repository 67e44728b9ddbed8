"""GPU check: synthesise data, train 2 epochs at 512 with AMP on the GPU, predict, print images/s and GPU utilisation.

Run on a CUDA machine (no internet needed, installs nothing):

    .venv/bin/python scripts/gpu_check.py [--work DIR] [--n 400] [--n-test 200] [--epochs 2] [--imgsz 512] [--device 0]

``--device cpu --n 40 --n-test 10 --imgsz 128 --epochs 1`` runs the same steps on a CPU as a smoke test.

predict runs with ``--workers auto`` and the default batch; while it runs, the utilisation of
the first GPU of ``--device`` is sampled every 0.2 s (``torch.cuda.utilization``, which needs
pynvml, else ``nvidia-smi``), and its mean and maximum are printed: a GPU that waits on decoding
shows well under 100%.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path


def utilisation_reader(device: str) -> tuple[Callable[[], float], str] | None:
    """A function returning the GPU's current utilisation in %, and its source; ``None`` where none works."""
    import torch

    from pneumo_yolo.runtime.devices import Devices

    index = int(Devices.parse(device).first)
    try:
        torch.cuda.utilization(index)
        return (lambda: float(torch.cuda.utilization(index))), "torch.cuda.utilization"
    except Exception:  # torch raises ModuleNotFoundError without pynvml, and driver errors of its own
        pass
    if shutil.which("nvidia-smi"):
        command = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        return (
            lambda: float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())
        ), "nvidia-smi"
    return None


class UtilisationSampler:
    """Sample a GPU's utilisation every ``interval_s`` in a thread while the block runs."""

    def __init__(self, read: Callable[[], float], interval_s: float = 0.2) -> None:
        self.read, self.interval_s, self.samples = read, interval_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self.read())
            except Exception:  # a failed read is a lost sample, not a failed check
                continue

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
    from pneumo_yolo.predict.device import PredictSettings
    from pneumo_yolo.predict.run import predict_folder
    from pneumo_yolo.runtime.devices import Devices
    from pneumo_yolo.runtime.offline import import_ultralytics
    from pneumo_yolo.synth import make_rsna_like
    from pneumo_yolo.train.common import TrainSettings
    from pneumo_yolo.train.run import train

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
        work / "rsna" / "stage_2_train_images",
        work / "rsna" / "stage_2_train_labels.csv",
        work / "dataset",
        settings=ConvertSettings(imgsz=args.imgsz),
        overwrite=True,
        progress=False,
    )
    print(f"convert: {report.converted + report.skipped} images at {report.images_per_s:.1f} images/s")

    devices = Devices.parse(args.device).resolve()
    settings = TrainSettings(
        model="yolo11n.yaml",
        imgsz=args.imgsz,
        epochs=args.epochs,
        batch=args.batch,
        devices=devices,
        project=work / "runs",
        name="gpu_check",
        overrides={"amp": True, "exist_ok": True},
    )
    result = train(work / "dataset" / "data.yaml", settings)
    with (result.run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    train_seconds = float(rows[-1]["time"])
    n_train = len(list((work / "dataset" / "images" / "train").glob("*.png")))
    print(
        f"train: {args.epochs} epochs x {n_train} images in {train_seconds:.1f} s (validation included): "
        f"{args.epochs * n_train / train_seconds:.1f} training images/s, AMP requested"
    )
    print(result.final_line())

    reader = utilisation_reader(args.device) if args.device != "cpu" else None
    sampler = UtilisationSampler(reader[0]) if reader else contextlib.nullcontext()
    with sampler:
        predicted = predict_folder(
            work / "rsna" / "stage_2_test_images",
            work / "submission.csv",
            PredictSettings(weights=(result.best,), imgsz=args.imgsz, progress=False),
            devices=devices,
        )
    print(
        f"predict (--workers auto: {predicted.workers} decoding processes per device, batches of {predicted.batch}): "
        f"{predicted.n_images} DICOMs -> CSV at {predicted.steady_images_per_s:.1f} images/s once the model is loaded, "
        f"{predicted.images_per_s:.1f} images/s with the {predicted.startup_s:.1f} s start-up ({len(predicted.errors)} errors)"
    )
    if args.device == "cpu":
        print("GPU utilisation: not measured (CPU run)")
    elif reader is None or not sampler.samples:
        print(
            "GPU utilisation: not available (neither torch.cuda.utilization, which needs pynvml, nor nvidia-smi worked)"
        )
    else:
        samples = sampler.samples
        print(
            f"GPU utilisation during predict, start-up included ({reader[1]}, {len(samples)} samples every 0.2 s): "
            f"mean {sum(samples) / len(samples):.0f}%, max {max(samples):.0f}%"
        )
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()
