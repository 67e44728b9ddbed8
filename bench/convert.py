"""Benchmark of ``convert`` against a naive single-process loop, on the same synthetic DICOMs.

Run: ``.venv/bin/python bench/convert.py [--n 1000] [--imgsz 512] [--workers 2]``.

The naive loop is what a plain script does: ``dcmread → pixel_array → cv2.resize → cv2.imwrite``.
Both write PNGs at the same size; peak memory is the resident memory of the whole process tree
(pool workers included), sampled every 20 ms. Goals on 2 cores at 512: ≥150 DICOMs/s, ≥1.7× the
naive loop, peak memory < 1 GB whatever N is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PeakMemory, synthetic_dicoms  # noqa: E402

from converters.rsna import ConvertSettings, convert_rsna  # noqa: E402


def naive_loop(dicoms: list[Path], out: Path, imgsz: int) -> None:
    import cv2
    import pydicom

    for path in dicoms:
        pixels = pydicom.dcmread(path).pixel_array
        scale = imgsz / max(pixels.shape)
        resized = cv2.resize(
            pixels, (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(out / f"{path.stem}.png"), resized)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000], help="DICOM counts to convert (one run each)")
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    for n in args.n:
        rsna = synthetic_dicoms(n)
        dicoms = sorted((rsna / "stage_2_train_images").glob("*.dcm"))
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            with PeakMemory() as memory:
                started = time.perf_counter()
                report = convert_rsna(
                    rsna / "stage_2_train_images",
                    rsna / "stage_2_train_labels.csv",
                    scratch / "converted",
                    settings=ConvertSettings(imgsz=args.imgsz),
                    workers=args.workers,
                    progress=False,
                )
                ours = time.perf_counter() - started
            assert report.failed == 0 and report.converted == n, report.errors[:3]
            (scratch / "naive").mkdir()
            started = time.perf_counter()
            naive_loop(dicoms, scratch / "naive", args.imgsz)
            naive = time.perf_counter() - started
            shutil.rmtree(scratch / "naive")
        print(
            f"N={n} imgsz={args.imgsz} workers={args.workers}: convert {n / ours:.1f} DICOMs/s "
            f"(wall {ours:.2f} s, incl. pool start and CSV parsing) | naive loop {n / naive:.1f} DICOMs/s | "
            f"ratio {naive / ours:.2f}x | peak memory {memory.peak_mb:.0f} MB"
        )


if __name__ == "__main__":
    main()
