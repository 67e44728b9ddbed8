"""Training of Faster R-CNN, Mask R-CNN and U-Net with PyTorch Lightning, laid out like an Ultralytics run.

Lightning's ``Trainer`` brings what a hand-written loop would have to re-implement and test:
mixed precision on CUDA (``16-mixed``), multi-GPU DDP (``--device 0,1``), checkpoints to
resume from and a progress bar. It runs private and offline: no logger (our own
``results.csv`` instead), no model hub. Under DDP Lightning starts one process per extra GPU by
running the same command again; only rank 0 writes the run's files and scores it.

A run folder, as for YOLO::

    <project>/<name>/weights/best.pt     the model after the last epoch, as a plain checkpoint (:func:`.archs.save_checkpoint`)
    <project>/<name>/weights/last.ckpt   Lightning's checkpoint (model, optimiser, epoch) for --resume
    <project>/<name>/results.csv         epoch, mean training loss and its parts, learning rate, seconds
    <project>/<name>/trained_on.txt      the patients it trained on
    <project>/<name>/rsna_val.json       the RSNA metric on the validation split (score_val)

There is no per-epoch validation to pick a best epoch from, so ``best.pt`` is the last epoch's
model; the name is kept so that every command finds a run's weights at the same place.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..data.dataset import listed_images
from ..files import atomic_write_text
from .archs import build_model, load_initial_weights, mask_shape, save_checkpoint, training_loss
from .offline import cpu_count
from .torch_data import BoxDataset, collate
from .train import DEFAULT_BATCH, TRAINED_ON, TrainConfigError, TrainResult
from .validation import score_validation

LEARNING_RATES = {"faster-rcnn": 3e-4, "mask-rcnn": 3e-4, "unet": 1e-3}
"""AdamW's peak learning rate per arch (``--set lr0=`` changes it), reached after a short warm-up and then lowered on a cosine."""
OPTIONS = {"lr0": float, "weight_decay": float, "seed": int, "workers": int, "exist_ok": bool}
"""The ``--set`` keys these archs take, with their types."""
RESULTS_CSV = "results.csv"
LOGGER_CONNECTOR = "lightning.pytorch.trainer.connectors.logger_connector.logger_connector"
"""Lightning's module that advertises its cloud logging service on every run without a logger: silenced."""


class ArchModule(L.LightningModule):
    """One non-YOLO network and its loss, optimiser and schedule."""

    def __init__(self, arch: str, imgsz: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.arch, self.lr, self.weight_decay = arch, lr, weight_decay
        self.model = build_model(arch, imgsz)

    def training_step(self, batch: tuple[list[Any], list[dict[str, Any]]], batch_index: int) -> Any:
        images, targets = batch
        loss, parts = training_loss(self.arch, self.model, images, targets)
        self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images), sync_dist=True)
        for key, value in parts.items():
            self.log(key, value, on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, min(100, total // 10))

        def factor(step: int) -> float:
            return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class History(L.Callback):
    """Appends each epoch's mean losses, learning rate and time to ``results.csv`` (rank 0 only)."""

    def __init__(self, path: Path) -> None:
        self.path, self.started = path, time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch + 1}
        row.update({f"train/{key}": round(float(value), 5) for key, value in sorted(trainer.callback_metrics.items())})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["time"] = round(time.perf_counter() - self.started, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def lightning_devices(device: str | None) -> dict[str, Any]:
    """Lightning's ``accelerator``, ``devices``, ``strategy`` and ``precision`` for ``--device``.

    >>> lightning_devices("cpu")["accelerator"], lightning_devices("0,1")["devices"], lightning_devices("0,1")["strategy"]
    ('cpu', [0, 1], 'ddp_find_unused_parameters_true')
    """
    if device is None or not device.strip():
        device = "0" if torch.cuda.is_available() else "cpu"
    parts = [part for part in device.replace(" ", "").lower().split(",") if part]
    if parts[0] in {"cpu", "mps"}:
        return {"accelerator": parts[0], "devices": 1, "strategy": "auto", "precision": "32-true"}
    gpus = [int(part) for part in parts]
    strategy = "ddp_find_unused_parameters_true" if len(gpus) > 1 else "auto"
    return {"accelerator": "gpu", "devices": gpus, "strategy": strategy, "precision": "16-mixed"}


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
    """``project/name``; like Ultralytics, a new run beside an existing one becomes ``name2``, ``name3``…"""
    run_dir = project / name
    if resume:
        if not (run_dir / "weights" / "last.ckpt").is_file():
            raise TrainConfigError(f"Nothing to resume: {run_dir / 'weights' / 'last.ckpt'} not found (check --name and --project)")
        return run_dir
    number = 2
    while run_dir.exists() and not exist_ok:
        run_dir, number = project / f"{name}{number}", number + 1
    return run_dir


def train_arch(
    data: Path,
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
    """Train ``arch`` on the dataset of ``data`` (see the module doc); ``None`` in the extra processes of DDP.

    ``model`` is an optional weights file to start from (:func:`.archs.load_initial_weights`).
    """
    if imgsz % 32:
        raise TrainConfigError(f"--imgsz {imgsz}: {arch} needs a multiple of 32")
    if batch < 1:
        raise TrainConfigError(f"--batch {batch}: {arch} needs a fixed batch size (AutoBatch is Ultralytics' own)")
    options = arch_options(overrides or {})
    run_dir = run_folder(project, name, exist_ok=options.get("exist_ok", False), resume=resume)
    hardware = lightning_devices(device)
    train_set = BoxDataset.from_yaml(data, "train", imgsz, flip=True, masks=mask_shape(arch), seed=options.get("seed", 0))
    if not len(train_set):
        raise TrainConfigError(f"{data}: no training images")
    L.seed_everything(options.get("seed", 0), verbose=False)
    logging.getLogger(LOGGER_CONNECTOR).setLevel(logging.WARNING)
    if hardware["accelerator"] == "cpu":
        torch.set_num_threads(cpu_count())
    module = ArchModule(arch, imgsz, options.get("lr0", LEARNING_RATES[arch]), options.get("weight_decay", 1e-4))
    try:
        initial = load_initial_weights(module.model, arch, Path(model)) if model and not resume else None
    except (FileNotFoundError, ValueError) as error:
        raise TrainConfigError(str(error)) from error
    workers = options.get("workers", 0 if hardware["accelerator"] == "cpu" else min(8, cpu_count()))
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0, drop_last=len(train_set) > batch
    )
    from lightning.pytorch.callbacks import ModelCheckpoint

    trainer = L.Trainer(
        **hardware, max_epochs=epochs, default_root_dir=str(run_dir), logger=False, enable_progress_bar=True,
        enable_model_summary=False, log_every_n_steps=1,
        callbacks=[ModelCheckpoint(dirpath=str(run_dir / "weights"), save_top_k=0, save_last=True), History(run_dir / RESULTS_CSV)],
    )  # fmt: skip
    if trainer.is_global_zero and initial:
        print(initial)
    trainer.fit(module, loader, ckpt_path=str(run_dir / "weights" / "last.ckpt") if resume else None)
    if not trainer.is_global_zero:
        return None
    best = save_checkpoint(run_dir / "weights" / "best.pt", arch, imgsz, module.model)
    atomic_write_text(run_dir / TRAINED_ON, "".join(f"{path.stem}\n" for path in listed_images(data, "train")))
    first_device = "cpu" if hardware["accelerator"] == "cpu" else str(hardware["devices"][0])
    metrics = {f"train/{key}": float(value) for key, value in trainer.callback_metrics.items()}
    rsna_val = None
    if score_val:
        rsna_val = score_validation(best, data, run_dir, imgsz=imgsz, device=first_device, batch=batch if batch > 0 else DEFAULT_BATCH)
    return TrainResult(run_dir=run_dir, best=best, data=data, imgsz=imgsz, device=first_device, metrics=metrics, rsna_val=rsna_val)
