"""Shared by the benchmarks: cached synthetic DICOM folders, a peak-memory sampler and the model-only timing."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

CACHE = Path(tempfile.gettempdir()) / "pneumo-yolo-bench"


def synthetic_dicoms(n: int, seed: int = 0) -> Path:
    """An RSNA-format folder of ``n`` synthetic 1024² training DICOMs, made once and cached."""
    from pneumo_yolo.synth import make_rsna_like

    root = CACHE / f"rsna-n{n}-seed{seed}"
    if not (root / "stage_2_train_labels.csv").is_file():
        make_rsna_like(root, n, seed=seed, overwrite=True, progress=False)
    return root


def model_only_ms(detector: Any, images: list[Any], batch: int) -> float:
    """Milliseconds per image of ``detector.detect`` on decoded ``images``, ``batch`` at a time, after one warm-up batch."""
    detector.detect(images[:batch])
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        detector.detect(images[start : start + batch])
    return (time.perf_counter() - started) * 1000 / len(images)


class PeakMemory:
    """Sample the memory of this process (or of process ``pid``) and all its children; ``peak_mb`` (and ``peak_pss_mb``) after the block.

    ``peak_mb`` sums each process's resident set (RSS), so a shared library's pages count once in
    every process that maps them; ``peak_pss_mb`` sums the proportional set sizes (shared pages
    split between their processes, read from ``/proc/PID/smaps_rollup``; 0 where there is none).
    RSS is read every ``interval_s`` and PSS every ``pss_every`` samples, so that sampling takes
    about 3 % of one core from the work it measures: reading the RSS of a small process tree
    takes about 1.4 ms, reading ``smaps_rollup`` of a process that imported torch about 11 ms.

    >>> with PeakMemory() as memory:  # doctest: +SKIP
    ...     work()
    >>> memory.peak_mb  # doctest: +SKIP
    """

    def __init__(self, interval_s: float = 0.05, pss_every: int = 20, pid: int | None = None) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self, with_pss: bool) -> tuple[int, int]:
        try:
            me = psutil.Process(self.pid)
        except psutil.Error:
            return 0, 0
        rss = pss = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                rss += process.memory_info().rss
                pss += _pss(process.pid) if with_pss else 0
            except psutil.Error:
                continue
        return rss, pss

    def _sample(self) -> None:
        for count in itertools.count():
            rss, pss = self._tree(with_pss=count % self.pss_every == 0)
            self.peak_bytes = max(self.peak_bytes, rss)
            self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def peak_pss_mb(self) -> float:
        return self.peak_pss_bytes / 2**20


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (0 where ``smaps_rollup`` cannot be read)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
