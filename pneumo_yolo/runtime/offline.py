"""Ultralytics, set up for private and offline use.

Ultralytics reads its environment once, at import: the online probe, automatic pip installs
and the folder that holds its settings, fonts and DDP scratch files are all fixed then. So
:func:`configure` sets them before the first import, whatever the user's own ``YOLO_*``
variables say, and :func:`import_ultralytics` is the one way the rest of pneumo-yolo imports
Ultralytics:

- ``YOLO_OFFLINE=1``: no DNS probe at import, so Ultralytics believes it is offline and never
  sends analytics or error reports; the settings also get ``sync: false`` and every
  third-party logger (ClearML, Comet, DVC, MLflow, Ray Tune, TensorBoard, W&B) off.
  ``ULTRALYTICS_API_KEY`` is removed from the environment, so no run streams to Ultralytics
  Platform.
- ``YOLO_AUTOINSTALL=false``: Ultralytics never runs ``pip install``.
- ``YOLO_CONFIG_DIR=<home>``: its settings live in ``<home>/Ultralytics``, where matplotlib's
  DejaVu Sans is copied as ``Arial.ttf`` and ``Arial.Unicode.ttf`` so the font check finds a
  font instead of downloading one.
- Ultralytics never sees our command line: it keeps ``sys.argv`` as ``ARGV`` and takes itself
  for its own ``yolo`` command when ``ARGV[0]`` ends with ``yolo`` and ``predict`` is an
  argument (``pneumo-yolo predict`` does both): ``Model.predict`` then returns ``None`` and
  turns ``save`` and ``verbose`` on. Every ``ARGV`` in Ultralytics is replaced by
  :data:`LIBRARY_ARGV`.

``<home>`` is ``$PNEUMO_YOLO_HOME``, or the user's cache folder (``~/.cache/pneumo-yolo`` on
Linux). Pretrained weights live in ``<home>/weights``.

Downloads are off unless the user allows them with ``PNEUMO_YOLO_ONLINE=1`` (``train
--online`` sets it): the tool runs on air-gapped machines, where a download attempt can stall
for as long as the network takes to time out.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..files import atomic_write_bytes
from .devices import cpu_count

ENV_HOME = "PNEUMO_YOLO_HOME"
ENV_ONLINE = "PNEUMO_YOLO_ONLINE"
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
AMP_CHECK_WEIGHTS = "yolo26n.pt"
"""The checkpoint Ultralytics' ``check_amp`` loads on CUDA (and downloads if it is missing)."""

LIBRARY_ARGV = ("pneumo_yolo",)
"""What Ultralytics sees as the command line: a library call, never its own ``yolo`` command."""

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_PRIVATE_SETTINGS: dict[str, Any] = {
    "sync": False,
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}


class ImportedElsewhereError(RuntimeError):
    """Ultralytics was imported before pneumo-yolo could set it up; the message says how to fix it."""


def home_dir() -> Path:
    """Folder for Ultralytics' settings, fonts and weights: ``$PNEUMO_YOLO_HOME`` or the user cache."""
    if env := os.environ.get(ENV_HOME, "").strip():
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pneumo-yolo", appauthor=False)).resolve()


def weights_dir() -> Path:
    """Where pretrained weights such as ``yolo11s.pt`` are looked for (and downloaded to when online)."""
    return home_dir() / "weights"


def downloads_allowed() -> bool:
    """True only where the user opted in with ``PNEUMO_YOLO_ONLINE=1`` (or ``train --online``)."""
    return os.environ.get(ENV_ONLINE, "").strip().lower() in _TRUE


def ultralytics_environment(home: Path) -> dict[str, str]:
    """The ``YOLO_*`` variables to set before Ultralytics is imported (they override the user's).

    >>> ultralytics_environment(Path("/cache/pneumo-yolo"))["YOLO_OFFLINE"]
    '1'
    """
    return {"YOLO_CONFIG_DIR": str(home), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def configure(*, online: bool = False) -> Path:
    """Prepare the environment for Ultralytics and return ``<home>``; safe to call repeatedly.

    ``online=True`` allows weight downloads for this process and its children (DDP workers).
    Raises :class:`ImportedElsewhereError` when Ultralytics was already imported without this
    set-up, since it cannot be changed after the import, and an ``OSError`` that says so where
    ``<home>`` cannot be written.
    """
    home = home_dir()
    os.environ.update(ultralytics_environment(home))
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    if online:
        os.environ[ENV_ONLINE] = "1"
    try:
        (home / "Ultralytics").mkdir(parents=True, exist_ok=True)  # before matplotlib is imported, which warns about it
        install_fonts(home / "Ultralytics")
    except OSError as error:  # a read-only HOME, a $PNEUMO_YOLO_HOME that is a file, a full disk
        reason = (error.strerror or "cannot be written").lower()
        raise OSError(
            error.errno,
            f"{reason}; the cache folder (${ENV_HOME}, else the user's cache) must be a folder that can be written: "
            f"set {ENV_HOME} to one",
            str(error.filename or home),
        ) from None
    if "ultralytics.utils" in sys.modules:
        _check_imported(sys.modules["ultralytics.utils"], home)
    return home


def install_fonts(config_dir: Path) -> None:
    """Copy matplotlib's DejaVu Sans to the font names Ultralytics' ``check_font`` looks for."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in FONT_NAMES:
        target = config_dir / name
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            atomic_write_bytes(target, source.read_bytes())  # another process may be reading it


def import_ultralytics(*, online: bool = False) -> ModuleType:
    """Configure (see :func:`configure`), import and return ``ultralytics``, set up for this tool.

    After the import it also makes the settings private (``sync`` and integrations off, weights
    in ``<home>/weights``), makes every CPU run use all cores (Ultralytics resets torch to
    ``min(8, cores - 1)`` threads, 1 on a 2-core machine, whenever it selects the CPU), and keeps
    the CUDA AMP check from trying to download its checkpoint where downloads are off.
    """
    home = configure(online=online)
    import ultralytics
    import ultralytics.engine.trainer as trainer_module
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import utils

    _check_imported(utils, home)
    hide_command_line()
    wanted = {**_PRIVATE_SETTINGS, "weights_dir": str(weights_dir())}
    if any(utils.SETTINGS.get(key) != value for key, value in wanted.items()):
        utils.SETTINGS.update(wanted)
    utils.WEIGHTS_DIR = weights_dir()  # read from the settings at import, so stale on a first run
    torch_utils.NUM_THREADS = cpu_count()
    if not getattr(trainer_module.check_amp, "offline_safe", False):
        trainer_module.check_amp = offline_safe_amp_check(trainer_module.check_amp)
    return ultralytics


def use_cpu_threads(threads: int) -> None:
    """Have torch use ``threads`` threads on the CPU, from now on and whenever Ultralytics selects the CPU again.

    Call it after :func:`import_ultralytics`, which sets them to every core.
    """
    import torch
    import ultralytics.utils.torch_utils as torch_utils

    torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)


def hide_command_line() -> None:
    """Point every imported Ultralytics module's ``ARGV`` at :data:`LIBRARY_ARGV`, whatever ``sys.argv`` holds.

    Modules imported later copy ``ultralytics.utils.ARGV``, which is replaced first.
    """
    for name, module in list(sys.modules.items()):
        if (name == "ultralytics" or name.startswith("ultralytics.")) and hasattr(module, "ARGV"):
            setattr(module, "ARGV", list(LIBRARY_ARGV))  # noqa: B010  (a module attribute mypy cannot see)


def prepare_process(trainer: Any = None) -> None:
    """Trainer callback (``on_pretrain_routine_start``) that applies :func:`import_ultralytics`.

    Registered by ``train`` so that multi-GPU DDP workers, which Ultralytics starts as fresh
    Python processes, get the same set-up before their AMP check.
    """
    import_ultralytics()


def offline_safe_amp_check(check_amp: Any) -> Any:
    """Wrap Ultralytics' ``check_amp`` so that it never waits on a download that is not allowed.

    On a GPU, offline and without ``<weights_dir>/yolo26n.pt``, it returns True (AMP stays on),
    which is what Ultralytics itself decides once the download has failed. On the CPU and MPS,
    or where the checkpoint is present or downloads are allowed, Ultralytics' check runs.
    """

    @functools.wraps(check_amp)
    def checked(model: Any) -> bool:
        from ultralytics.utils import LOGGER, WEIGHTS_DIR

        weights = WEIGHTS_DIR / AMP_CHECK_WEIGHTS
        device = next(model.parameters()).device
        if device.type in {"cpu", "mps"} or downloads_allowed() or weights.is_file():
            return check_amp(model)
        LOGGER.warning(
            f"AMP: check skipped (offline, no {weights}); AMP stays on. Place yolo26n.pt there to run "
            "the check, or pass --set amp=False if losses turn NaN (known on GTX 16xx cards)."
        )
        return True

    checked.offline_safe = True  # type: ignore[attr-defined]
    return checked


def _check_imported(utils: ModuleType, home: Path) -> None:
    """Raise :class:`ImportedElsewhereError` if the imported Ultralytics was set up elsewhere or probed the network.

    Ultralytics fixes its settings folder, its online probe and its pip auto-install once, at
    import, and writes its settings file as soon as they change: an Ultralytics imported with
    the user's own set-up cannot be made offline and private afterwards without changing the
    user's own settings file, so pneumo-yolo refuses to run it and says how to start again.
    """
    config_dir = Path(utils.USER_CONFIG_DIR).resolve()
    if config_dir != (home / "Ultralytics").resolve() or utils.ONLINE:
        raise ImportedElsewhereError(
            f"Ultralytics was imported before pneumo-yolo could set it up (its settings are in {config_dir}, "
            f"its online probe is {'on' if utils.ONLINE else 'off'}). Ultralytics reads these once, at import, so "
            "pneumo-yolo cannot make this copy run offline and private. In a notebook, restart the kernel and run "
            "`import pneumo_yolo.runtime.offline as offline; offline.configure()` before `from ultralytics import YOLO`; "
            "in a script, call pneumo_yolo.runtime.offline.configure() before importing ultralytics."
        )
