"""``--device``, read in one place: the devices a run uses, and what each library calls them.

:meth:`Devices.parse` reads ``--device`` once, on the command line (``pneumo_yolo.cli``); the
library receives the :class:`Devices` and never reads the text again. ``"0"`` is GPU 0,
``"0,1,2,3"`` several GPUs, ``"cpu"`` the CPU (``"cpu,cpu"`` runs a multi-device path on the
CPU, for tests), ``"mps"`` Apple's GPU, ``"cuda:1"`` is read as ``"1"``. :meth:`Devices.resolve`
fills in the default device and checks that the named GPUs exist, once: it returns resolved
devices, which resolve to themselves. Ultralytics, torch and Lightning then get the devices in
their own spelling (:attr:`Devices.ultralytics`, :attr:`Devices.torch`, :meth:`Devices.lightning`);
a process that drives one device of several gets it from :meth:`Devices.each`.

The module also holds the pure defaults that depend on the device: ``--workers auto``
(decoding processes per device, from the cores this process may use) and the default
``--batch`` of ``predict``. Nothing here imports torch at import time.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..settings import SettingError

MAX_WORKERS_PER_DEVICE = 8
"""Decoding processes per GPU at most (each costs about 100 MB; see docs/predict.md for the decode rates)."""
GPU_BATCH = 32
"""Images per model call on a GPU (Apple's too)."""
CPU_BATCH = 4
"""Images per model call on the CPU (the fastest and leanest on 2 cores: docs/predict.md)."""
CPU_NAMES = ("cpu",)
"""The names of the CPU; Apple's GPU (``mps``) is a GPU, with a GPU's batch and decoding processes."""
MPS = "mps"
_GPU = re.compile(r"(?:cuda:)?(\d+)")
LOGGER = logging.getLogger("pneumo_yolo")


class DeviceError(SettingError):
    """A ``device`` that names no usable device; the message says which and what exists."""

    def __init__(self, problem: str, *, value: object = None) -> None:
        super().__init__("device", problem, value=value)


@dataclass(frozen=True)
class Devices:
    """The devices of one ``--device``: ``("0", "1")``, ``("cpu",)``; empty for the default device.

    ``resolved``: checked against this machine by :meth:`resolve` (the default filled in).

    >>> Devices.parse("0, 1").names, Devices.parse("CPU").names, Devices.parse("cuda:2").names, Devices.parse(None).names
    (('0', '1'), ('cpu',), ('2',), ())
    >>> Devices.parse("0,1").ultralytics, Devices.parse("1,0").torch, Devices.parse("cpu").torch
    ('0,1', 'cuda:1', 'cpu')
    >>> [device.names for device in Devices.parse("0,1").each()]
    [('0',), ('1',)]
    >>> Devices.parse("0,cpu")
    Traceback (most recent call last):
    ...
    pneumo_yolo.runtime.devices.DeviceError: device '0,cpu': mixes cpu and gpu: name GPUs only (0,1) or the CPU only (cpu)
    """

    names: tuple[str, ...] = ()
    resolved: bool = field(default=False, compare=False)

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
            elif part in (*CPU_NAMES, MPS):
                names.append(part)
            else:
                raise DeviceError(
                    f"{part!r} is not a device; use a GPU index (0, or 0,1,2,3 for several), cpu or mps",
                    value=repr(text),
                )
        kinds = {name if name in (*CPU_NAMES, MPS) else "gpu" for name in names}
        if len(kinds) > 1:
            raise DeviceError(
                f"mixes {' and '.join(sorted(kinds))}: name GPUs only (0,1) or the CPU only (cpu)", value=repr(text)
            )
        gpus = [name for name in names if name not in CPU_NAMES]
        if len(set(gpus)) < len(gpus):
            raise DeviceError("names a GPU twice: name each GPU once (0,1)", value=repr(text))
        return cls(tuple(names))

    def each(self) -> tuple[Devices, ...]:
        """One :class:`Devices` per device, in order, for the process that drives it (resolved if these are)."""
        return tuple(Devices((name,), resolved=self.resolved) for name in self.names)

    @property
    def first(self) -> str:
        """The first device (the one that scores a run after training)."""
        return self._named().names[0]

    @property
    def on_cpu(self) -> bool:
        return all(name in CPU_NAMES for name in self._named().names)

    @property
    def ultralytics(self) -> str:
        """What Ultralytics takes: ``"0,1"``, ``"cpu"``, ``"mps"``."""
        return ",".join(self._named().names)

    @property
    def torch(self) -> str:
        """The first device as torch names it: ``"cuda:0"``, ``"cpu"``, ``"mps"``."""
        first = self.first
        return first if first in (*CPU_NAMES, MPS) else f"cuda:{first}"

    def lightning(self) -> dict[str, Any]:
        """Lightning's ``accelerator``, ``devices``, ``strategy`` and ``precision``.

        >>> Devices.parse("cpu").lightning()["accelerator"], Devices.parse("0,1").lightning()["strategy"]
        ('cpu', 'ddp_find_unused_parameters_true')
        """
        first = self.first
        if first in (*CPU_NAMES, MPS):
            return {"accelerator": first, "devices": 1, "strategy": "auto", "precision": "32-true"}
        gpus = [int(name) for name in self.names]
        strategy = "ddp_find_unused_parameters_true" if len(gpus) > 1 else "auto"
        return {"accelerator": "gpu", "devices": gpus, "strategy": strategy, "precision": "16-mixed"}

    def resolve(self) -> Devices:
        """These devices, checked against the machine; the default is GPU 0 where CUDA has one, else the CPU (with a warning).

        Imports torch, the first time only, unless every device is the CPU, which every machine has: resolved
        devices resolve to themselves. Raises :class:`DeviceError` for a GPU that this machine does not have.
        """
        if self.resolved:
            return self
        if self.names and all(name in CPU_NAMES for name in self.names):
            return Devices(self.names, resolved=True)
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not self.names:
            if gpus:
                return Devices(("0",), resolved=True)
            LOGGER.warning(
                "No CUDA GPU found: running on the CPU, which is slow (fine for tests and demos, not for real runs)."
            )
            return Devices(("cpu",), resolved=True)
        missing = [name for name in self.names if name not in (*CPU_NAMES, MPS) and int(name) >= gpus]
        if missing:
            have = f"GPUs 0..{gpus - 1}" if gpus else "no CUDA GPU"
            raise DeviceError(f"GPU {missing[0]} is not available (this machine has {have}); use cpu", value=missing[0])
        if MPS in self.names and not torch.backends.mps.is_available():
            raise DeviceError("Apple's MPS is not available on this machine; use cpu", value=MPS)
        return Devices(self.names, resolved=True)

    def _named(self) -> Devices:
        if not self.names:
            raise DeviceError("the default device is not resolved yet: call resolve() first")
        return self


CPU = Devices(CPU_NAMES)
"""The CPU, as a library caller names it."""


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
    >>> auto_workers(16, ["mps"])
    8
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

    >>> auto_batch("cpu"), auto_batch("0"), auto_batch("mps")
    (4, 32, 32)
    """
    return CPU_BATCH if device in CPU_NAMES else GPU_BATCH
