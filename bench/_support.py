"""Shared by the benchmarks: cached synthetic DICOM folders and a peak-memory sampler."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import psutil

CACHE = Path(tempfile.gettempdir()) / "pneumo-yolo-bench"


def synthetic_dicoms(n: int, seed: int = 0) -> Path:
    """An RSNA-format folder of ``n`` synthetic 1024² training DICOMs, made once and cached."""
    from pneumo_yolo.synth import make_rsna_like

    root = CACHE / f"rsna-n{n}-seed{seed}"
    if not (root / "stage_2_train_labels.csv").is_file():
        make_rsna_like(root, n, seed=seed, overwrite=True, progress=False)
    return root


class PeakMemory:
    """Sample the resident memory of this process and all its children; ``peak_mb`` after the block.

    >>> with PeakMemory() as memory:  # doctest: +SKIP
    ...     work()
    >>> memory.peak_mb  # doctest: +SKIP
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree_rss(self) -> int:
        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20
