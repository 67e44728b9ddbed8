"""predict on several devices: the inputs split into one contiguous shard per device, one process per device.

``--device 0,1,2,3`` starts four processes (spawned, not forked: they load torch), each
running :func:`~pneumo_yolo.predict.device.predict_paths`, the very function of a
single-device run, on its shard with its own decoding pool. Their results are joined in
shard order, so the submission, its errors and the raw table are those of one device, and
written once, atomically, by the caller. ``--device cpu,cpu`` runs the same path on the CPU
(two processes sharing the cores: a test of the split, not a speed-up).

If a device process fails, the others are left to finish, then :class:`PredictError` names
the device and the problem (a usage error, the same on every device, is raised as it is), and
no output is written. Each process numbers its own SR and GSPS series (``--dicom-out``), so the
images of one study (one per study in RSNA) split over two devices get two series. A device
process ends with the run's process, even when that is killed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

from ..eval.detections import concatenate_raw
from ..nets.detector import DetectorError
from ..runtime.devices import DeviceError, Devices, auto_workers, cpu_count
from ..runtime.lifetime import job_processes, name_semaphores
from ..runtime.memory import ResourceError
from .device import DeviceOutput, PredictError, PredictSettings, predict_paths


def shard_paths(paths: Sequence[Path], n: int) -> list[list[Path]]:
    """``paths`` cut into ``n`` contiguous shards of nearly equal size, in order.

    The files of one patientId (a duplicate is a problem, reported as with one device) go to
    the shard of its first file.

    >>> [[p.as_posix() for p in shard] for shard in shard_paths([Path("a/x.dcm"), Path("a/y.dcm"), Path("b/x.dcm"), Path("b/z.dcm")], 2)]
    [['a/x.dcm', 'b/x.dcm', 'a/y.dcm'], ['b/z.dcm']]
    """
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.stem, []).append(path)
    stems = list(groups)
    bounds = [round(i * len(stems) / n) for i in range(n + 1)]
    return [[path for stem in stems[bounds[i] : bounds[i + 1]] for path in groups[stem]] for i in range(n)]


def join_predictions(parts: Sequence[DeviceOutput]) -> DeviceOutput:
    """The predictions of the shards as one, in shard order; loaded once the slowest device was."""
    joined = DeviceOutput(
        workers=parts[0].workers, batch=parts[0].batch, loaded_at=max(part.loaded_at for part in parts)
    )
    for part in parts:
        joined.strings.update(part.strings)
        joined.sizes.update(part.sizes)
        joined.errors += part.errors
    return joined


def predict_on_devices(
    paths: list[Path], settings: PredictSettings, devices: Devices, raw: Path | None = None
) -> DeviceOutput:
    """Predict ``paths`` split over ``devices`` (several, each named: ``"0"``, ``"1"``, ``"cpu"``), one process per device, which gets its own as a :class:`Devices`.

    ``settings.workers`` of ``None`` becomes :func:`~pneumo_yolo.runtime.devices.auto_workers` for
    all the devices together. Each process writes its raw detections to a part beside ``raw``;
    the parts are joined into ``raw`` once every device has succeeded.
    """
    if settings.workers is None:
        settings = replace(settings, workers=auto_workers(cpu_count(), devices.names))
    each = devices.each()
    shards = shard_paths(paths, len(each))
    if raw:
        raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pneumo-yolo-shards-", dir=raw.parent if raw else None) as scratch:
        parts = [Path(scratch) / f"shard{index}{raw.suffix}" if raw else None for index in range(len(each))]
        name_semaphores()
        with job_processes(len(each)) as pool:  # a process per device
            jobs = [
                pool.submit(
                    predict_paths, shard, replace(settings, progress=settings.progress and index == 0), device, part
                )
                for index, (shard, device, part) in enumerate(zip(shards, each, parts))
            ]
            found: list[DeviceOutput] = []
            failures: list[str] = []
            usage: list[Exception] = []
            for name, job in zip(devices.names, jobs):
                try:
                    found.append(job.result())
                except BrokenProcessPool:
                    failures.append("a device process ended abruptly (killed, or out of memory?)")
                except (DeviceError, ResourceError) as error:
                    usage.append(error)
                except Exception as error:  # whatever the device process raised, with its own message
                    failures.append(
                        f"device {name}: {error}"
                        if isinstance(error, (PredictError, DetectorError))
                        else f"device {name}: {type(error).__name__}: {error}"
                    )
        if usage:
            raise usage[0]
        if failures:
            raise PredictError("; ".join(dict.fromkeys(failures)) + "; nothing was written")
        if raw:
            concatenate_raw([part for part in parts if part is not None], raw)
    return join_predictions(found)
