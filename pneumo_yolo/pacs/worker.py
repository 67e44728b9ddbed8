"""The node's worker: predicts queued images in batches with the models loaded once, and delivers their results.

Each step predicts up to one batch of queued images with ``predict``'s own code
(:class:`~pneumo_yolo.predict.device.Predictor`, which ``listen`` runs in a process of its own:
:mod:`pneumo_yolo.predict.process`), writing one SR per image and one GSPS where there are
boxes, then sends every result whose delivery is due. In a running node
(:meth:`Worker.run`) each of the models' lanes has its next batch already while it predicts one
(:data:`IN_FLIGHT`), so it never waits for the recording of the last; a second thread delivers,
so waiting for the destination never stalls them. A destination that is down is tried again after
2, 4, 8 ... seconds (at most 5 minutes between tries); nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..predict.device import DeviceOutput
from .send import Destination
from .spool import Pending, Spool
from .store import FileStatus

LOG = logging.getLogger("pneumo_yolo.pacs")
IN_FLIGHT = 2
"""Batches submitted and not yet recorded, at most, per lane: the one it predicts and its next."""
POLL_S = 0.05
"""While one batch is predicted, how often the worker looks for images to submit next."""
ASSOCIATIONS = 4
"""Associations (or STOW requests) that deliver side by side. Orthanc took 90 ms to store each result over one
association, waiting for its disk, and 24 ms each over four."""


class Predicts(Protocol):
    """What the worker predicts with, batches in order: :class:`~pneumo_yolo.predict.process.PredictorProcess` in a node."""

    lanes: int
    """Batches predicted side by side."""

    def submit(self, paths: list[Path]) -> None: ...

    def ready(self, timeout_s: float) -> bool: ...

    def collect(self) -> DeviceOutput: ...


@dataclass(frozen=True)
class Backoff:
    """Seconds before the next delivery try after ``attempts`` failed ones: ``first`` doubling up to ``most``.

    >>> [Backoff(2, 30).delay(n) for n in range(1, 6)]
    [2.0, 4.0, 8.0, 16.0, 30.0]
    """

    first: float = 2.0
    most: float = 300.0

    def delay(self, attempts: int) -> float:
        return float(min(self.most, self.first * 2 ** max(0, attempts - 1)))


class Worker:
    """Predicts and delivers until ``stop`` is set; ``wake`` is set when an image arrives."""

    def __init__(
        self,
        spool: Spool,
        predictor: Predicts,
        destination: Destination,
        *,
        batch: int,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool, self.predictor, self.destination = spool, predictor, destination
        self.batch, self.backoff, self.clock = batch, backoff, clock

    def run(self, stop: threading.Event, wake: threading.Event) -> None:
        """Predict until ``stop``, each lane with its next batch while it predicts one, while a second thread delivers.

        The batches submitted always end; then their results are delivered once more (a
        destination that is down then keeps them for the next start).
        """
        predicted = threading.Event()
        courier = threading.Thread(target=self._deliver_until, args=(stop, predicted), name="deliver")
        courier.start()
        in_flight: deque[list[str]] = deque()
        full = IN_FLIGHT * self.predictor.lanes
        try:
            while in_flight or not stop.is_set():
                if not stop.is_set() and len(in_flight) < full and self._submit_queued(in_flight, wake):
                    continue
                if not in_flight:
                    wake.wait(1.0)
                elif len(in_flight) == full or stop.is_set() or self.predictor.ready(POLL_S):
                    self._record(in_flight.popleft())
                    predicted.set()
        finally:
            predicted.set()
            courier.join()
        self.deliver()

    def _submit_queued(self, in_flight: deque[list[str]], wake: threading.Event) -> bool:
        """Submit up to a batch of the queued images not yet in flight; whether there was any."""
        wake.clear()
        flying = {uid for batch in in_flight for uid in batch}
        queued = self.spool.queued(self.batch * (len(in_flight) + 1))
        fresh = [uid for uid in queued if uid not in flying][: self.batch]
        if fresh:
            self.predictor.submit([self.spool.image_path(uid) for uid in fresh])
            in_flight.append(fresh)
        return bool(fresh)

    def _deliver_until(self, stop: threading.Event, predicted: threading.Event) -> None:
        """Deliver what is due until ``stop``; between rounds wait for new results or the next retry."""
        while not stop.is_set():
            predicted.clear()
            if self.deliver():
                continue
            due = self.spool.next_due()
            predicted.wait(1.0 if due is None else min(1.0, max(0.0, due - self.clock())))

    def step(self) -> bool:
        """Predict one batch and deliver what is due, in this thread; whether a batch was predicted."""
        queued = self.spool.queued(self.batch)
        if queued:
            self.predictor.submit([self.spool.image_path(uid) for uid in queued])
            self._record(queued)
        self.deliver()
        return bool(queued)

    def _record(self, sop_uids: list[str]) -> None:
        """Collect the output of the oldest batch submitted, these images, and record each one's results or problem."""
        try:
            found = self.predictor.collect()
        except Exception as error:  # a model failure must not take the node down: the batch is recorded as failed
            found = DeviceOutput(
                errors=[(str(self.spool.image_path(uid)), f"prediction failed ({error})") for uid in sop_uids]
            )
        problems = {Path(path).stem: problem for path, problem in found.errors}
        results = {uid: found.results[uid] for uid in sop_uids if uid in found.results and uid not in problems}
        failed = {uid: problems.get(uid, "no result") for uid in sop_uids if uid not in results}
        self.spool.record_batch(results, failed)
        for uid in results:
            LOG.info("predicted %s: %d box(es)", uid, len(found.strings[uid].split()) // 5)
        for uid, problem in failed.items():
            LOG.warning("cannot predict %s: %s", uid, problem)
        LOG.info("batch of %d image(s) predicted in %.2f s", len(sop_uids), found.elapsed_s)

    def deliver(self) -> bool:
        """Send the due results (a few batches' worth, so a backlog never holds up a stop); record each image's outcome.

        The images are dealt over up to :data:`ASSOCIATIONS` associations (or STOW requests)
        that run side by side, an image's SR and GSPS on the same one. Returns whether any
        result was due.
        """
        due = self.spool.due(self.clock(), limit=8 * self.batch)
        if not due:
            return False
        shares = [due[start::ASSOCIATIONS] for start in range(min(ASSOCIATIONS, len(due)))]
        with ThreadPoolExecutor(len(shares), thread_name_prefix="deliver") as pool:
            statuses = {path: status for sent in pool.map(self._send, shares) for path, status in sent.items()}
        for item in due:
            failed = [statuses[path] for path in item.results if not statuses[path].ok]
            if not failed:
                self.spool.mark_delivered(item)
                LOG.info("delivered the results of %s to %s", item.sop_uid, self.destination)
            else:
                self._retry(item, failed[0].detail)
        return True

    def _send(self, items: list[Pending]) -> dict[Path, FileStatus]:
        """The status of each result of ``items``, sent in one association (or STOW request)."""
        paths = [path for item in items for path in item.results]
        try:
            return {status.path: status for status in self.destination.send(paths)}
        except Exception as error:  # unreadable STOW credentials, say: tried again later, as a destination down
            return {path: FileStatus(path, False, f"{type(error).__name__}: {error}") for path in paths}

    def _retry(self, item: Pending, problem: str) -> None:
        delay = self.backoff.delay(item.attempts + 1)
        self.spool.mark_retry(item, problem, self.clock() + delay)
        LOG.warning("results of %s not delivered (%s); next try in %.0f s", item.sop_uid, problem, delay)
