"""Training the folds of a ``convert --folds K`` dataset: one run per fold, one fold per device at a time.

Fold ``i`` trains on ``data_fold{i}.yaml`` into ``<project>/<name>-fold{i}``; like every run, its
folder lists in ``trained_on.txt`` the patients it must never be scored on. With one device
the folds train one after another in this process. With several (``--device 0,1``, or
``cpu,cpu`` to run the same path on the CPU) each device trains one fold at a time in a
process of its own, as the next fold waits for the first free device.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from multiprocessing.managers import SyncManager
from typing import Any

from ..data.dataset import ConvertedDataset
from ..runtime.devices import Devices
from ..runtime.lifetime import exit_with_parent, job_processes
from .common import TrainConfigError, TrainResult
from .run import train


def fold_name(name: str, fold: int) -> str:
    """The run name of one fold.

    >>> fold_name("exp", 2)
    'exp-fold2'
    """
    return f"{name}-fold{fold}"


def fold_data(dataset: ConvertedDataset, fold: int) -> ConvertedDataset:
    """Fold ``fold`` of ``dataset`` (opened from its ``data_fold{fold}.yaml``); raises :class:`TrainConfigError` if it has no such fold."""
    if not dataset.folds:
        raise TrainConfigError(f"{dataset.yaml}: not a k-fold dataset; convert it with --folds K to train folds")
    if not 0 <= fold < dataset.folds:
        raise TrainConfigError(f"--fold {fold}: {dataset.root} has folds 0..{dataset.folds - 1}")
    return dataset.fold(fold)


def check_fold_count(dataset: ConvertedDataset, folds: int) -> None:
    """Refuse ``--folds K`` where ``dataset`` was not converted with the same K."""
    if dataset.folds != folds:
        raise TrainConfigError(
            f"--folds {folds}: {dataset.yaml} was converted with "
            + (f"--folds {dataset.folds}" if dataset.folds else "no folds")
        )


def train_folds(
    dataset: ConvertedDataset,
    model: str | None,
    *,
    folds: Sequence[int],
    device: str | None = None,
    name: str,
    log: Callable[[str], None] = print,
    **train_options: Any,
) -> list[TrainResult]:
    """Train ``folds`` of ``dataset``, spread over the devices of ``device``; results in fold order.

    ``train_options`` are :func:`~pneumo_yolo.train.run.train`'s other keyword arguments.
    """
    jobs = [(fold_data(dataset, fold), fold_name(name, fold)) for fold in folds]
    devices: list[str | None] = list(Devices.parse(device).names) or [None]
    if len(devices) == 1 or len(jobs) == 1:
        results = []
        for fold, (fold_set, run_name) in zip(folds, jobs):
            log(f"fold {fold}: training {model or train_options.get('arch')} on {fold_set.yaml.name} into {run_name}")
            results.append(train(fold_set, model, device=devices[0], name=run_name, **train_options))
        return results
    log(
        f"training folds {', '.join(map(str, folds))} on devices {', '.join(map(str, devices))}, one fold per device at a time"
    )
    context = multiprocessing.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(exit_with_parent, (os.getpid(),))
    with manager, job_processes(len(devices)) as pool:  # after a kill -9 of this process, no training goes on
        free = manager.Queue()
        for each in devices:
            free.put(each)
        pending = [
            pool.submit(_train_on_free_device, free, fold_set, model, run_name, train_options)
            for fold_set, run_name in jobs
        ]
        return [job.result() for job in pending]


def _train_on_free_device(
    free: Any, dataset: ConvertedDataset, model: str, name: str, options: dict[str, Any]
) -> TrainResult:
    """Worker process (not a daemon, so training may start processes of its own): take a free device, train one fold on it, give it back."""
    device = free.get()
    try:
        return train(dataset, model, device=device, name=name, **options)
    finally:
        free.put(device)
