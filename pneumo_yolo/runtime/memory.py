"""The memory one batch of a prediction or training run needs, checked against the machine's before the work starts.

A typo such as ``--imgsz 100000`` once grew a decoding process to 23 GB until the kernel killed it,
after 105 s. The sizes now have upper bounds (``--imgsz`` at most 4096), and within them
:func:`check_predict_memory` refuses a ``--batch`` whose images cannot fit, naming one that can.

The estimate is a lower bound, from measurements of yolo11n on the CPU (docs/predict.md): 70 bytes
of activations per pixel of each image of a batch, below each measured figure (19 MB per image at
512 px, 72 bytes a pixel; 75 MB at 1024, 72; 387 MB at 2048, 92), plus 85 MB per decoding process and the shared-memory buffers that hand
decoded images over, ``2W + 1`` of them for W decoding processes, each ``batch × side²`` bytes. Larger models need more, so a run
this check lets through may still not fit; one it refuses cannot.

Training on the CPU (:func:`check_train_memory`) holds every activation for the backward pass:
yolo11n at batch 8 peaked at 1.46 GB at 256 px and 2.20 GB at 512 px (maximum resident set of
``train --epochs 1 --device cpu``, measured 2026-12-06), 467 bytes per pixel of each image over
about 1.2 GB; the check counts 400 over 1.0 GB.
"""

from __future__ import annotations

from .devices import CPU_NAMES, MPS

BYTES_PER_PIXEL = 70
"""Activations per input pixel of one image while the model runs (yolo11n, float32; measured on the CPU)."""
HOST_BYTES_PER_PIXEL_ON_GPU = 6
"""What the host holds per input pixel of a batch bound for a GPU: the 3-channel uint8 copy and its letterboxed twin."""
BYTES_PER_WORKER = 85_000_000
"""One decoding process (Python, NumPy, OpenCV, pydicom: 85 MB measured, docs/predict.md)."""
TRAIN_BYTES_PER_PIXEL = 400
"""What CPU training holds per input pixel of each image of a batch (yolo11n, float32: 467 measured)."""
TRAIN_BASE_BYTES = 1_000_000_000
"""What CPU training holds whatever the batch: torch, Ultralytics, the model and its optimizer (1.2 GB measured)."""
GB = 1e9


class ResourceError(ValueError):
    """A run that would need more memory than the machine has (a usage error: the message says what to lower)."""


def decoding_bytes(batch: int, workers: int, side: int) -> int:
    """The decoding processes and their shared-memory buffers: ``2W + 1`` batches of ``side²`` bytes per image (nothing without workers).

    >>> decoding_bytes(4, 1, 1024) // 2**20
    93
    """
    return (2 * workers + 1) * batch * side * side + workers * BYTES_PER_WORKER if workers > 0 else 0


def predict_memory(batch: int, workers: int, side: int, device: str) -> tuple[int, int]:
    """``(host, accelerator)`` bytes one batch needs at ``side`` px on ``device`` (a resolved name: ``"cpu"``, ``"0"``, ``"mps"``).

    The accelerator's is 0 on the CPU, and on Apple's GPU, whose memory is the host's: there
    the host holds both the GPU's share and the host's share of a GPU run.

    >>> [round(n / 1e9, 2) for n in predict_memory(4, 1, 4096, "cpu")]
    [4.98, 0.0]
    >>> host, gpu = predict_memory(4, 1, 4096, "0")
    >>> predict_memory(4, 1, 4096, "mps") == (host + gpu, 0)
    True
    """
    pixels = batch * side * side
    if device in CPU_NAMES:
        return decoding_bytes(batch, workers, side) + pixels * BYTES_PER_PIXEL, 0
    if device == MPS:
        return decoding_bytes(batch, workers, side) + pixels * (HOST_BYTES_PER_PIXEL_ON_GPU + BYTES_PER_PIXEL), 0
    return decoding_bytes(batch, workers, side) + pixels * HOST_BYTES_PER_PIXEL_ON_GPU, pixels * BYTES_PER_PIXEL


def train_memory(batch: int, side: int) -> int:
    """Host bytes that training on the CPU needs for ``batch`` images of ``side`` px (a lower bound).

    >>> round(train_memory(16, 640) / 1e9, 1)
    3.6
    """
    return TRAIN_BASE_BYTES + batch * side * side * TRAIN_BYTES_PER_PIXEL


def check_train_memory(batch: int, side: int) -> None:
    """Raise :class:`ResourceError` when training ``batch`` images of ``side`` px on the CPU cannot fit in the host's free memory.

    A ``batch`` below 1 (Ultralytics' AutoBatch) is left to Ultralytics.
    """
    free, _ = _host_free()
    needed = train_memory(batch, side)
    if batch < 1 or free is None or needed <= free:
        return
    fit = int((free - TRAIN_BASE_BYTES) // (train_memory(1, side) - TRAIN_BASE_BYTES))
    advice = f"use --batch {fit}" if fit >= 1 else "use a smaller --imgsz"
    raise ResourceError(
        f"--batch {batch} at --imgsz {side} needs at least {needed / GB:.1f} GB to train on the CPU, "
        f"more than the {free / GB:.1f} GB free: {advice}"
    )


def check_predict_memory(batch: int, workers: int, side: int, device: str) -> None:
    """Raise :class:`ResourceError` when ``batch`` images at ``side`` px cannot fit in the memory ``device`` has free now."""
    frees = (_host_free(), _accelerator_free(device))
    for index, (free, where) in enumerate(frees):
        needed = predict_memory(batch, workers, side, device)[index]
        if free is None or needed <= free:
            continue
        fixed = predict_memory(0, workers, side, device)[index]
        per_image = predict_memory(1, workers, side, device)[index] - fixed
        fit = int((free - fixed) // per_image)
        advice = (
            f"use --batch {fit}" if fit >= 1 else ("use fewer --workers" if fixed > free else "use a smaller --imgsz")
        )
        raise ResourceError(
            f"--batch {batch} at --imgsz {side} needs at least {needed / GB:.1f} GB of {where} memory "
            f"({workers} decoding process(es) included), more than the {free / GB:.1f} GB free: {advice}"
        )


def _host_free() -> tuple[int | None, str]:
    """Memory available to this process: the machine's, or less where an address-space limit (``ulimit -v``) leaves less."""
    import resource

    import psutil

    free = psutil.virtual_memory().available
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY:
        free = min(free, max(0, limit - psutil.Process().memory_info().vms))
    return free, "host"


def _accelerator_free(device: str) -> tuple[int | None, str]:
    """Free memory of GPU ``device`` (``None`` on the CPU and Apple's GPU, whose memory is the host's, or where torch cannot tell)."""
    if device in (*CPU_NAMES, MPS):
        return None, "GPU"
    import torch

    try:
        free, _ = torch.cuda.mem_get_info(int(device))
    except (RuntimeError, ValueError):
        return None, "GPU"
    return free, f"GPU {device}"
