"""An equal training budget and the learning curve: what ``compare`` gives every arch, and how it watches them learn.

**The budget** (:class:`Budget`) is minutes of training, counted by a :class:`TrainingClock`
over the training loop of each epoch only: loading and augmenting the batches, the forward and
backward passes, the optimiser steps. Building the model, validation (Ultralytics' own and the
learning curve's) and saving checkpoints are not counted. A run stops after the first step
that passes the budget, and its learning-rate schedule follows the share of the budget spent
instead of a count of epochs.

On a GPU the clock counts wall time. On the CPU it counts the CPU time of the training process
(all its threads; both trainers load the data in that process on the CPU): wall time would give
a run less work whenever other programs share the cores, CPU time does not, so rows trained at
different moments of a busy machine get about the same compute. On an idle machine a run that
keeps both cores busy spends CPU time twice as fast as wall time. Under heavy load CPU time still
grows a little, as threads wait for each other at their barriers.

**The learning curve** (:class:`LearningCurve`) is the RSNA score on the validation split, with
the post-processing tuned there as ``train`` does, after the epoch in which each ``1/points`` of
the budget (or of the epochs, without a budget) passed, and after the last epoch, against the
training minutes counted so far. A run records what it did in ``curve.json`` (:func:`write_record`).

>>> curve = LearningCurve(points=4)
>>> [curve.due(progress, last=False) for progress in (0.1, 0.3, 0.4, 0.8)]
[False, True, False, True]
>>> curve.due(0.9, last=True)
True
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.dataset import ConvertedDataset
from ..files import atomic_write_text
from ..nets.detector import Detector
from ..runtime.devices import Devices
from .validation import ValidationSplit, validation_detections

CURVE_JSON = "curve.json"
"""In a run folder trained with a budget or a learning curve: what :class:`TrainingRecord` holds."""
CLOCKS = ("cpu", "wall")
BUDGET_EPOCHS = 1000
"""The epoch count a budgeted run starts with, which the budget ends long before (an Ultralytics run estimates it
again after every epoch; its first value sets the length of Ultralytics' warm-up, 3 epochs)."""


@dataclass(frozen=True)
class Budget:
    """Minutes of training, counted on ``clock``: ``"cpu"`` (CPU time of the training process) or ``"wall"``."""

    minutes: float
    clock: str

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise ValueError(f"a training budget must be more than 0 minutes, not {self.minutes}")
        if self.clock not in CLOCKS:
            raise ValueError(f"a budget clock is one of {', '.join(CLOCKS)}, not {self.clock!r}")

    @classmethod
    def for_device(cls, minutes: float, *, on_cpu: bool) -> Budget:
        """``minutes`` of CPU time on the CPU, of wall time on a GPU.

        >>> Budget.for_device(6, on_cpu=True)
        Budget(minutes=6, clock='cpu')
        """
        return cls(minutes, "cpu" if on_cpu else "wall")

    @property
    def seconds(self) -> float:
        return 60.0 * self.minutes


class TrainingClock:
    """Seconds counted while running (between :meth:`start` and :meth:`stop`), on ``clock``, with the wall seconds of the same periods.

    >>> clock = TrainingClock("wall")
    >>> clock.start(); clock.stop(); clock.stop()
    >>> 0 <= clock.seconds() == clock.wall_seconds() < 1
    True
    """

    def __init__(self, clock: str) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"a budget clock is one of {', '.join(CLOCKS)}, not {clock!r}")
        self.clock = clock
        self._counted = self._wall = 0.0
        self._since: tuple[float, float] | None = None

    def _now(self) -> tuple[float, float]:
        wall = time.perf_counter()
        return (time.process_time() if self.clock == "cpu" else wall), wall

    def start(self) -> None:
        """Count from now on (no effect while already counting)."""
        if self._since is None:
            self._since = self._now()

    def stop(self) -> None:
        """Stop counting (no effect while stopped)."""
        if self._since is not None:
            counted, wall = self._now()
            self._counted += counted - self._since[0]
            self._wall += wall - self._since[1]
            self._since = None

    def seconds(self) -> float:
        """Seconds counted so far on the clock."""
        return self._counted + (self._now()[0] - self._since[0] if self._since is not None else 0.0)

    def wall_seconds(self) -> float:
        """Wall seconds of the periods counted so far."""
        return self._wall + (time.perf_counter() - self._since[1] if self._since is not None else 0.0)


@dataclass(frozen=True)
class CurvePoint:
    """The validation score after ``epoch`` epochs and ``step`` optimiser steps, ``train_min`` minutes counted (``wall_min`` of wall time)."""

    epoch: int
    step: int
    train_min: float
    wall_min: float
    val_score: float | None
    """``None`` where no validation image counted (no box kept on any negative image and no positive image)."""


class LearningCurve:
    """When to score the model on the validation split, and the points scored (see the module doc)."""

    def __init__(self, points: int) -> None:
        self.points = max(0, int(points))
        self.taken: list[CurvePoint] = []
        self.scoring_s = 0.0
        """Wall seconds spent scoring the points (outside the budget)."""
        self._next = 1

    def due(self, progress: float, *, last: bool) -> bool:
        """Whether to score after an epoch that ended at ``progress`` (share of the budget or of the epochs); ``last``: it was the last."""
        if not self.points:
            return False
        crossed = progress >= self._next / self.points
        while progress >= self._next / self.points:
            self._next += 1
        return crossed or last

    def score(
        self, detector: Detector, dataset: ConvertedDataset, *, epoch: int, step: int, clock: TrainingClock, batch: int
    ) -> CurvePoint:
        """Score ``detector`` (the model now) on ``dataset``'s validation split and keep the point."""
        started = time.perf_counter()
        point = CurvePoint(
            epoch,
            step,
            round(clock.seconds() / 60, 3),
            round(clock.wall_seconds() / 60, 3),
            validation_score(detector, dataset, batch=batch),
        )
        self.taken.append(point)
        self.scoring_s += time.perf_counter() - started
        return point


def schedule_factor(progress: float, warmup: float) -> float:
    """The learning rate's factor at ``progress`` (0 to 1) of a run: from 0.1 up to 1 over ``warmup``, then a cosine down to 0 at 1.

    >>> [round(schedule_factor(p, 0.1), 2) for p in (0.0, 0.05, 0.1, 0.55, 1.0, 1.5)]
    [0.1, 0.55, 1.0, 0.5, 0.0, 0.0]
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / max(1e-9, 1.0 - warmup)))


def validation_score(detector: Detector, dataset: ConvertedDataset, *, batch: int) -> float | None:
    """The RSNA score of ``detector`` on ``dataset``'s validation split at the post-processing tuned there; ``None`` if no image counted.

    The images are decoded in this process: a decoding process would cost its start-up at every point.
    """
    from ..eval.tune import tune

    split = ValidationSplit.of(dataset)
    raw = validation_detections(detector, split, batch=batch, workers=0, progress=False)
    score = tune(raw, split.truth).best_result.score
    return round(score, 4) if math.isfinite(score) else None


@dataclass(frozen=True)
class TrainingRecord:
    """What a run with a budget or a learning curve did: the budget, how far it got, the seconds counted, and its curve."""

    budget: Budget | None
    clock: str
    epochs: int
    """Epochs run; the budget may have cut the last one short."""
    steps: int
    """Training batches taken."""
    train_s: float
    """Seconds counted on ``clock`` (the budget's clock, or the device's where there was no budget)."""
    train_wall_s: float
    curve_scoring_s: float
    curve: list[CurvePoint] = field(default_factory=list)


def write_record(run_dir: Path, record: TrainingRecord) -> Path:
    """Write ``record`` as ``run_dir/curve.json`` and return its path."""
    summary = asdict(record)
    for key in ("train_s", "train_wall_s", "curve_scoring_s"):
        summary[key] = round(summary[key], 1)
    path = Path(run_dir) / CURVE_JSON
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def read_record(run_dir: Path) -> dict:
    """The ``curve.json`` of a run folder, as written by :func:`write_record`."""
    return json.loads((Path(run_dir) / CURVE_JSON).read_text())


class UltralyticsWatch:
    """The budget and the learning curve of an Ultralytics run, as the trainer's callbacks (:meth:`callbacks`).

    The clock counts from each epoch's start to its end, so Ultralytics' own validation and
    checkpoint saving fall outside the budget. Past the budget the trainer stops after the
    current batch, validates and saves, as with Ultralytics' own ``time`` argument; like that
    argument, after every epoch the epoch count is estimated again from the time per epoch and
    the learning-rate schedule rebuilt over it, so the schedule ends with the budget. The curve
    scores ``weights/last.pt`` (saved just before) after the epochs that :class:`LearningCurve` picks.
    """

    def __init__(
        self,
        budget: Budget | None,
        clock: TrainingClock,
        curve: LearningCurve,
        dataset: ConvertedDataset,
        *,
        device: Devices,
        batch: int,
    ) -> None:
        self.budget, self.clock, self.curve, self.dataset, self.device, self.batch = (
            budget,
            clock,
            curve,
            dataset,
            device,
            batch,
        )
        self.batches = self.epochs = 0
        self._epoch_ended = False

    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        """Ultralytics event → callback."""
        return {
            "on_train_epoch_start": self._epoch_start,
            "on_train_batch_end": self._batch_end,
            "on_train_epoch_end": self._epoch_end,
            "on_fit_epoch_end": self._fit_epoch_end,
        }

    def _epoch_start(self, trainer: Any) -> None:
        self.clock.start()

    def _batch_end(self, trainer: Any) -> None:
        self.batches += 1
        if self.budget is not None and self.clock.seconds() >= self.budget.seconds:
            trainer.stop = True

    def _epoch_end(self, trainer: Any) -> None:
        self.clock.stop()
        self._epoch_ended = True

    def _fit_epoch_end(self, trainer: Any) -> None:
        if not self._epoch_ended:  # Ultralytics' final validation of best.pt calls this event once more
            return
        self._epoch_ended = False
        self.epochs = epochs_done = trainer.epoch + 1
        if self.budget is not None:
            spent = self.clock.seconds()
            if epochs_done >= trainer.epochs and spent < self.budget.seconds:
                trainer.stop = (
                    False  # Ultralytics ended at the count estimated after an earlier, slower epoch: the budget decides
                )
            trainer.epochs = trainer.args.epochs = max(
                epochs_done, math.ceil(self.budget.seconds * epochs_done / max(spent, 1e-9))
            )
            trainer._setup_scheduler()  # as Ultralytics' time mode does after each epoch
            trainer.scheduler.last_epoch = trainer.epoch
            trainer.stop |= spent >= self.budget.seconds
            progress = spent / self.budget.seconds
        else:
            progress = epochs_done / trainer.epochs
        if self.curve.due(progress, last=trainer.stop or epochs_done >= trainer.epochs):
            from ..nets.yolo import YoloDetector

            detector = YoloDetector(Path(trainer.last), imgsz=int(trainer.args.imgsz), device=self.device)
            self.curve.score(
                detector, self.dataset, epoch=epochs_done, step=self.batches, clock=self.clock, batch=self.batch
            )

    def record(self) -> TrainingRecord:
        """What the run did, once it is over."""
        return TrainingRecord(
            self.budget,
            self.clock.clock,
            self.epochs,
            self.batches,
            self.clock.seconds(),
            self.clock.wall_seconds(),
            self.curve.scoring_s,
            self.curve.taken,
        )


def watch_run(
    budget_min: float | None, curve_points: int, *, on_cpu: bool
) -> tuple[Budget | None, TrainingClock, LearningCurve]:
    """The budget (``None`` without ``budget_min``), its clock (the device's clock without a budget) and the learning curve of a run."""
    budget = Budget.for_device(budget_min, on_cpu=on_cpu) if budget_min else None
    clock = TrainingClock(budget.clock if budget else ("cpu" if on_cpu else "wall"))
    return budget, clock, LearningCurve(curve_points)
