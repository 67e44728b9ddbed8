"""Train an Ultralytics YOLO detector on a converted RSNA dataset, offline and privately.

Arguments are layered, later ones winning: Ultralytics' defaults, the chest X-ray defaults in
``pneumo_yolo/cfg/cxr_train.yaml``, the main options (``imgsz``, ``epochs``, ``batch``,
``device``) and finally any other Ultralytics training argument (``--set key=value``). Every key
is checked against Ultralytics' configuration before anything runs.

The task follows the model: a detector, or, for a model of Ultralytics' ``classify`` task
(``yolo11n-cls.yaml``), the image-level opacity classifier of :mod:`.classifier`, trained on a
symlinked view of the same images (:mod:`pneumo_yolo.data.classify_view`).

Runs go to ``<project>/<name>`` (Ultralytics' layout: ``weights/best.pt``, ``results.csv``,
plots; with ``score_val``, also ``rsna_val.json``: the RSNA metric of ``best.pt`` on the validation
split, see :mod:`.validation`; for a classifier ``classifier_val.json``), with ``project`` always
absolute (``<cwd>/runs`` by default), because Ultralytics files relative projects under its own
folder, which is ``site-packages`` while pytest runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .classifier import CLASSIFIER_DEFAULTS, CLASSIFY_TASK, TOP1_KEY, classifier_line, default_classifier_imgsz, score_classifier
from .offline import downloads_allowed, import_ultralytics, prepare_process, resolve_device, weights_dir
from ..data.classify_view import build_classify_view
from ..data.dataset import ConvertedDataset, listed_images
from ..files import atomic_write_text
from .validation import VAL_JSON, score_validation
from .weights import ModelSource, download_weights, resolve_model

DEFAULT_IMGSZ = 1024
DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 16
DEFAULT_NAME = "exp"
TRAINED_ON = "trained_on.txt"
"""In every run folder: the patientIds the model trained on, one per line, which it must never be scored on."""

OPTION_FLAGS = {
    "data": "--data",
    "model": "--model",
    "imgsz": "--imgsz",
    "epochs": "--epochs",
    "batch": "--batch",
    "device": "--device",
    "name": "--name",
    "project": "--project",
    "resume": "--resume",
}
"""Ultralytics keys that have their own option, so ``--set`` may not give them."""

FIXED_KEYS = frozenset({"mode", "task"})
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_METRIC_LABELS = {
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
}


class TrainConfigError(ValueError):
    """Training options that cannot work; the message says which and why."""


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run left its outputs, its validation figures and (when scored) its RSNA or classifier scores."""

    run_dir: Path
    best: Path
    data: Path
    imgsz: int
    device: str
    metrics: Mapping[str, float]
    rsna_val: Mapping[str, Any] | None = None
    classifier_val: Mapping[str, Any] | None = None

    def final_line(self) -> str:
        """One line naming ``best.pt``, its validation mAP, precision and recall, and its RSNA scores (or its classifier figures)."""
        if self.classifier_val is not None:
            return classifier_line(self.best, self.classifier_val, self.run_dir)
        figures = " ".join(f"{label} {self.metrics[key]:.3f}" for key, label in _METRIC_LABELS.items() if key in self.metrics)
        line = f"Best weights: {self.best}" + (f" | val {figures}" if figures else "")
        if self.rsna_val is None:
            return line
        default, tuned = self.rsna_val["default"]["score"], self.rsna_val["tuned"]["score"]
        return (
            f"{line} | RSNA val score {default or 0:.4f} (default post-processing), "
            f"{tuned or 0:.4f} (tuned: {self.rsna_val['tuned']['postprocess_yaml']}) | {self.run_dir / VAL_JSON}"
        )


def cxr_defaults() -> dict[str, Any]:
    """The chest X-ray training defaults shipped in ``cfg/cxr_train.yaml``."""
    text = (resources.files("pneumo_yolo") / "cfg" / "cxr_train.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text) or {})


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are YAML scalars or lists, never evaluated as code.

    >>> parse_overrides(["lr0=1e-3", "cos_lr=true", "scale=[0.5, 1.5]", "cache=ram"])
    {'lr0': 0.001, 'cos_lr': True, 'scale': [0.5, 1.5], 'cache': 'ram'}
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainConfigError(f"--set {item!r}: expected key=value, e.g. --set lr0=0.002")
        if key in overrides:
            raise TrainConfigError(f"--set {key}: given twice")
        overrides[key] = _parse_value(text.strip(), key)
    return overrides


def _parse_value(text: str, key: str) -> Any:
    """A ``--set`` value: YAML, plus Python-style ``None`` and ``1e-3`` (YAML 1.1 reads those as text)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TrainConfigError(f"--set {key}={text}: not a valid value ({error.problem})") from error
    if isinstance(value, str) and value.lower() == "none":
        return None
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
        return float(value)
    return value


def check_option_keys(keys: Iterable[str], valid: Iterable[str] | None, where: str) -> None:
    """Raise :class:`TrainConfigError` for keys ``--set`` may not give, with near matches for typos.

    Keys with their own option (``epochs``...) and ``mode``/``task`` are refused; with ``valid``
    (Ultralytics' configuration keys) given, so is any key outside it.
    """
    valid = sorted(valid) if valid is not None else None
    problems = []
    for key in keys:
        if key in OPTION_FLAGS:
            problems.append(f"'{key}' has its own option: use {OPTION_FLAGS[key]}")
        elif key in FIXED_KEYS:
            problems.append(f"'{key}' cannot be changed (it follows --model: a detector, or a classifier such as yolo11n-cls.yaml)")
        elif valid is not None and key not in valid:
            near = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean {' or '.join(repr(k) for k in near)}?" if near else "see `yolo cfg` for the list"
            problems.append(f"'{key}' is not an Ultralytics training argument; {hint}")
    if problems:
        raise TrainConfigError(f"{where}: " + "; ".join(problems))


def training_arguments(
    *,
    data: Path,
    imgsz: int,
    epochs: int,
    batch: int,
    device: str,
    project: Path,
    name: str,
    overrides: Mapping[str, Any],
    task_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Layer the arguments (see module doc) and check them with Ultralytics' own checks.

    ``task_defaults`` (the classifier's) go over the chest X-ray defaults, under everything else.
    Call :func:`pneumo_yolo.model.offline.import_ultralytics` first.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    defaults = {**cxr_defaults(), **(task_defaults or {})}
    check_option_keys(defaults, DEFAULT_CFG_DICT, "pneumo_yolo/cfg/cxr_train.yaml")
    check_option_keys(overrides, DEFAULT_CFG_DICT, "--set")
    main = {"data": str(data), "imgsz": imgsz, "epochs": epochs, "batch": batch, "device": device}
    args = {**defaults, **main, "project": str(project), "name": name, **overrides}
    try:
        check_cfg(args)
    except (TypeError, ValueError) as error:
        raise TrainConfigError(f"Invalid training argument: {error}") from error
    return args


def train(
    data: Path,
    model: str | None = None,
    *,
    imgsz: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch: int = DEFAULT_BATCH,
    device: str | None = None,
    name: str = DEFAULT_NAME,
    project: Path | None = None,
    resume: bool = False,
    online: bool = False,
    overrides: Mapping[str, Any] | None = None,
    score_val: bool = False,
    arch: str = "yolo",
) -> TrainResult | None:
    """Train (or resume) a detector or an opacity classifier (as ``model``'s task says) and return where its outputs are.

    ``arch`` other than ``yolo`` (``faster-rcnn``, ``mask-rcnn``, ``unet``) trains that network
    with :func:`.lightning_train.train_arch` instead, ``model`` then being an optional weights
    file to start from; it returns ``None`` in the extra processes of a multi-GPU run.

    ``score_val`` also scores ``best.pt`` on the validation split, as the ``train`` command does:
    a detector with the RSNA metric, tuning the post-processing there
    (:func:`.validation.score_validation`: ``rsna_val.json`` and ``postprocess_tuned.yaml`` in the
    run folder); a classifier by its top-1 accuracy and ROC AUC of P(opacity)
    (:func:`.classifier.score_classifier`: ``classifier_val.json``).

    Everything that can be checked without Ultralytics (files, names, weights that would need
    a download) is checked first, so mistakes fail in well under a second. A resumed run keeps
    the arguments stored in its checkpoint; only ``data``, ``device`` and ``overrides`` apply.

    Example::

        result = train(Path("datasets/rsna/data.yaml"), "yolo11s.yaml", epochs=30)
        result.best  # <cwd>/runs/exp/weights/best.pt
    """
    data = check_data_yaml(data)
    name = check_run_name(name)
    project = (Path(project) if project else Path.cwd() / "runs").expanduser().resolve()
    overrides = dict(overrides or {})
    check_option_keys(overrides, None, "--set")
    size_given = imgsz is not None
    imgsz = imgsz or ConvertedDataset.from_yaml(data).imgsz or DEFAULT_IMGSZ
    _check_sizes(imgsz, epochs, batch)
    if arch != "yolo":
        from .lightning_train import train_arch

        options = dict(imgsz=imgsz, epochs=epochs, batch=batch, device=device, name=name, project=project, resume=resume)
        return train_arch(data, arch, model, overrides=overrides, score_val=score_val, **options)
    allow_download = online or downloads_allowed()
    if resume:
        source = ModelSource(str(resume_checkpoint(project / name)))
    elif model is None:
        raise TrainConfigError("--model is required (a .pt checkpoint or a .yaml model config), unless --resume")
    else:
        source = resolve_model(model, weights_dir=weights_dir(), allow_download=allow_download)
    pretrained = overrides.get("pretrained")
    if isinstance(pretrained, str):
        pretrained = resolve_model(pretrained, weights_dir=weights_dir(), allow_download=allow_download)
        if pretrained.is_config:
            raise TrainConfigError(f"--set pretrained={overrides['pretrained']}: must be a .pt checkpoint")

    ultralytics = import_ultralytics(online=online)
    device = resolve_device(device)
    if isinstance(pretrained, ModelSource):
        overrides["pretrained"] = download_weights(pretrained)
    yolo = ultralytics.YOLO(download_weights(source))
    classify = yolo.task == CLASSIFY_TASK
    if classify and not size_given:
        imgsz = default_classifier_imgsz(imgsz)
    if not classify:
        _warn_on_size_mismatch(data, imgsz, resume)
    source_data = build_classify_view(data) if classify else data
    if resume:
        from ultralytics.cfg import DEFAULT_CFG_DICT

        check_option_keys(overrides, DEFAULT_CFG_DICT, "--set")
        args = {**overrides, "data": str(source_data), "device": device, "resume": True, "save_dir": str(project / name)}
    else:
        args = training_arguments(
            data=source_data,
            imgsz=imgsz,
            epochs=epochs,
            batch=batch,
            device=device,
            project=project,
            name=name,
            overrides=overrides,
            task_defaults=CLASSIFIER_DEFAULTS if classify else None,
        )
    if resume and (yolo.ckpt.get("epoch", -1) < 0 or yolo.ckpt.get("optimizer") is None):
        raise TrainConfigError(
            f"{source.source} is from a finished run: nothing to resume. Start a new run with "
            f"another --name, or fine-tune from it with --model {Path(source.source).with_name('best.pt')}."
        )
    yolo.add_callback("on_pretrain_routine_start", prepare_process)
    yolo.train(**args)
    trainer = yolo.trainer
    run_dir, best, imgsz = Path(trainer.save_dir), Path(trainer.best), int(trainer.args.imgsz)
    atomic_write_text(run_dir / TRAINED_ON, "".join(f"{path.stem}\n" for path in listed_images(data, "train")))
    metrics = {key: float(value) for key, value in (trainer.metrics or {}).items()}
    rsna_val = classifier_val = None
    if score_val:
        first_device = str(trainer.args.device).split(",")[0]
        scoring = dict(imgsz=imgsz, device=first_device, batch=batch if batch > 0 else DEFAULT_BATCH)
        if classify:
            classifier_val = score_classifier(best, data, run_dir, top1=metrics.get(TOP1_KEY), **scoring)
        else:
            rsna_val = score_validation(best, data, run_dir, **scoring)
    return TrainResult(
        run_dir=run_dir,
        best=best,
        data=data,
        imgsz=imgsz,
        device=str(trainer.args.device),
        metrics=metrics,
        rsna_val=rsna_val,
        classifier_val=classifier_val,
    )


def _warn_on_size_mismatch(data: Path, imgsz: int, resume: bool) -> None:
    """Warn when training at another size than ``convert --imgsz`` wrote the images at.

    ``predict`` decodes DICOMs at the training size, so only equal sizes give the model the
    same pixels in training and in prediction.
    """
    from ultralytics.utils import LOGGER

    converted = ConvertedDataset.from_yaml(data).imgsz
    if converted and converted != imgsz and not resume:
        LOGGER.warning(
            f"The dataset was converted at --imgsz {converted}, training runs at --imgsz {imgsz}: predict will decode "
            f"DICOMs at {imgsz}, so the model sees other pixels than in training. Convert and train at the same size."
        )


def check_data_yaml(path: Path) -> Path:
    """Return the absolute path of a readable dataset YAML, or raise :class:`TrainConfigError`."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TrainConfigError(f"{path}: dataset YAML not found (make one with `pneumo-yolo convert`)")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TrainConfigError(f"{path}: cannot read the dataset YAML ({error})") from error
    if not isinstance(content, dict) or not {"train", "val"} <= content.keys():
        raise TrainConfigError(f"{path}: not a YOLO dataset YAML (needs 'train' and 'val' entries)")
    return path


def check_run_name(name: str) -> str:
    """A run name must be one plain folder name, so the run stays inside the project folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise TrainConfigError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (one folder name)")
    return name


def resume_checkpoint(run_dir: Path) -> Path:
    """The ``last.pt`` to resume ``run_dir`` from, or raise :class:`TrainConfigError`."""
    checkpoint = run_dir / "weights" / "last.pt"
    if not checkpoint.is_file():
        raise TrainConfigError(f"Nothing to resume: {checkpoint} not found (check --name and --project)")
    return checkpoint


def _check_sizes(imgsz: int, epochs: int, batch: int) -> None:
    """Reject sizes Ultralytics would only fail on later."""
    if imgsz < 32:
        raise TrainConfigError(f"--imgsz {imgsz}: must be at least 32 (a multiple of 32)")
    if epochs < 1:
        raise TrainConfigError(f"--epochs {epochs}: must be at least 1")
    if batch < 1 and batch != -1:
        raise TrainConfigError(f"--batch {batch}: must be at least 1, or -1 for Ultralytics' AutoBatch")
