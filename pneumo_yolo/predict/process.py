"""A :class:`~.device.Predictor` in a process of its own, for a long-lived caller with threads of its own (``listen``).

A model that shares its interpreter with network threads shares the GIL with them: alone in a
process, a thread waking every 0.1 ms as pynetdicom's do while they wait for an answer took
inference from 55 to 72 ms per image. In a spawned process of its own the model has its
interpreter to itself, the node's threads answer C-STOREs while it runs, and a model that dies
(out of memory, say) does not take the node with it. The caller sends lists of paths through a
pipe and gets back each batch's :class:`~.device.DeviceOutput`. The process ignores Ctrl-C and
SIGTERM (the caller decides when the current batch is the last), ends with its caller even when
that is killed, and is started again if it ended abruptly.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from pathlib import Path

from ..runtime.devices import Devices
from ..runtime.lifetime import exit_with_parent
from .device import DeviceOutput, PredictError, Predictor, PredictSettings

STOP_WAIT_S = 30.0
"""How long :meth:`PredictorProcess.close` waits for the process to end before it kills it."""


class PredictorProcess:
    """The models of ``settings`` loaded once on ``device`` in a spawned process; :meth:`predict` as :class:`~.device.Predictor`'s.

    Whatever loading the models raises (a missing weights file, a device that does not exist)
    is raised here, as it was there.
    """

    def __init__(self, settings: PredictSettings, device: Devices) -> None:
        self.settings, self.device = settings, device
        self.batch, self.workers = self._start()

    def _start(self) -> tuple[int, int]:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, self.settings, self.device, os.getpid()), name="pneumo-yolo models"
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
        except EOFError:
            self._process.join()
            raise PredictError(
                f"the models' process ended abruptly (exit code {self._process.exitcode}: killed, or out of memory?)"
            ) from None
        if outcome == "error":
            raise value
        return value

    def _call(self, method: str, argument: object):
        if not self._process.is_alive():
            self._connection.close()  # the pipe of the process that ended
            self._start()
        self._connection.send((method, argument))
        return self._reply()

    def check_memory(self, n_images: int) -> None:
        """:meth:`~.device.Predictor.check_memory`, in the models' process."""
        self._call("check_memory", n_images)

    def predict(self, paths: list[Path]) -> DeviceOutput:
        """:meth:`~.device.Predictor.predict` of ``paths``, in the models' process."""
        return self._call("predict", paths)

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


def _serve(connection, settings: PredictSettings, device: Devices, parent: int) -> None:
    """The models' process: load them, then answer each ``(method, argument)`` until ``None``."""
    import logging
    import warnings

    exit_with_parent(parent, ignore_interrupt=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the caller ends the current batch, then this process
    warnings.filterwarnings("ignore", module="pydicom|highdicom")  # their messages quote header values: keep PHI out
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        predictor = Predictor(settings, device)
    except Exception as error:  # sent to the caller, which raises it as the models' loading would have
        connection.send(("error", _sendable(error)))
        return
    connection.send(("done", (predictor.batch, predictor.workers)))
    while (request := connection.recv()) is not None:
        method, argument = request
        try:
            connection.send(("done", getattr(predictor, method)(argument)))
        except Exception as error:
            connection.send(("error", _sendable(error)))


def _sendable(error: Exception) -> Exception:
    """``error`` if it survives pickling as itself, else a :class:`PredictError` with its message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return PredictError(f"{type(error).__name__}: {error}")
    return error
