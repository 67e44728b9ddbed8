"""Training of Faster R-CNN, Mask R-CNN and U-Net with PyTorch Lightning, laid out like an Ultralytics run.

Lightning's ``Trainer`` brings what a hand-written loop would have to re-implement and test:
mixed precision on CUDA (``16-mixed``), multi-GPU DDP (``--device 0,1``), checkpoints to
resume from, a progress bar and a CSV log of each epoch (its ``CSVLogger``, on the local disk
only). No model hub is used. Under DDP Lightning starts one process per extra GPU by running
the same command again; only rank 0 writes the run's files and scores it.

A run folder, as for YOLO (:mod:`.common`), plus::

    <project>/<name>/weights/best.pt     the model after the last epoch, as a plain checkpoint (:mod:`pneumo_yolo.nets.checkpoints`)
    <project>/<name>/weights/last.ckpt   Lightning's checkpoint (model, optimiser, epoch) for --resume
    <project>/<name>/metrics.csv         per epoch: mean training loss and its parts, learning rate, training minutes

There is no per-epoch validation to pick a best epoch from, so ``best.pt`` is the last epoch's
model; the name is kept so that every command finds a run's weights at the same place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..data.dataset import ConvertedDataset
from ..nets.archs import MASK_SHAPES, build_model, training_loss
from ..nets.checkpoints import load_initial_weights, save_checkpoint
from ..runtime.devices import Devices, cpu_count
from .common import DEFAULT_BATCH, TrainConfigError, TrainResult, write_trained_on
from .data import BoxDataset, collate
from .validation import score_validation

LEARNING_RATES = {"faster-rcnn": 3e-4, "mask-rcnn": 3e-4, "unet": 1e-3}
"""AdamW's peak learning rate per arch (``--set lr0=`` changes it), reached after a short warm-up and then lowered on a cosine."""
OPTIONS = {"lr0": float, "weight_decay": float, "seed": int, "workers": int, "exist_ok": bool}
"""The ``--set`` keys these archs take, with their types."""
METRICS_CSV = "metrics.csv"
LOGGER_CONNECTOR = "lightning.pytorch.trainer.connectors.logger_connector.logger_connector"
"""Lightning's module that advertises its cloud logging service on every run: silenced."""


class ArchModule(L.LightningModule):
    """One non-YOLO network and its loss, optimiser and schedule."""

    def __init__(self, arch: str, imgsz: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.arch, self.lr, self.weight_decay = arch, lr, weight_decay
        self.model = build_model(arch, imgsz)
        self.started = time.perf_counter()

    def training_step(self, batch: tuple[list[Any], list[dict[str, Any]]], batch_index: int) -> Any:
        images, targets = batch
        loss, parts = training_loss(self.arch, self.model, images, targets)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images), sync_dist=True)
        for key, value in parts.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)
        self.log("train_minutes", (time.perf_counter() - self.started) / 60, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = warmup_cosine(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A linear warm-up from ``1/w`` of the rate to all of it over ``w`` steps (a tenth of them, 1 to 100), then a cosine decay to 0 at ``total_steps``.

    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> schedule = warmup_cosine(optimizer, 20)
    >>> rates = [optimizer.param_groups[0]["lr"]] + [(optimizer.step(), schedule.step(), optimizer.param_groups[0]["lr"])[2] for _ in range(20)]
    >>> round(rates[0], 2), round(rates[1], 2), round(rates[2], 2), round(rates[11], 2), round(rates[20], 2)
    (0.5, 0.75, 1.0, 0.5, 0.0)
    """
    total = max(1, total_steps)
    warmup = max(1, min(100, total // 10))
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    ramp = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup)
    decay = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    return SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


def arch_options(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--set`` values these archs take, type-checked; anything else is refused by name."""
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise TrainConfigError(f"--set {', '.join(unknown)}: not an option of this arch (it takes {', '.join(OPTIONS)})")
    try:
        return {key: OPTIONS[key](value) for key, value in overrides.items()}
    except (TypeError, ValueError) as error:
        raise TrainConfigError(f"--set: {error}") from error


def run_folder(project: Path, name: str, *, exist_ok: bool, resume: bool) -> Path:
    """``project/name``; like Ultralytics (its ``increment_path``), a new run beside an existing one becomes ``name2``, ``name3``…"""
    run_dir = project / name
    if resume:
        if not (run_dir / "weights" / "last.ckpt").is_file():
            raise TrainConfigError(f"Nothing to resume: {run_dir / 'weights' / 'last.ckpt'} not found (check --name and --project)")
        return run_dir
    from ultralytics.utils.files import increment_path

    return Path(increment_path(run_dir, exist_ok=exist_ok, sep=""))


def train_arch(
    dataset: ConvertedDataset,
    arch: str,
    model: str | None,
    *,
    imgsz: int,
    epochs: int,
    batch: int,
    device: str | None,
    name: str,
    project: Path,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
    score_val: bool = False,
) -> TrainResult | None:
    """Train ``arch`` on ``dataset`` (see the module doc); ``None`` in the extra processes of DDP.

    ``model`` is an optional weights file to start from (:func:`~pneumo_yolo.nets.checkpoints.load_initial_weights`).
    """
    if imgsz % 32:
        raise TrainConfigError(f"--imgsz {imgsz}: {arch} needs a multiple of 32")
    if batch < 1:
        raise TrainConfigError(f"--batch {batch}: {arch} needs a fixed batch size (AutoBatch is Ultralytics' own)")
    options = arch_options(overrides or {})
    run_dir = run_folder(project, name, exist_ok=options.get("exist_ok", False), resume=resume)
    devices = Devices.parse(device).resolve()
    hardware = devices.lightning()
    train_set = BoxDataset.of(dataset, "train", imgsz, flip=True, masks=MASK_SHAPES.get(arch), seed=options.get("seed", 0))
    if not len(train_set):
        raise TrainConfigError(f"{dataset.yaml}: no training images")
    L.seed_everything(options.get("seed", 0), verbose=False)
    logging.getLogger(LOGGER_CONNECTOR).setLevel(logging.WARNING)
    if devices.on_cpu:
        torch.set_num_threads(cpu_count())
    module = ArchModule(arch, imgsz, options.get("lr0", LEARNING_RATES[arch]), options.get("weight_decay", 1e-4))
    try:
        initial = load_initial_weights(module.model, arch, Path(model)) if model and not resume else None
    except (FileNotFoundError, ValueError) as error:
        raise TrainConfigError(str(error)) from error
    workers = options.get("workers", 0 if devices.on_cpu else min(8, cpu_count()))
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0, drop_last=len(train_set) > batch
    )
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    trainer = L.Trainer(
        **hardware, max_epochs=epochs, default_root_dir=str(run_dir), logger=CSVLogger(run_dir, name="", version=""),
        enable_progress_bar=True, enable_model_summary=False, log_every_n_steps=1,
        callbacks=[ModelCheckpoint(dirpath=str(run_dir / "weights"), save_top_k=0, save_last=True)],
    )  # fmt: skip
    if trainer.is_global_zero and initial:
        print(initial)
    trainer.fit(module, loader, ckpt_path=str(run_dir / "weights" / "last.ckpt") if resume else None)
    if not trainer.is_global_zero:
        return None
    best = save_checkpoint(run_dir / "weights" / "best.pt", arch, imgsz, module.model)
    write_trained_on(run_dir, dataset)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    rsna_val = None
    if score_val:
        rsna_val = score_validation(best, dataset, run_dir, imgsz=imgsz, device=devices.first, batch=batch if batch > 0 else DEFAULT_BATCH)
    return TrainResult(run_dir=run_dir, best=best, dataset=dataset, imgsz=imgsz, device=devices.first, metrics=metrics, rsna_val=rsna_val)
