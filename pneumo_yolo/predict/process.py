"""A :class:`~.device.Predictor` in a process of its own, for a long-lived caller with threads of its own (``listen``).

A model that shares its interpreter with network threads shares the GIL with them: alone in a
process, a thread waking every 0.1 ms as pynetdicom's do while they wait for an answer took
inference from 55 to 72 ms per image. In a spawned process of its own the model has its
interpreter to itself, the node's threads answer C-STOREs while it runs, and a model that dies
(out of memory, say) does not take the node with it. The caller sends lists of paths through a
pipe and gets back each batch's :class:`~.device.DeviceOutput`, in order; it may send the next
batches before the current one is done (:meth:`PredictorProcess.submit`), so that the models never
wait for the caller's bookkeeping between batches. With several ``lanes``, threads of the process
predict that many batches side by side, each with its own copy of the models and a share of the
CPU's cores as torch threads. The process ignores Ctrl-C and SIGTERM (the
caller decides when the current batch is the last), ends with its caller even when that is
killed, and is started again if it ended abruptly.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import threading
from pathlib import Path

from ..runtime.devices import Devices, cpu_count
from ..runtime.lifetime import exit_with_parent
from ..runtime.offline import use_cpu_threads
from .device import DeviceOutput, PredictError, Predictor, PredictSettings

STOP_WAIT_S = 30.0
"""How long :meth:`PredictorProcess.close` waits for the process to end before it kills it."""


class PredictorProcess:
    """The models of ``settings`` loaded once on ``device`` in a spawned process, predicting the batches :meth:`submit` sends.

    ``lanes`` batches are predicted at a time (see the module's text). Whatever loading the
    models raises (a missing weights file, a device that does not exist) is raised here, as it
    was there.
    """

    def __init__(self, settings: PredictSettings, device: Devices, lanes: int = 1) -> None:
        self.settings, self.device, self.lanes = settings, device, lanes
        self._in_flight = self._lost = 0
        self.batch, self.workers = self._start()

    def _start(self) -> tuple[int, int]:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_end, self.settings, self.device, self.lanes, os.getpid()),
            name="pneumo-yolo models",
        )
        self._process.start()
        child_end.close()
        try:
            return self._reply()
        except BaseException:
            self._process.join(STOP_WAIT_S)  # a process that could not load its models ends once it has said why
            raise

    def _reply(self):
        try:
            outcome, value = self._connection.recv()
        except (EOFError, ConnectionResetError):  # the pipe's end closed, with or without requests left unread
            self._process.join()
            self._lose_in_flight()
            raise self._ended() from None
        if outcome == "error":
            raise value
        return value

    def _ended(self) -> PredictError:
        return PredictError(
            f"the models' process ended abruptly (exit code {self._process.exitcode}: killed, or out of memory?)"
        )

    def _lose_in_flight(self) -> None:
        """The requests sent to a process that ended are never answered: each one's :meth:`_receive` raises."""
        self._lost, self._in_flight = self._lost + self._in_flight, 0

    def _send(self, method: str, argument: object) -> None:
        if not self._process.is_alive():
            self._lose_in_flight()
            self._connection.close()  # the pipe of the process that ended
            self._start()
        try:
            self._connection.send((method, argument))
        except OSError:
            pass  # it has just ended: the answer's EOF says so
        self._in_flight += 1

    def _receive(self):
        if self._lost:
            self._lost -= 1
            raise self._ended()
        self._in_flight -= 1
        return self._reply()

    def check_memory(self, n_images: int) -> None:
        """:meth:`~.device.Predictor.check_memory`, in the models' process (nothing may be in flight)."""
        self._send("check_memory", n_images)
        self._receive()

    def submit(self, paths: list[Path]) -> None:
        """Have ``paths`` predicted (:meth:`~.device.Predictor.predict`) after the batches already submitted; :meth:`collect` returns their output."""
        self._send("predict", paths)

    def ready(self, timeout_s: float) -> bool:
        """Whether the output of the oldest submitted batch can be collected at once, waiting up to ``timeout_s``."""
        return self._lost > 0 or self._connection.poll(timeout_s)

    def collect(self) -> DeviceOutput:
        """The output of the oldest batch submitted and not yet collected (what predicting it raised is raised here)."""
        return self._receive()

    def close(self) -> None:
        """Let the process end, and kill it if it has not within :data:`STOP_WAIT_S`."""
        try:
            self._connection.send(None)
        except OSError:
            pass  # it has already ended
        self._process.join(STOP_WAIT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()


def _serve(connection, settings: PredictSettings, device: Devices, lanes: int, parent: int) -> None:
    """The models' process: load them once per lane, then answer each ``(method, argument)``, in order, until ``None``."""
    import logging
    import warnings

    exit_with_parent(parent, ignore_interrupt=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the caller ends the current batch, then this process
    warnings.filterwarnings("ignore", module="pydicom|highdicom")  # their messages quote header values: keep PHI out
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        predictors = [Predictor(settings, device) for _ in range(lanes)]
    except Exception as error:  # sent to the caller, which raises it as the models' loading would have
        connection.send(("error", _sendable(error)))
        return
    if lanes > 1 and predictors[0].device.on_cpu:
        use_cpu_threads(max(1, cpu_count() // lanes))
    connection.send(("done", (predictors[0].batch, predictors[0].workers)))
    requests: queue.SimpleQueue = queue.SimpleQueue()
    answers = InOrder(connection)
    threads = [threading.Thread(target=_lane, args=(predictor, requests, answers)) for predictor in predictors]
    for thread in threads:
        thread.start()
    for number, request in enumerate(iter(connection.recv, None)):
        requests.put((number, request))
    for _ in threads:
        requests.put(None)
    for thread in threads:
        thread.join()


class InOrder:
    """Sends each request's answer once every earlier request's answer has been sent."""

    def __init__(self, connection) -> None:
        self.connection, self.next, self.waiting = connection, 0, dict[int, tuple]()
        self.lock = threading.Lock()

    def send(self, number: int, answer: tuple) -> None:
        with self.lock:
            self.waiting[number] = answer
            while self.next in self.waiting:
                self.connection.send(self.waiting.pop(self.next))
                self.next += 1


def _lane(predictor: Predictor, requests: queue.SimpleQueue, answers: InOrder) -> None:
    """One lane: answer requests with ``predictor`` until ``None``."""
    while (item := requests.get()) is not None:
        number, (method, argument) = item
        try:
            answers.send(number, ("done", getattr(predictor, method)(argument)))
        except Exception as error:
            answers.send(number, ("error", _sendable(error)))


def _sendable(error: Exception) -> Exception:
    """``error`` if it survives pickling as itself, else a :class:`PredictError` with its message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return PredictError(f"{type(error).__name__}: {error}")
    return error
