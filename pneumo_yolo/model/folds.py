"""Training the folds of a ``convert --folds K`` dataset: one run per fold, one fold per device at a time.

Fold ``i`` trains on ``data_fold{i}.yaml`` into ``<project>/<name>-fold{i}``; like every run, its
folder lists in ``trained_on.txt`` the patients it must never be scored on. With one device
the folds train one after another in this process. With several (``--device 0,1``, or
``cpu,cpu`` to run the same path on the CPU) each device trains one fold at a time in a
process of its own, as the next fold waits for the first free device.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..data.dataset import ConvertedDataset
from .devices import devices_of
from .train import TrainConfigError, TrainResult, check_data_yaml, train


def fold_name(name: str, fold: int) -> str:
    """The run name of one fold.

    >>> fold_name("exp", 2)
    'exp-fold2'
    """
    return f"{name}-fold{fold}"


def fold_data(data: Path, fold: int) -> Path:
    """``data_fold{fold}.yaml`` of the dataset that ``data`` belongs to; raises :class:`TrainConfigError` if it has no such fold."""
    dataset = ConvertedDataset.from_yaml(check_data_yaml(data))
    if not dataset.folds:
        raise TrainConfigError(f"{data}: not a k-fold dataset; convert it with --folds K to train folds")
    if not 0 <= fold < dataset.folds:
        raise TrainConfigError(f"--fold {fold}: {dataset.root} has folds 0..{dataset.folds - 1}")
    return dataset.fold_yaml(fold)


def check_fold_count(data: Path, folds: int) -> None:
    """Refuse ``--folds K`` where the dataset of ``data`` was not converted with the same K."""
    converted = ConvertedDataset.from_yaml(check_data_yaml(data)).folds
    if converted != folds:
        raise TrainConfigError(f"--folds {folds}: {data} was converted with " + (f"--folds {converted}" if converted else "no folds"))


def train_folds(
    data: Path,
    model: str | None,
    *,
    folds: Sequence[int],
    device: str | None = None,
    name: str,
    log: Callable[[str], None] = print,
    **train_options: Any,
) -> list[TrainResult]:
    """Train ``folds`` of the dataset of ``data``, spread over the devices of ``device``; results in fold order.

    ``train_options`` are :func:`~pneumo_yolo.model.train.train`'s other keyword arguments.
    """
    jobs = [(fold_data(data, fold), fold_name(name, fold)) for fold in folds]
    devices = devices_of(device)
    if len(devices) == 1 or len(jobs) == 1:
        results = []
        for fold, (fold_yaml, run_name) in zip(folds, jobs):
            log(f"fold {fold}: training {model or train_options.get('arch')} on {fold_yaml.name} into {run_name}")
            results.append(train(fold_yaml, model, device=devices[0], name=run_name, **train_options))
        return results
    log(f"training folds {', '.join(map(str, folds))} on devices {', '.join(map(str, devices))}, one fold per device at a time")
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    free = manager.Queue()
    for each in devices:
        free.put(each)
    with ProcessPoolExecutor(len(devices), mp_context=context, max_tasks_per_child=1) as pool:
        pending = [pool.submit(_train_on_free_device, free, fold_yaml, model, run_name, train_options) for fold_yaml, run_name in jobs]
        return [job.result() for job in pending]


def _train_on_free_device(free: Any, data: Path, model: str, name: str, options: dict[str, Any]) -> TrainResult:
    """Worker process (not a daemon, so training may start processes of its own): take a free device, train one fold on it, give it back."""
    device = free.get()
    try:
        return train(data, model, device=device, name=name, **options)
    finally:
        free.put(device)
