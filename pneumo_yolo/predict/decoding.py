"""Inputs of predict: listing the image files and decoding them in background processes.

DICOMs are decoded by the converter's own reader, so predict sees exactly the pixels that
``convert`` writes; PNG and JPEG pictures are read as grayscale. A bad file never raises: its
problem travels with it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import cv2
import numpy as np

from ..dicom.read import DicomReadError, read_radiograph, resize_longest
from ..files import DICOM_SUFFIXES, PICTURE_SUFFIXES, UnsafeIdError, check_patient_id
from ..runtime.lifetime import exit_with_parent, name_semaphores, shared_memory_name

DEFAULT_SIDE = 1024
"""The side, in pixels, that each image of a batch is given in shared memory when images are not
resized (an RSNA radiograph's): a bigger one is sent back through the pool's queue instead."""


class InputError(RuntimeError):
    """A ``--source`` that cannot be predicted as asked (a usage error): nothing in it, or pictures where ``--dicom-out`` needs DICOMs."""


@dataclass(frozen=True)
class LoadedImage:
    """One decoded input: ``pixels`` is the model's uint8 H×W input, ``None`` with a ``problem``."""

    patient_id: str
    path: str
    pixels: np.ndarray | None
    width: int = 0
    height: int = 0
    problem: str = ""


def is_dicom(path: Path) -> bool:
    """True for a ``.dcm`` file (decoded at its original size), False for a PNG/JPEG picture."""
    return path.suffix.lower() in DICOM_SUFFIXES


def list_inputs(source: Path) -> list[Path]:
    """The ``.dcm`` (or PNG/JPEG) files of ``source``, a folder searched recursively or one file, sorted."""
    suffixes = DICOM_SUFFIXES | PICTURE_SUFFIXES
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InputError(f"--source {source} does not exist")
    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not paths:
        raise InputError(
            f"--source {source} holds no .dcm, .png or .jpg files (searched recursively): give the folder of the images"
        )
    return paths


def load_image(path: Path, max_side: int | None) -> LoadedImage:
    """Decode one input exactly as ``convert`` does (DICOM) or as a grayscale picture (PNG/JPEG).

    Never raises for a bad file: the problem is returned in :attr:`LoadedImage.problem`.
    """
    path = Path(path)
    try:
        patient_id = check_patient_id(path.stem)
    except UnsafeIdError as error:
        return LoadedImage(path.stem, str(path), None, problem=str(error))
    if is_dicom(path):
        try:
            image = read_radiograph(path, max_side)
        except DicomReadError as error:
            return LoadedImage(patient_id, str(path), None, problem=error.problem)
        return LoadedImage(patient_id, str(path), image.pixels, image.width, image.height)
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        return LoadedImage(patient_id, str(path), None, problem="not a readable PNG/JPEG image")
    height, width = pixels.shape
    return LoadedImage(patient_id, str(path), resize_longest(pixels, max_side), width, height)


def load_batch(paths: list[Path], max_side: int | None) -> list[LoadedImage]:
    """:func:`load_image` for each path (the unit of work of a decoding process)."""
    return [load_image(path, max_side) for path in paths]


@dataclass(frozen=True)
class SharedPlace:
    """Where a decoding process left an image's pixels in a shared-memory buffer."""

    offset: int
    shape: tuple[int, ...]
    dtype: str

    def view(self, buffer: SharedMemory) -> np.ndarray:
        """The pixels' place in ``buffer``, as an array (no copy)."""
        return np.ndarray(self.shape, self.dtype, buffer.buf, self.offset)

    def read(self, buffer: SharedMemory) -> np.ndarray:
        """A copy of the pixels, so that the buffer can take the next batch."""
        return self.view(buffer).copy()


_attached: dict[str, SharedMemory] = {}
"""The shared buffers a decoding process has opened, by name: each is opened once per process."""


def load_batch_shared(
    paths: list[Path], max_side: int | None, buffer_name: str
) -> list[tuple[LoadedImage, SharedPlace | None]]:
    """:func:`load_batch`, writing the pixels into the shared buffer ``buffer_name`` instead of sending them back.

    Only the small :class:`LoadedImage` records travel through the pool's result queue (pickling
    the pixels there cost a third of their decoding: docs/predict.md). An image that does not
    fit in what is left of the buffer keeps its pixels in its record.
    """
    if buffer_name not in _attached:
        _attached[buffer_name] = SharedMemory(buffer_name)
    buffer = _attached[buffer_name]
    offset = 0
    placed: list[tuple[LoadedImage, SharedPlace | None]] = []
    for path in paths:
        image = load_image(path, max_side)
        pixels = image.pixels
        if pixels is None or offset + pixels.nbytes > buffer.size:
            placed.append((image, None))
            continue
        place = SharedPlace(offset, pixels.shape, pixels.dtype.str)
        place.view(buffer)[...] = pixels
        placed.append((replace(image, pixels=None), place))
        offset += pixels.nbytes
    return placed


def _decoding_worker(parent: int) -> None:
    """Decoding yields the CPU to inference (one OpenCV thread, a lower priority), and ends with its parent, which alone handles Ctrl-C."""
    exit_with_parent(parent, ignore_interrupt=True)
    cv2.setNumThreads(1)
    os.nice(5)


def iterate_batches(paths: list[Path], max_side: int | None, batch: int, workers: int) -> Iterator[list[LoadedImage]]:
    """Decode ``paths`` in ``workers`` background processes, yielding lists of ``batch`` images in order.

    At most ``2 × workers + 1`` batches are in flight, each with its own shared-memory buffer
    of ``batch × max_side²`` bytes (``batch`` at most the number of paths; the caller checks
    beforehand that they fit: :func:`~pneumo_yolo.runtime.memory.check_predict_memory`) that the decoding process fills (:func:`load_batch_shared`),
    so memory does not grow with the number of images. The buffers are removed when the
    iteration ends, however it ends; the workers end with this process, even when it is
    killed, and what a kill leaves is named for this process (:mod:`pneumo_yolo.runtime.lifetime`).
    Workers are spawned, not forked: a fork taken while OpenCV's or torch's thread pools hold a
    lock deadlocks the child.
    """
    batch = max(1, min(batch, len(paths)))  # no buffer larger than the images need
    chunks = [paths[start : start + batch] for start in range(0, len(paths), batch)]
    if workers <= 0:
        yield from (load_batch(chunk, max_side) for chunk in chunks)
        return
    buffer_size = batch * (max_side or DEFAULT_SIDE) ** 2
    buffers: list[SharedMemory] = []
    try:
        for _ in range(min(len(chunks), 2 * workers + 1)):
            buffers.append(SharedMemory(shared_memory_name(), create=True, size=buffer_size))
        name_semaphores()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_decoding_worker, initargs=(os.getpid(),)
        ) as pool:
            free = deque(buffers)
            pending: deque[tuple[Future, SharedMemory]] = deque()
            for chunk in chunks:
                if not free:
                    yield _collect(*pending.popleft(), free)
                buffer = free.popleft()
                pending.append((pool.submit(load_batch_shared, chunk, max_side, buffer.name), buffer))
            while pending:
                yield _collect(*pending.popleft(), free)
    finally:
        for buffer in buffers:
            buffer.unlink()
            buffer.close()


def _collect(future: Future, buffer: SharedMemory, free: deque[SharedMemory]) -> list[LoadedImage]:
    """The decoded batch of ``future``, its pixels copied out of ``buffer``, which is then free again."""
    images = [image if place is None else replace(image, pixels=place.read(buffer)) for image, place in future.result()]
    free.append(buffer)
    return images
