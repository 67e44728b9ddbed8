"""Train an Ultralytics YOLO detector or image classifier on a converted RSNA dataset, offline and privately.

Arguments are layered, later ones winning: Ultralytics' defaults, the chest X-ray defaults in
``pneumo_yolo/cfg/cxr_train.yaml``, the main settings (``imgsz``, ``epochs``, ``batch``,
``devices``) and finally any other Ultralytics training argument (``overrides``: ``--set key=value``).
Every key is checked once against Ultralytics' configuration, before the model is built.

The task follows the model: a detector, or, for a model of Ultralytics' ``classify`` task
(``yolo11n-cls.yaml``), the image-level opacity classifier of :mod:`.classifier`, trained on a
symlinked view of the same images (:mod:`pneumo_yolo.data.classify_view`).

Runs go to ``<project>/<name>`` in Ultralytics' layout (``weights/best.pt``, ``results.csv``,
plots), with the files every run holds (:mod:`.common`), and ``project`` always absolute,
because Ultralytics files relative projects under its own folder, which is ``site-packages``
while pytest runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.classify_view import build_classify_view
from ..data.dataset import ConvertedDataset
from ..limits import load_yaml
from ..nets.classifier import CLASSIFY_TASK
from ..runtime.offline import downloads_allowed, import_ultralytics, prepare_process, weights_dir
from ..runtime.weights import ModelSource, WeightsError, download_weights, resolve_model
from ..settings import SettingError
from .budget import BUDGET_EPOCHS, UltralyticsWatch, watch_run, write_record
from .classifier import CLASSIFIER_DEFAULTS, TOP1_KEY, default_classifier_imgsz, score_classifier
from .common import DEFAULT_BATCH, TrainConfigError, TrainResult, TrainSettings, own_key_problems, write_trained_on
from .validation import score_validation

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def cxr_defaults() -> dict[str, Any]:
    """The chest X-ray training defaults shipped in ``cfg/cxr_train.yaml``."""
    text = (resources.files("pneumo_yolo") / "cfg" / "cxr_train.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text) or {})


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (``--set``) into ``overrides``; values are YAML scalars or lists, never evaluated as code.

    >>> parse_overrides(["lr0=1e-3", "cos_lr=true", "scale=[0.5, 1.5]", "cache=ram"])
    {'lr0': 0.001, 'cos_lr': True, 'scale': [0.5, 1.5], 'cache': 'ram'}
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingError("overrides", "expected key=value, e.g. lr0=0.002", value=repr(item))
        if key in overrides:
            raise SettingError("overrides", "given twice", value=key)
        overrides[key] = _parse_value(text.strip(), key)
    return overrides


def _parse_value(text: str, key: str) -> Any:
    """A ``--set`` value: YAML, plus Python-style ``None`` and ``1e-3`` (YAML 1.1 reads those as text)."""
    try:
        value = load_yaml(text)
    except yaml.YAMLError as error:
        raise SettingError(
            "overrides", f"not a valid value ({getattr(error, 'problem', error)})", value=f"{key}={text}"
        ) from error
    if isinstance(value, str) and value.lower() == "none":
        return None
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
        return float(value)
    return value


def option_key_problems(keys: Iterable[str], valid: Iterable[str]) -> list[str]:
    """What is wrong with each of ``keys`` as an Ultralytics training argument, with near matches for typos.

    Keys with a setting of their own (``epochs``...) and ``mode``/``task`` are refused, and so is
    any key outside ``valid`` (Ultralytics' configuration keys).

    >>> option_key_problems(["mosiac", "lr0"], ["mosaic", "mixup", "lr0"])
    ["'mosiac' is not an Ultralytics training argument; did you mean 'mosaic'?"]
    """
    valid = sorted(valid)
    keys = list(keys)
    problems = own_key_problems(keys)
    for key in keys:
        if key not in valid and not any(f"'{key}'" in problem for problem in problems):
            near = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean {' or '.join(repr(k) for k in near)}?" if near else "see `yolo cfg` for the list"
            problems.append(f"'{key}' is not an Ultralytics training argument; {hint}")
    return problems


def training_arguments(
    settings: TrainSettings, *, data: Path, imgsz: int, task_defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Layer the arguments (see module doc) and check their values with Ultralytics' own checks.

    ``settings.devices`` must name the devices (resolved); ``settings.overrides`` were checked by
    :func:`train_yolo`. ``task_defaults`` (the classifier's) go over the chest X-ray defaults,
    under everything else. Call :func:`pneumo_yolo.runtime.offline.import_ultralytics` first.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    defaults = {**cxr_defaults(), **(task_defaults or {})}
    problems = option_key_problems(defaults, DEFAULT_CFG_DICT)
    if problems:
        raise TrainConfigError("pneumo_yolo/cfg/cxr_train.yaml: " + "; ".join(problems))
    main = {
        "data": str(data),
        "imgsz": imgsz,
        "epochs": settings.epochs,
        "batch": settings.batch,
        "device": settings.devices.ultralytics,
    }
    args = {**defaults, **main, "project": str(settings.project), "name": settings.name, **settings.overrides}
    try:
        check_cfg(args)
    except (TypeError, ValueError) as error:
        raise SettingError("overrides", f"holds an invalid training argument: {error}") from error
    return args


def train_yolo(dataset: ConvertedDataset, settings: TrainSettings, imgsz: int) -> TrainResult:
    """Train (or resume) a YOLO detector or an opacity classifier (as ``settings.model``'s task says) on ``dataset`` at ``imgsz``.

    Called by :func:`pneumo_yolo.train.run.train`, which checks what depends on the dataset. A
    classifier trains at :func:`.classifier.default_classifier_imgsz` unless ``settings.imgsz``
    is given. ``score_val`` also scores ``best.pt`` on the validation split: a detector
    with the RSNA metric (:func:`.validation.score_validation`), a classifier by its top-1
    accuracy and ROC AUC (:func:`.classifier.score_classifier`). A resumed run keeps the
    arguments stored in its checkpoint; only ``dataset``, ``devices`` and ``overrides`` apply.
    ``budget_min`` and ``curve_points`` (a detector on one device) train for a budget instead of
    ``epochs`` and score a learning curve (:class:`.budget.UltralyticsWatch`), into ``curve.json``.
    """
    model, name, project, batch = settings.model, settings.name, settings.project, settings.batch
    overrides = dict(settings.overrides)
    allow_download = settings.online or downloads_allowed()
    if settings.resume:
        source = ModelSource(str(resume_checkpoint(project / name)))
    elif model is None:
        raise SettingError("model", "is required (a .pt checkpoint or a .yaml model config), unless resuming")
    else:
        source = resolve_model(model, weights_dir=weights_dir(), allow_download=allow_download)
    pretrained = overrides.get("pretrained")
    if isinstance(pretrained, str):
        pretrained = resolve_model(pretrained, weights_dir=weights_dir(), allow_download=allow_download)
        if pretrained.is_config:
            raise SettingError("overrides", "must be a .pt checkpoint", value=f"pretrained={overrides['pretrained']}")

    ultralytics = import_ultralytics(online=settings.online)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    problems = option_key_problems(overrides, DEFAULT_CFG_DICT)  # before the model is built: a typo fails in seconds
    if problems:
        raise SettingError("overrides", "; ".join(problems))
    dataset.check_parts()  # after the options: a mistake in them is named first
    devices = settings.devices.resolve()
    resume = settings.resume
    if isinstance(pretrained, ModelSource):
        overrides["pretrained"] = download_weights(pretrained)
    try:
        yolo = ultralytics.YOLO(download_weights(source))
    except FileNotFoundError as error:  # a model config name that Ultralytics does not ship
        raise WeightsError(
            f"--model {model}: {error}; give a model config that Ultralytics ships (yolo11n.yaml … yolo11x.yaml, "
            "yolov8s.yaml, yolov3.yaml, yolo11n-cls.yaml), or the path of your own .yaml or .pt"
        ) from None
    except Exception as failure:  # torch and Ultralytics raise many types for a file that is not a checkpoint
        reason = (str(failure).splitlines() or [""])[0][:300]
        raise WeightsError(
            f"--model {model or source.source}: cannot be loaded as YOLO weights ({type(failure).__name__}: {reason})"
        ) from None
    classify = yolo.task == CLASSIFY_TASK
    if classify and settings.imgsz is None:
        imgsz = default_classifier_imgsz(imgsz)
    if not classify:
        _warn_on_size_mismatch(dataset, imgsz, resume)
    if dataset.yaml is None:
        raise TrainConfigError(
            f"{dataset.root}: open the dataset from its YAML (ConvertedDataset.from_yaml) to train on it"
        )
    source_data = build_classify_view(dataset) if classify else dataset.yaml
    if resume:
        args = {
            **overrides,
            "data": str(source_data),
            "device": devices.ultralytics,
            "resume": True,
            "save_dir": str(project / name),
        }
    else:
        args = training_arguments(
            replace(settings, devices=devices, overrides=overrides),
            data=source_data,
            imgsz=imgsz,
            task_defaults=CLASSIFIER_DEFAULTS if classify else None,
        )
    if resume and (yolo.ckpt.get("epoch", -1) < 0 or yolo.ckpt.get("optimizer") is None):
        raise TrainConfigError(
            f"{source.source} is from a finished run: nothing to resume. Start a new run with "
            f"another --name, or fine-tune from it with --model {Path(source.source).with_name('best.pt')}."
        )
    yolo.add_callback("on_pretrain_routine_start", prepare_process)
    watch = (
        _watch(yolo, args, replace(settings, devices=devices), dataset, classify=classify)
        if settings.budget_min or settings.curve_points
        else None
    )
    yolo.train(**args)
    trainer = yolo.trainer
    run_dir, best, imgsz = Path(trainer.save_dir), Path(trainer.best), int(trainer.args.imgsz)
    write_trained_on(run_dir, dataset)
    if watch is not None:
        write_record(run_dir, watch.record())
    metrics = {key: float(value) for key, value in (trainer.metrics or {}).items()}
    rsna_val = classifier_val = None
    if settings.score_val:
        scoring_batch = batch if batch > 0 else DEFAULT_BATCH
        if classify:
            classifier_val = score_classifier(
                best, dataset, run_dir, top1=metrics.get(TOP1_KEY), imgsz=imgsz, device=devices, batch=scoring_batch
            )
        else:
            rsna_val = score_validation(best, dataset, run_dir, imgsz=imgsz, device=devices, batch=scoring_batch)
    return TrainResult(
        run_dir=run_dir,
        best=best,
        dataset=dataset,
        imgsz=imgsz,
        device=devices.ultralytics,
        metrics=metrics,
        rsna_val=rsna_val,
        classifier_val=classifier_val,
    )


def _watch(
    yolo: Any, args: dict[str, Any], settings: TrainSettings, dataset: ConvertedDataset, *, classify: bool
) -> UltralyticsWatch:
    """Hook a budget and a learning curve into ``yolo``'s training (``settings.devices`` resolved); a budgeted run starts with :data:`BUDGET_EPOCHS` epochs, re-estimated after each."""
    devices, batch = settings.devices, settings.batch
    if classify or len(devices.names) > 1:
        raise TrainConfigError("a training budget or a learning curve takes a YOLO detector on one device")
    budget, clock, curve = watch_run(settings.budget_min, settings.curve_points, on_cpu=devices.on_cpu)
    watch = UltralyticsWatch(budget, clock, curve, dataset, device=devices, batch=batch if batch > 0 else DEFAULT_BATCH)
    for event, callback in watch.callbacks().items():
        yolo.add_callback(event, callback)
    if budget is not None:
        args["epochs"] = BUDGET_EPOCHS
    return watch


def _warn_on_size_mismatch(dataset: ConvertedDataset, imgsz: int, resume: bool) -> None:
    """Warn when training at another size than ``convert --imgsz`` wrote the images at.

    ``predict`` decodes DICOMs at the training size, so only equal sizes give the model the
    same pixels in training and in prediction.
    """
    from ultralytics.utils import LOGGER

    converted = dataset.imgsz
    if converted and converted != imgsz and not resume:
        LOGGER.warning(
            f"The dataset was converted at --imgsz {converted}, training runs at --imgsz {imgsz}: predict will decode "
            f"DICOMs at {imgsz}, so the model sees other pixels than in training. Convert and train at the same size."
        )


def resume_checkpoint(run_dir: Path) -> Path:
    """The ``last.pt`` to resume ``run_dir`` from, or raise :class:`TrainConfigError`."""
    checkpoint = run_dir / "weights" / "last.pt"
    if not checkpoint.is_file():
        raise TrainConfigError(f"Nothing to resume: {checkpoint} not found (check the run's name and project)")
    return checkpoint
