"""Helper processes and shared memory that never outlive the run that made them, however it ends.

A prediction run starts helper processes (decoding processes, one process per device) and
shares memory with them: buffers for decoded images, and the POSIX semaphores of the pools'
queues, which Linux keeps as files in ``/dev/shm``. Measured before this module (issue 20):
after ``kill -9`` of the main process, the decoding process and multiprocessing's resource
tracker stayed for minutes holding three ``/dev/shm`` segments; after ``kill -9`` of the whole
process group (the resource tracker included) the segments and semaphores stayed for good.

- :func:`exit_with_parent`, the initializer of every helper pool: a helper dies the moment its
  parent does (``prctl(PR_SET_PDEATHSIG)`` on Linux, a watchdog thread elsewhere). Once the
  helpers are gone, the resource tracker sees its last user go and unlinks what it tracked.
- Whatever the run shares is named for the process that made it, ``pneumo-yolo-<pid>-<hex>``
  (:func:`shared_memory_name`, :func:`name_semaphores`), so that :func:`remove_stale_shared_memory`
  can remove what processes now gone left, whoever killed them.
- :class:`Janitor`: a small process outside the run's process group that waits for the run to
  end; if it ends without saying so (killed), the janitor removes the run's shared memory and the
  temporary files of its outputs (beside them, and inside an output folder) at once, since a kill
  of the whole group also took the resource tracker.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from ..files import remove_left_by_gone_processes, remove_stale_parts, remove_stale_temp_files

SHM_PREFIX = "pneumo-yolo"
SHM_DIR = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory (``<name>``) and named semaphores (``sem.<name>``)."""
_STALE = re.compile(rf"(?:sem\.)?{SHM_PREFIX}-(\d+)-\w+")
_PR_SET_PDEATHSIG = 1
_DONE = b"done"
JANITOR_DELAY_S = 0.5
"""How long the janitor lets the killed run's helpers die (their kernel signal is immediate) before it cleans."""
JANITOR_WAIT_S = 30.0
"""How long a finished run waits for its janitor to read that it may go (it starts in about 0.1 s)."""


def shared_memory_name() -> str:
    """A name for a new shared-memory segment that says which process made it.

    >>> shared_memory_name().startswith(f"pneumo-yolo-{os.getpid()}-")
    True
    """
    return f"{SHM_PREFIX}-{os.getpid()}-{secrets.token_hex(4)}"


def name_semaphores() -> None:
    """Name the semaphores that this process's pools create ``pneumo-yolo-<pid>-…``, not ``mp-…``.

    multiprocessing keeps the prefix in ``semprefix``, a private setting of the current process;
    where a Python lacks it, the names stay as they are (and only the resource tracker removes them).
    """
    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict) and "semprefix" in config:
        config["semprefix"] = f"/{SHM_PREFIX}-{os.getpid()}"


def remove_stale_shared_memory(folder: Path = SHM_DIR) -> int:
    """Unlink the shared memory and semaphores of ours in ``folder`` whose process is gone; return how many."""
    return remove_left_by_gone_processes(folder.iterdir(), _STALE) if folder.is_dir() else 0


def exit_with_parent(parent: int, ignore_interrupt: bool = False) -> None:
    """Pool initializer of helper processes: die as soon as the process ``parent`` ends.

    With ``ignore_interrupt`` a Ctrl-C or SIGHUP sent to the whole process group is left to the
    parent, which stops the work itself and takes its helpers along; without it, each helper
    printed a ``KeyboardInterrupt`` traceback. SIGTERM keeps its default: it is how a pool ends
    its workers.
    """
    if ignore_interrupt:
        for name in ("SIGINT", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    if not _kill_on_parent_death():
        threading.Thread(target=_watch_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the signal was asked for
        os._exit(1)


def job_processes(count: int) -> ProcessPoolExecutor:
    """A pool of ``count`` spawned processes, a fresh one for each job, that die with this process (:func:`exit_with_parent`).

    Not daemons, so a job may start processes of its own (decoding processes, say).
    """
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        count, mp_context=context, max_tasks_per_child=1, initializer=exit_with_parent, initargs=(os.getpid(),)
    )


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its child processes that have ended (helpers included)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@contextmanager
def interrupts_held_off() -> Iterator[None]:
    """Ignore Ctrl-C (SIGINT) inside the block, so that outputs moving into place all move (a few ms); elsewhere than the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _kill_on_parent_death() -> bool:
    """Ask Linux for SIGKILL when the parent ends; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class Janitor:
    """Cleans up after this process if it is killed: its shared memory, and the temporary files of ``outputs``.

    Use as a context manager around the run. The janitor is a child process in a session of its
    own, so a kill of this process's group does not reach it; it waits on a pipe that only this
    process holds. On a normal end (an exception included) :meth:`__exit__` tells it so and it
    exits at once; if the pipe closes without that, this process was killed, and it cleans
    (:func:`remove_stale_shared_memory`, :func:`~pneumo_yolo.files.remove_stale_parts` beside each output, and
    :func:`~pneumo_yolo.files.remove_stale_temp_files` inside an output folder, where helpers killed
    mid-write left theirs), then exits.
    """

    def __init__(self, outputs: Sequence[Path]) -> None:
        self.outputs = [Path(path).absolute() for path in outputs]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        code = "import sys; from pneumo_yolo.runtime.lifetime import janitor_main; janitor_main(sys.argv[1:])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, self.outputs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")])),
            },
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write(_DONE)
            self.process.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            self.process.wait(timeout=JANITOR_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _package_root() -> str:
    """The folder that holds the ``pneumo_yolo`` package, so the janitor imports this very code."""
    return str(Path(__file__).resolve().parents[2])


def janitor_main(outputs: Sequence[str]) -> None:
    """The janitor process: wait for the run's end; if it was killed, clean up after it."""
    told = sys.stdin.buffer.read()
    if told == _DONE:
        return
    time.sleep(JANITOR_DELAY_S)
    remove_stale_shared_memory()
    for output in outputs:
        remove_stale_parts(Path(output))
        remove_stale_temp_files(Path(output))
