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
from ..runtime.devices import Devices
from .node import NodeSettings, start_node
from .send import Destination
from .spool import Spool
from .worker import Backoff, Predicts, Worker

LOG = logging.getLogger("pneumo_yolo.pacs")


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


def warm_up(predictor: Predicts, folder: Path) -> None:
    """Predict one blank synthetic radiograph end to end (decoding, models, SR), so that the first real image is not slow.

    The first call of each step imports and initialises what it needs (pixel decoders, the
    model's kernels, highdicom), which took seconds: the node pays that before it listens.
    """
    import numpy as np

    from ..dicom.write import write_dicom

    path = folder / "warm-up.dcm"
    write_dicom(path, np.full((256, 256), 128, np.uint8), patient_id="warm-up")
    try:
        found = predictor.predict([path])
    finally:
        path.unlink(missing_ok=True)
    for written in found.results.get(path.stem, []):
        written.unlink(missing_ok=True)


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
        predictor = PredictorProcess(predict, settings.device)
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
            "listening as %s@%s:%d%s; results to %s; spool %s (%s)",
            node.ae_title,
            node.host,
            node.port,
            " with DICOM TLS" if node.tls else "",
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
