"""``--device``, read in one place: the devices a run uses, and what each library calls them.

:meth:`Devices.parse` is the one reader of ``--device`` for every command: ``"0"`` is GPU 0,
``"0,1,2,3"`` several GPUs, ``"cpu"`` the CPU (``"cpu,cpu"`` runs a multi-device path on the
CPU, for tests), ``"cuda:1"`` is read as ``"1"``. :meth:`Devices.resolve` fills in the default
device and checks that the named GPUs exist. Ultralytics, torch and Lightning then get the
devices in their own spelling (:attr:`Devices.ultralytics`, :attr:`Devices.torch`,
:meth:`Devices.lightning`).

The module also holds the pure defaults that depend on the device: ``--workers auto``
(decoding processes per device, from the cores this process may use) and the default
``--batch`` of ``predict``. Nothing here imports torch at import time.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_WORKERS_PER_DEVICE = 8
"""Decoding processes per GPU at most (each costs about 100 MB; see docs/predict.md for the decode rates)."""
GPU_BATCH = 32
"""Images per model call on a GPU."""
CPU_BATCH = 4
"""Images per model call on the CPU (the fastest and leanest on 2 cores: docs/predict.md)."""
CPU_NAMES = ("cpu", "mps")
_GPU = re.compile(r"(?:cuda:)?(\d+)")
LOGGER = logging.getLogger("pneumo_yolo")


class DeviceError(ValueError):
    """A ``--device`` that names no usable device; the message says which and what exists."""


@dataclass(frozen=True)
class Devices:
    """The devices of one ``--device``: ``("0", "1")``, ``("cpu",)``; empty for the default device.

    >>> Devices.parse("0, 1").names, Devices.parse("CPU").names, Devices.parse("cuda:2").names, Devices.parse(None).names
    (('0', '1'), ('cpu',), ('2',), ())
    >>> Devices.parse("0,1").ultralytics, Devices.parse("1,0").torch, Devices.parse("cpu").torch
    ('0,1', 'cuda:1', 'cpu')
    >>> Devices.parse("0,cpu")
    Traceback (most recent call last):
    ...
    pneumo_yolo.runtime.devices.DeviceError: --device '0,cpu' mixes cpu and gpu: name GPUs only (0,1) or the CPU only (cpu)
    """

    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Devices:
        """Read ``--device``; raises :class:`DeviceError` for anything but GPU indices, ``cpu`` or ``mps``."""
        if text is None or not text.strip():
            return cls()
        names = []
        for part in text.split(","):
            part = part.strip().lower()
            gpu = _GPU.fullmatch(part)
            if gpu:
                names.append(str(int(gpu.group(1))))
            elif part in CPU_NAMES:
                names.append(part)
            else:
                raise DeviceError(
                    f"--device {text!r}: {part!r} is not a device; use a GPU index (0, or 0,1,2,3 for several) or cpu"
                )
        kinds = {name if name in CPU_NAMES else "gpu" for name in names}
        if len(kinds) > 1:
            raise DeviceError(
                f"--device {text!r} mixes {' and '.join(sorted(kinds))}: name GPUs only (0,1) or the CPU only (cpu)"
            )
        gpus = [name for name in names if name not in CPU_NAMES]
        if len(set(gpus)) < len(gpus):
            raise DeviceError(f"--device {text!r} names a GPU twice: name each GPU once (0,1)")
        return cls(tuple(names))

    @property
    def first(self) -> str:
        """The first device (the one that scores a run after training)."""
        return self._named().names[0]

    @property
    def on_cpu(self) -> bool:
        return all(name in CPU_NAMES for name in self._named().names)

    @property
    def ultralytics(self) -> str:
        """What Ultralytics takes: ``"0,1"``, ``"cpu"``."""
        return ",".join(self._named().names)

    @property
    def torch(self) -> str:
        """The first device as torch names it: ``"cuda:0"``, ``"cpu"``."""
        first = self.first
        return first if first in CPU_NAMES else f"cuda:{first}"

    def lightning(self) -> dict[str, Any]:
        """Lightning's ``accelerator``, ``devices``, ``strategy`` and ``precision``.

        >>> Devices.parse("cpu").lightning()["accelerator"], Devices.parse("0,1").lightning()["strategy"]
        ('cpu', 'ddp_find_unused_parameters_true')
        """
        first = self.first
        if first in CPU_NAMES:
            return {"accelerator": first, "devices": 1, "strategy": "auto", "precision": "32-true"}
        gpus = [int(name) for name in self.names]
        strategy = "ddp_find_unused_parameters_true" if len(gpus) > 1 else "auto"
        return {"accelerator": "gpu", "devices": gpus, "strategy": strategy, "precision": "16-mixed"}

    def resolve(self) -> Devices:
        """These devices, checked against the machine; the default is GPU 0 where CUDA has one, else the CPU (with a warning).

        Imports torch. Raises :class:`DeviceError` for a GPU that this machine does not have.
        """
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not self.names:
            if gpus:
                return Devices(("0",))
            LOGGER.warning(
                "No CUDA GPU found: running on the CPU, which is slow (fine for tests and demos, not for real runs)."
            )
            return Devices(("cpu",))
        missing = [name for name in self.names if name not in CPU_NAMES and int(name) >= gpus]
        if missing:
            have = f"GPUs 0..{gpus - 1}" if gpus else "no CUDA GPU"
            raise DeviceError(
                f"--device {','.join(self.names)}: GPU {missing[0]} is not available (this machine has {have}); use --device cpu"
            )
        if "mps" in self.names and not torch.backends.mps.is_available():
            raise DeviceError("--device mps: Apple's MPS is not available on this machine; use --device cpu")
        return self

    def _named(self) -> Devices:
        if not self.names:
            raise DeviceError("the default device is not resolved yet: call resolve() first")
        return self


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_workers(cpu_count: int, devices: Sequence[str]) -> int:
    """Decoding processes per device for ``--workers auto``; ``devices`` are resolved (``"cpu"``, ``"0"``, ``"1"``…).

    - On the CPU the model itself uses every core, so one decoding process runs beside it
      (none on a single core, or with more CPU device processes than cores): decoding
      costs a few ms an image where the model costs tens of ms.
    - On GPUs decoding is the bottleneck: each device process keeps one core for itself
      (feeding the GPU, post-processing, writing) and the other cores are shared equally
      between the devices, at least one and at most :data:`MAX_WORKERS_PER_DEVICE` each.

    >>> auto_workers(2, ["cpu"]), auto_workers(16, ["cpu"]), auto_workers(1, ["cpu"])
    (1, 1, 0)
    >>> auto_workers(16, ["0"]), auto_workers(16, ["0", "1", "2", "3"]), auto_workers(2, ["0"]), auto_workers(4, ["0", "1", "2", "3"])
    (8, 3, 1, 1)
    """
    if not devices:
        raise ValueError("no device")
    if all(device in CPU_NAMES for device in devices):
        return 1 if cpu_count > len(devices) else 0
    spare = (cpu_count - len(devices)) // len(devices)
    return max(1, min(MAX_WORKERS_PER_DEVICE, spare))


def auto_batch(device: str) -> int:
    """Images per model call (and per decoding task) when ``--batch`` is not given, on a resolved ``device``.

    >>> auto_batch("cpu"), auto_batch("0")
    (4, 32)
    """
    return CPU_BATCH if device in CPU_NAMES else GPU_BATCH
