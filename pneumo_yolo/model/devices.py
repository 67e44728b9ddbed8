"""Which devices a run uses, how many decoding processes feed each one, and how many images the model takes at once.

Pure functions (no torch import): ``--device`` is split into devices, ``--workers auto``
becomes a number of decoding processes per device from the cores this process may use, and
the default ``--batch`` depends on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_WORKERS_PER_DEVICE = 8
"""Decoding processes per GPU at most. One core decodes about 300 RSNA DICOMs/s (2–4 ms each), so
8 processes supply about 2,400 images/s: more than a small YOLO at 512 px takes on one H100
(several hundred to a thousand), and each process costs about 100 MB of memory."""

GPU_BATCH = 32
"""Images per model call on a GPU."""
CPU_BATCH = 4
"""Images per model call on the CPU. Each image of a batch holds about 20 MB of activations
(yolo11n at 512 px): a batch of 4 peaks about 110 MB lower than one of 8, and on 2 cores it was
also the fastest of 1, 2, 4, 8 and 16 (yolo11n at 512 px, back-to-back in one process: 4 beat 8
in 6 of 6 rounds, 30 against 25 images/s at the median)."""


def devices_of(device: str | None) -> list[str | None]:
    """The devices of ``--device``: ``"0,1"`` → ``["0", "1"]``; ``None`` (the default device) → ``[None]``.

    >>> devices_of("0, 1"), devices_of("cpu"), devices_of(None)
    (['0', '1'], ['cpu'], [None])
    """
    return [part.strip() for part in device.split(",")] if device else [None]


def auto_workers(cpu_count: int, devices: Sequence[str]) -> int:
    """Decoding processes per device for ``--workers auto``; ``devices`` are resolved (``"cpu"``, ``"0"``, ``"1"``…).

    - On the CPU the model itself uses every core, so one decoding process runs beside it
      (none on a single core, or with more CPU device processes than cores): decoding
      costs a few ms an image where the model costs tens of ms.
    - On GPUs decoding is the bottleneck: each device process keeps one core for itself
      (feeding the GPU, post-processing, writing) and the other cores are shared equally
      between the devices, at least one and at most :data:`MAX_WORKERS_PER_DEVICE` each.

    >>> auto_workers(2, ["cpu"]), auto_workers(16, ["cpu"]), auto_workers(1, ["cpu"])
    (1, 1, 0)
    >>> auto_workers(16, ["0"]), auto_workers(16, ["0", "1", "2", "3"]), auto_workers(2, ["0"]), auto_workers(4, ["0", "1", "2", "3"])
    (8, 3, 1, 1)
    """
    if not devices:
        raise ValueError("no device")
    if all(device == "cpu" for device in devices):
        return 1 if cpu_count > len(devices) else 0
    spare = (cpu_count - len(devices)) // len(devices)
    return max(1, min(MAX_WORKERS_PER_DEVICE, spare))


def auto_batch(device: str) -> int:
    """Images per model call (and per decoding task) when ``--batch`` is not given, on a resolved ``device``.

    >>> auto_batch("cpu"), auto_batch("0")
    (4, 32)
    """
    return CPU_BATCH if device == "cpu" else GPU_BATCH
