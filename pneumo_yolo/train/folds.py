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
from dataclasses import replace
from multiprocessing.managers import SyncManager
from typing import Any

from ..data.dataset import ConvertedDataset
from ..runtime.lifetime import exit_with_parent, job_processes
from ..settings import SettingError
from .common import TrainConfigError, TrainResult, TrainSettings
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
        raise SettingError("fold", f"{dataset.root} has folds 0..{dataset.folds - 1}", value=fold)
    return dataset.fold(fold)


def check_fold_count(dataset: ConvertedDataset, folds: int) -> None:
    """Refuse ``folds`` (``--folds K``) where ``dataset`` was not converted with the same K."""
    if dataset.folds != folds:
        converted = f"{{field:folds}} {dataset.folds}" if dataset.folds else "no folds"
        raise SettingError("folds", f"{dataset.yaml} was converted with {converted}", value=folds)


def train_folds(
    dataset: ConvertedDataset, settings: TrainSettings, *, folds: Sequence[int], log: Callable[[str], None] = print
) -> list[TrainResult | None]:
    """Train ``folds`` of ``dataset`` with ``settings``, into ``<name>-fold<i>``, spread over ``settings.devices``; results in fold order."""
    jobs = [(fold_data(dataset, fold), replace(settings, name=fold_name(settings.name, fold))) for fold in folds]
    devices = settings.devices.each() or (settings.devices,)
    if len(devices) == 1 or len(jobs) == 1:
        results = []
        one = devices[0].resolve()  # once for every fold
        for fold, (fold_set, fold_settings) in zip(folds, jobs):
            log(
                f"fold {fold}: training {settings.model or settings.arch} on {(fold_set.yaml or fold_set.root).name} into {fold_settings.name}"
            )
            results.append(train(fold_set, replace(fold_settings, devices=one)))
        return results
    names = ", ".join(name for device in devices for name in device.names)
    log(f"training folds {', '.join(map(str, folds))} on devices {names}, one fold per device at a time")
    context = multiprocessing.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(exit_with_parent, (os.getpid(),))
    with manager, job_processes(len(devices)) as pool:  # after a kill -9 of this process, no training goes on
        free = manager.Queue()
        for each in devices:
            free.put(each)
        pending = [
            pool.submit(_train_on_free_device, free, fold_set, fold_settings) for fold_set, fold_settings in jobs
        ]
        return [job.result() for job in pending]


def _train_on_free_device(free: Any, dataset: ConvertedDataset, settings: TrainSettings) -> TrainResult | None:
    """Worker process (not a daemon, so training may start processes of its own): take a free device, train one fold on it, give it back."""
    device = free.get()
    try:
        return train(dataset, replace(settings, devices=device))
    finally:
        free.put(device)
