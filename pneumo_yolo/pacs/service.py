"""``pneumo-yolo listen``: the spool, the models, the storage SCP and the worker, together until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from ..predict.device import PredictSettings
from ..predict.process import PredictorProcess
from ..runtime.devices import Devices, cpu_count
from .node import NodeSettings, start_node
from .send import Destination
from .spool import Spool
from .worker import Backoff, Worker

LOG = logging.getLogger("pneumo_yolo.pacs")
MAX_CPU_LANES = 4
"""Lanes at most on the CPU (each holds a copy of the models and its buffers)."""


class ListenError(RuntimeError):
    """A node that cannot start: its port taken, its spool unusable, a host that cannot be resolved."""


@dataclass(frozen=True)
class ListenSettings:
    """Everything ``listen`` needs: the node, the models (``predict``'s settings), where results go, the spool."""

    node: NodeSettings
    predict: PredictSettings
    destination: Destination
    spool: Path
    device: Devices
    """The one device the models run on, as ``--device`` gave it (resolved when the models load)."""
    batch: int | None = None
    """Images per prediction step; ``None``: ``predict``'s default for the device."""
    backoff: Backoff = Backoff()


def warm_up(predictor: PredictorProcess, folder: Path) -> None:
    """Predict a blank synthetic radiograph end to end (decoding, models, SR) in each lane, so that no first image is slow.

    The first call of each step imports and initialises what it needs (pixel decoders, the
    model's kernels, highdicom), which took seconds: the node pays that before it listens. A
    lane busy with its warm-up leaves the next one to another lane.
    """
    import numpy as np

    from ..dicom.write import write_dicom

    path = folder / "warm-up.dcm"
    write_dicom(path, np.full((256, 256), 128, np.uint8), patient_id="warm-up")
    try:
        for _ in range(predictor.lanes):
            predictor.submit([path])
        outputs = [predictor.collect() for _ in range(predictor.lanes)]
    finally:
        path.unlink(missing_ok=True)
    for written in {result for found in outputs for result in found.results.get(path.stem, [])}:
        written.unlink(missing_ok=True)


def lanes_for(device: Devices) -> int:
    """Batches the models predict side by side: on the CPU, one per core (up to :data:`MAX_CPU_LANES`), else one.

    On two cores, two threads with a copy of yolo11n each and one torch thread each predicted
    14.7 and 19.2 images/s where one copy with two torch threads predicted 13.6 and 16.0 (512
    px, two runs each): the two threads of one model wait for each other at every layer, and
    for any other program that takes one of the cores.
    """
    return min(cpu_count(), MAX_CPU_LANES) if device.on_cpu else 1


def listen(settings: ListenSettings) -> dict[str, int]:
    """Run the node until SIGTERM or SIGINT, then finish the current batch; return the spool's count per state.

    The models load before the port opens, so a caller is never kept waiting for them.
    """
    from .spool import SpoolError

    warnings.filterwarnings("ignore", module="pydicom|highdicom")  # their messages quote header values: keep PHI out
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        spool = Spool(settings.spool)
    except SpoolError as error:
        raise ListenError(str(error)) from None
    stop, wake = threading.Event(), threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        wake.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = predictor = None
    try:
        predict = replace(settings.predict, dicom_out=spool.results, progress=False, batch=settings.batch, workers=0)
        predictor = PredictorProcess(predict, settings.device, lanes_for(settings.device))
        predictor.check_memory(predictor.batch)
        warm_up(predictor, spool.root)
        try:
            server = start_node(settings.node, spool, wake.set)
        except ValueError as error:  # an --allow host that cannot be resolved
            raise ListenError(str(error)) from None
        except OSError as error:
            raise ListenError(f"cannot listen on {settings.node.host}:{settings.node.port} ({error})") from None
        node = settings.node
        LOG.info(
            "listening as %s@%s:%d%s; %d lane(s) of models; results to %s; spool %s (%s)",
            node.ae_title,
            node.host,
            node.port,
            " with DICOM TLS" if node.tls else "",
            predictor.lanes,
            settings.destination,
            spool.root,
            ", ".join(f"{n} {state}" for state, n in sorted(spool.counts().items())) or "empty",
        )
        worker = Worker(spool, predictor, settings.destination, batch=predictor.batch, backoff=settings.backoff)
        worker.run(stop, wake)
        LOG.info("stopping: the current batch is done")
    finally:
        if server is not None:
            server.shutdown()
        if predictor is not None:
            predictor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        counts = spool.counts()
        spool.close()
    return counts
