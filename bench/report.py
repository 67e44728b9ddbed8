"""Benchmark of the result outputs on N synthetic RSNA DICOMs (1024², real format): the HTML report and the SR/GSPS.

Run: ``.venv/bin/python bench/report.py [--n 1000] [--no-dciodvfy]``.

Predictions come from a simulated detector (no model: these outputs do not depend on it):
80 % of the true boxes found with jitter, and false positives on a quarter of the images,
with random confidences. Prints:

- ``pneumo-yolo report``'s run time (wall and CPU: the CPU time stays put on a shared machine)
  and the size of the report folder, with labels and without;
- the time to write every image's SR (and GSPS where it has boxes), as ``predict --dicom-out`` does;
- the ``dciodvfy`` summary over all those objects: files with errors, error and warning
  lines, and the distinct warnings (skipped when dicom3tools is not installed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import synthetic_dicoms  # noqa: E402


def simulated_predictions(truth: dict[str, np.ndarray], size: float = 1024.0, seed: int = 0) -> dict[str, np.ndarray]:
    """``conf x y w h`` rows per patient: jittered true boxes (80 %) and false positives (25 % of images), inside the image."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for pid, boxes in truth.items():
        found = boxes[rng.random(len(boxes)) < 0.8]
        found = found + rng.normal(0, 15, found.shape)
        if rng.random() < 0.25:
            wh = rng.uniform(60, 300, (1, 2))
            found = np.r_[found, np.c_[rng.uniform(0, size - wh), wh]]
        x1y1 = found[:, :2].clip(0, size - 2)
        x2y2 = np.minimum(found[:, :2] + found[:, 2:].clip(1, None), size).clip(x1y1 + 1, None)
        predictions[pid] = np.c_[np.round(rng.uniform(0.05, 1.0, len(found)), 4), np.round(np.c_[x1y1, x2y2 - x1y1], 1)]
    return predictions


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes and number of files below ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def time_report(out: Path, images: dict, predictions: dict, truth: dict | None) -> str:
    from pneumo_yolo.report import Predictions, write_report

    start, cpu = time.perf_counter(), time.process_time()
    summary = write_report(out, images, Predictions(predictions), truth)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    size, files = folder_size(out)
    return f"{elapsed:.1f} s ({cpu:.1f} s CPU), {size / 2**20:.1f} MiB in {files} files ({summary.n_overlays} overlays)"


def checker_summary(dciodvfy: str, paths: list[Path]) -> str:
    """dciodvfy over every file: files with errors, error and warning lines, the distinct warnings."""

    def check(path: Path) -> list[str]:
        run = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True, check=False)
        return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Error", "Warning"))]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check, paths))
    errors = [line for lines in results for line in lines if line.startswith("Error")]
    warnings = [line for lines in results for line in lines if line.startswith("Warning")]
    kinds = Counter(re.sub(r"= <[^>]*>", "= <…>", line) for line in warnings)
    lines = [
        f"dciodvfy on {len(paths):,} objects: {sum(any(line.startswith('Error') for line in r) for r in results)} with errors, "
        f"{len(errors)} error lines, {len(warnings):,} warning lines"
    ]
    lines += [f"  error: {line}" for line in sorted(set(errors))[:10]]
    lines += [f"  {count:5d} × {kind}" for kind, count in kinds.most_common()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="synthetic DICOMs")
    parser.add_argument("--no-dciodvfy", action="store_true", help="skip the dciodvfy check")
    args = parser.parse_args()

    from pneumo_yolo.data.labels import read_labels
    from pneumo_yolo.dicom.results import ResultsWriter

    root = synthetic_dicoms(args.n)
    truth = read_labels(root / "stage_2_train_labels.csv").boxes
    images = {path.stem: path for path in sorted((root / "stage_2_train_images").glob("*.dcm"))}
    predictions = simulated_predictions(truth)
    n_boxes = sum(len(rows) for rows in predictions.values())
    print(
        f"{len(images):,} DICOMs 1024², {sum(len(b) for b in truth.values()):,} true boxes, {n_boxes:,} predicted boxes"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"report with labels:    {time_report(tmp / 'labelled', images, predictions, truth)}")
        print(f"report without labels: {time_report(tmp / 'unlabelled', images, predictions, None)}")

        writer = ResultsWriter(tmp / "dicom")
        start, cpu = time.perf_counter(), time.process_time()
        written = [path for pid, path in images.items() for path in writer.write(path, predictions[pid])]
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        size, _ = folder_size(tmp / "dicom")
        n_sr = sum(p.parent.name == "sr" for p in written)
        print(
            f"SR + GSPS: {n_sr:,} SR and {len(written) - n_sr:,} GSPS in {elapsed:.1f} s ({cpu:.1f} s CPU, "
            f"{len(images) / elapsed:.0f} images/s), {size / 2**20:.1f} MiB"
        )

        dciodvfy = shutil.which("dciodvfy")
        if args.no_dciodvfy or not dciodvfy:
            print("dciodvfy: skipped" + ("" if args.no_dciodvfy else " (not installed: apt-get install dicom3tools)"))
        else:
            print(checker_summary(dciodvfy, written))


if __name__ == "__main__":
    main()
