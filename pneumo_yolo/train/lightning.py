"""Training of Faster R-CNN, Mask R-CNN and U-Net with PyTorch Lightning, laid out like an Ultralytics run.

Lightning's ``Trainer`` brings what a hand-written loop would have to re-implement and test:
mixed precision on CUDA (``16-mixed``), multi-GPU DDP (``--device 0,1``), checkpoints to
resume from, a progress bar and a CSV log of each epoch (its ``CSVLogger``, on the local disk
only). No model hub is used. Under DDP Lightning starts one process per extra GPU by running
the same command again; only rank 0 writes the run's files and scores it.

A run folder, as for YOLO (:mod:`.common`), plus::

    <project>/<name>/weights/last.pt     the model after the last epoch, as a plain checkpoint (:mod:`pneumo_yolo.nets.checkpoints`)
    <project>/<name>/weights/last.ckpt   Lightning's checkpoint (model, optimiser, epoch) for --resume
    <project>/<name>/metrics.csv         per epoch: mean training loss and its parts, learning rate, training minutes
    <project>/<name>/curve.json          with a budget or a learning curve (:mod:`.budget`): how far it got, and the curve

There is no per-epoch validation to pick a best epoch from, so the weights are named for what
they are: ``last.pt``, the last epoch's model (:attr:`~.common.TrainResult.best` points to it). A
step whose loss is not finite stops the run with :class:`~.common.TrainingDiverged`, naming the
epoch and step, before the optimiser takes it.

``model`` (``--model``) names the backbone (:func:`~pneumo_yolo.nets.archs.is_backbone`) or a
weights file to start from (:func:`resolve_model`). With a :class:`~.budget.Budget` the run
has no epoch count: it stops after the first step past the budget (:class:`BudgetCallback`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..data.dataset import ConvertedDataset
from ..nets.archs import (
    BACKBONE_HELP,
    DEFAULT_BACKBONES,
    DETECTORS,
    MASK_SHAPES,
    build_model,
    is_backbone,
    training_loss,
)
from ..nets.checkpoints import CheckpointError, checkpoint_of, load_initial_weights, read_checkpoint, save_checkpoint
from ..runtime.devices import Devices, cpu_count
from ..runtime.offline import import_ultralytics
from ..settings import SettingError
from .budget import (
    BUDGET_EPOCHS,
    Budget,
    LearningCurve,
    TrainingClock,
    TrainingRecord,
    schedule_factor,
    watch_run,
    write_record,
)
from .common import TrainConfigError, TrainingDiverged, TrainResult, TrainSettings, write_trained_on
from .data import BoxDataset, collate
from .validation import score_validation

LEARNING_RATE = 1e-3
"""AdamW's peak learning rate (``--set lr0=`` changes it), reached after a short warm-up and then lowered on a cosine."""
LARGE_LEARNING_RATE = 3e-4
"""The peak rate of the R-CNNs' ResNet-50 v2 (43 million weights)."""
WARMUP = 0.1
"""The share of a budgeted run over which the learning rate warms up (without a budget: a tenth of the steps, at most 100)."""
LAST_WEIGHTS = "last.pt"
"""The plain checkpoint of the last epoch, in ``<run>/weights/``: the weights to predict with."""
LOGGER_CONNECTOR = "lightning.pytorch.trainer.connectors.logger_connector.logger_connector"
"""Lightning's module that advertises its cloud logging service on every run: silenced."""


class ArchModule(L.LightningModule):
    """One non-YOLO network and its loss, optimiser and schedule.

    The learning rate follows :func:`~.budget.schedule_factor` of :meth:`progress`: the share of
    the steps taken, or, with a budget, the share of the budget spent (set by :class:`BudgetCallback`).
    """

    def __init__(
        self, arch: str, imgsz: int, lr: float, weight_decay: float, backbone: str, budgeted: bool = False
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.arch, self.imgsz, self.backbone, self.lr, self.weight_decay, self.budgeted = (
            arch,
            imgsz,
            backbone,
            lr,
            weight_decay,
            budgeted,
        )
        self.model = build_model(arch, imgsz, backbone)
        self.budget_spent = 0.0
        self.started = time.perf_counter()

    def training_step(self, batch: tuple[list[Any], list[dict[str, Any]]], batch_index: int) -> Any:
        images, targets = batch
        loss, parts = training_loss(self.arch, self.model, images, targets)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"epoch {self.current_epoch + 1}, step {batch_index + 1}: the training loss is {float(loss.detach())}, not a "
                f"number: training diverged (a lower learning rate lr0, or a smaller batch, may hold it); "
                f"the weights of the last finished epoch are in {self.trainer.default_root_dir}/weights/last.ckpt"
            )
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images), sync_dist=True
        )
        for key, value in parts.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)
        self.log("train_minutes", (time.perf_counter() - self.started) / 60, sync_dist=True)

    def progress(self, step: int) -> float:
        """The share of the run done at optimiser step ``step``: of the budget spent, or of the steps."""
        return self.budget_spent if self.budgeted else step / max(1, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = WARMUP
        if not self.budgeted:
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = min(100, max(1, total // 10)) / total
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule_factor(self.progress(step), warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class BudgetCallback(L.Callback):
    """Counts the budget over each epoch's training loop, stops the run past it, and scores the learning curve.

    Rank 0's clock decides: the share spent is broadcast after every step, so every process of a
    multi-GPU run follows the same schedule and stops at the same step.
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
        self.epochs = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.budget is None:
            return
        assert isinstance(pl_module, ArchModule)
        spent = trainer.strategy.broadcast(self.clock.seconds() / self.budget.seconds)
        pl_module.budget_spent = min(1.0, spent)
        if spent >= 1.0:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = pl_module
        assert isinstance(module, ArchModule)
        self.clock.stop()
        self.epochs = epochs_done = trainer.current_epoch + 1
        max_epochs = max(1, trainer.max_epochs or 1)
        progress = module.budget_spent if self.budget else epochs_done / max_epochs
        last = trainer.should_stop or (self.budget is None and epochs_done >= max_epochs)
        if trainer.is_global_zero and self.curve.due(progress, last=last):
            detector = DETECTORS[module.arch](
                checkpoint_of(module.arch, module.imgsz, module.model, module.backbone), device=self.device
            )
            self.curve.score(
                detector, self.dataset, epoch=epochs_done, step=trainer.global_step, clock=self.clock, batch=self.batch
            )


def run_folder(project: Path, name: str, *, exist_ok: bool, resume: bool) -> Path:
    """``project/name``; like Ultralytics (its ``increment_path``), a new run beside an existing one becomes ``name2``, ``name3``…"""
    run_dir = project / name
    if resume:
        if not (run_dir / "weights" / "last.ckpt").is_file():
            raise TrainConfigError(
                f"Nothing to resume: {run_dir / 'weights' / 'last.ckpt'} not found (check the run's name and project)"
            )
        return run_dir
    import_ultralytics()  # offline and private first: a later predict in this process refuses an Ultralytics imported without it
    from ultralytics.utils.files import increment_path

    return Path(increment_path(run_dir, exist_ok=exist_ok, sep=""))


def resolve_model(arch: str, model: str | None, run_dir: Path, *, resume: bool) -> tuple[str, Path | None]:
    """``(backbone, weights file to start from or None)`` of ``--model``.

    ``--model`` names a backbone of ``arch`` (``resnet18``…), or a weights file: one of our
    checkpoints of ``arch`` starts its own backbone, any other file (a torchvision ``.pth`` state
    dict) the arch's default. Nothing: the default backbone from scratch. A resumed run keeps the
    backbone it was started with (recorded in Lightning's checkpoint).
    """
    if resume:
        saved = torch.load(run_dir / "weights" / "last.ckpt", map_location="cpu", weights_only=False).get(
            "hyper_parameters", {}
        )
        return saved.get("backbone", DEFAULT_BACKBONES[arch]), None
    if model is None:
        return DEFAULT_BACKBONES[arch], None
    if is_backbone(arch, model):
        return model, None
    path = Path(model)
    if not path.is_file():
        raise SettingError(
            "model", f"neither a backbone of {arch} ({BACKBONE_HELP[arch]}) nor a weights file that exists", value=model
        )
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        raise SettingError("model", str(error)) from None
    if checkpoint is not None and checkpoint["arch"] == arch:
        return checkpoint["backbone"], path
    return DEFAULT_BACKBONES[arch], path


def train_arch(dataset: ConvertedDataset, settings: TrainSettings, imgsz: int) -> TrainResult | None:
    """Train ``settings.arch`` on ``dataset`` at ``imgsz`` (see the module doc); ``None`` in the extra processes of DDP.

    ``settings.model`` names the backbone or a weights file to start from (:func:`resolve_model`);
    ``overrides`` are the few keys of :data:`~.common.ARCH_OPTIONS`, typed by the settings.
    ``budget_min``: train for that many minutes (:class:`~.budget.Budget`: CPU minutes on the
    CPU, wall minutes on a GPU) instead of ``epochs``; ``curve_points``: score that many points of
    the learning curve; either writes ``curve.json``.
    """
    arch, batch, resume, options = settings.arch, settings.batch, settings.resume, settings.overrides
    run_dir = run_folder(settings.project, settings.name, exist_ok=options.get("exist_ok", False), resume=resume)
    backbone, initial_weights = resolve_model(arch, settings.model, run_dir, resume=resume)
    devices = settings.devices.resolve()
    hardware = devices.lightning()
    train_set = BoxDataset.of(
        dataset, "train", imgsz, flip=True, masks=MASK_SHAPES.get(arch), seed=options.get("seed", 0)
    )
    if not len(train_set):
        raise TrainConfigError(f"{dataset.yaml}: no training images")
    budget, clock, curve = watch_run(settings.budget_min, settings.curve_points, on_cpu=devices.on_cpu)
    L.seed_everything(options.get("seed", 0), verbose=False)
    logging.getLogger(LOGGER_CONNECTOR).setLevel(logging.WARNING)
    if (
        devices.on_cpu and "OMP_NUM_THREADS" not in os.environ
    ):  # a count set for this process (compare's row processes) stands
        torch.set_num_threads(cpu_count())
    module = ArchModule(
        arch,
        imgsz,
        options.get(
            "lr0", LARGE_LEARNING_RATE if arch != "unet" and backbone == DEFAULT_BACKBONES[arch] else LEARNING_RATE
        ),
        options.get("weight_decay", 1e-4),
        backbone,
        budgeted=budget is not None,
    )
    try:
        initial = load_initial_weights(module.model, arch, initial_weights, backbone) if initial_weights else None
    except (FileNotFoundError, ValueError) as error:
        raise TrainConfigError(str(error)) from error
    workers = options.get("workers", 0 if devices.on_cpu else min(8, cpu_count()))
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        train_set,  # a map-style dataset: __len__ and __getitem__
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        drop_last=len(train_set) > batch,
    )
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    watch = BudgetCallback(budget, clock, curve, dataset, device=devices, batch=batch)
    trainer = L.Trainer(
        **hardware,
        max_epochs=BUDGET_EPOCHS if budget else settings.epochs,
        default_root_dir=str(run_dir),
        logger=CSVLogger(run_dir, name="", version=""),
        enable_progress_bar=True,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=[watch, ModelCheckpoint(dirpath=str(run_dir / "weights"), save_top_k=0, save_last=True)],
    )
    if trainer.is_global_zero and initial:
        print(initial)
    trainer.fit(module, loader, ckpt_path=str(run_dir / "weights" / "last.ckpt") if resume else None)
    if not trainer.is_global_zero:
        return None
    best = save_checkpoint(run_dir / "weights" / LAST_WEIGHTS, arch, imgsz, module.model, backbone)
    write_trained_on(run_dir, dataset)
    if budget or settings.curve_points:
        record = TrainingRecord(
            budget,
            clock.clock,
            watch.epochs,
            trainer.global_step,
            clock.seconds(),
            clock.wall_seconds(),
            curve.scoring_s,
            curve.taken,
        )
        write_record(run_dir, record)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    rsna_val = None
    if settings.score_val:
        rsna_val = score_validation(best, dataset, run_dir, imgsz=imgsz, device=devices, batch=batch)
    return TrainResult(
        run_dir=run_dir,
        best=best,
        dataset=dataset,
        imgsz=imgsz,
        device=devices.first,
        metrics=metrics,
        rsna_val=rsna_val,
    )
