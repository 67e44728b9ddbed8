"""The Typer application that every command module registers on."""

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import typer
from typer.core import TyperCommand, TyperGroup


def _flags_without_type(params: list[Any]) -> list[Any]:
    """``params`` with an empty type column for flags: a flag takes no value, yet Typer's rich help shows ``<bool>``.

    Typer's plain help leaves the type of a flag out; its rich help asks every option for its type,
    and a flag answers ``<bool>`` unless it has a metavar. An empty metavar makes both agree.
    """
    for param in params:
        if (getattr(param, "is_flag", False) or getattr(param, "count", False)) and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    """A command whose flags (``--json``, ``--help``) show no ``<bool>`` in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    """The application's group, its flags (``--version``, ``--help``) shown without ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _App(typer.Typer):
    """``typer.Typer`` whose commands are :class:`_Command`: ``@app.command("name")`` is all a command module says."""

    def command(self, name: str | None = None) -> Callable[[Any], Any]:  # type: ignore[override]
        return super().command(name, cls=_Command)


app = _App(
    cls=_Group,
    name="pneumo-yolo",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``message`` to stderr and return the ``typer.Exit`` to raise."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def refuse_bad_outputs(
    files: Mapping[str, Path | None],
    folders: Mapping[str, Path | None] = {},
    inputs: Mapping[str, Any] = {},
    *,
    overwrite: bool | None = None,
    owner: str | None = None,
    goes_with_others: Sequence[str] = (),
    checks: Sequence[Callable[[], object]] = (),
) -> None:
    """Refuse a command line with bad outputs or other usage problems, naming them all at once (exit 2).

    The outputs are checked by :func:`pneumo_yolo.files.check_outputs`. ``overwrite`` is the
    command's ``--overwrite`` (``None``: a command that resumes or never replaces, whose outputs
    may exist): without it an output that exists (a folder: that holds anything) is refused. With
    ``owner``, the command replaces its ``folders`` only where it wrote them itself
    (:mod:`pneumo_yolo.owned`), so a folder holding anything else is refused even with
    ``--overwrite``. An output named in ``goes_with_others`` (an errors file beside ``--out``) is
    replaced with them, so it may exist. ``checks`` are further checks of the command line (the device, the model),
    each raising ``ValueError`` or ``FileNotFoundError`` with its problem.
    """
    from ..files import OutputError, check_outputs
    from ..settings import SettingError
    from .flags import flag_message

    problems = []
    try:
        check_outputs(files, folders=folders, inputs=inputs)
    except OutputError as error:
        problems.append(str(error))
    if overwrite is not None:
        problems += _existing_outputs(files, folders, overwrite, owner, goes_with_others)
    for check in checks:
        try:
            check()
        except SettingError as error:
            problems.append(flag_message(error))
        except (ValueError, FileNotFoundError) as error:
            problems.append(str(error))
    if problems:
        raise fail("\n".join(f"error: {problem}" for problem in problems), code=2)


def _existing_outputs(
    files: Mapping[str, Path | None],
    folders: Mapping[str, Path | None],
    overwrite: bool,
    owner: str | None,
    goes_with_others: Sequence[str],
) -> list[str]:
    """The problems of outputs that exist: without ``overwrite`` each one; with an ``owner``, a folder it did not write."""
    from ..owned import foreign_files, has_content

    problems = [
        f"{name} {path} exists already; add --overwrite to replace it"
        for name, path in files.items()
        if not overwrite
        and path is not None
        and name not in goes_with_others
        and (path.exists() or path.is_symlink())
        and not path.is_dir()
    ]
    for name, path in folders.items():
        if path is None or not has_content(path):
            continue
        foreign = foreign_files(path, owner) if owner else []
        if foreign:
            problems.append(
                f"{name} {path} holds {len(foreign)} file(s) that {owner} did not write, e.g. {foreign[0]}; "
                f"{owner} replaces only a folder it wrote itself, so nothing was deleted: choose another {name}"
            )
        elif not overwrite:
            problems.append(f"{name} {path} exists and is not empty; add --overwrite to replace it")
    return problems


def warn(message: str) -> None:
    """Print a warning to stderr: something the user should know that did not stop the command."""
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"pneumo-yolo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Pneumonia detection on chest X-rays (RSNA challenge) with Ultralytics YOLO.

    Stages: synth → convert → train → predict → tune → evaluate → validate-submission → report
    (synth only without real data; demo runs the main ones on synthetic data).
    """


INTERRUPTED = {
    "predict": "nothing was written; the outputs of earlier runs are as they were",
    "train": "the run folder keeps weights/last.pt of the last finished epoch, if one finished: rerun with --resume to go on",
    "tune": "nothing was written; the outputs of earlier runs are as they were",
    "evaluate": "nothing was written",
    "validate-submission": "nothing was written",
    "report": "stopped before the end; rerun the same command with --overwrite to write the report again",
    "demo": "stopped before the end; rerun the same command with --overwrite to start again",
    "compare": "stopped before the end; rerun the same command with --overwrite to start again",
    "ablation": "stopped before the end; rerun the same command: it reuses what finished",
}
"""What a command interrupted before its end has done, where it does not say so itself (:class:`~pneumo_yolo.files.Interrupted`)."""
_SIGNALS = ("SIGTERM", "SIGHUP")
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|Cannot allocate memory", re.IGNORECASE)


def run() -> None:
    """Run the application as the console script does, with one line and an exit code for what ends it abruptly.

    - Ctrl-C, SIGTERM and SIGHUP stop the command the same way (a ``KeyboardInterrupt``, so that
      every ``finally`` and pool shutdown runs and nothing is left behind); it prints
      ``interrupted: …`` with what was written and exits 143 for SIGTERM, else 130 (a hangup
      of the terminal counts as its Ctrl-C).
    - An ``OSError`` that no command turned into its own message (a full disk, a read-only or
      unwritable place, a name too long) prints one line naming the file and the reason, exit 1;
      so does running out of memory (``MemoryError``, or torch's allocator failing) past the checks.
    - Python warnings that reach here print as one ``warning:`` line, not Python's two-line form.
    """
    import signal
    import warnings

    from ..files import os_error_line

    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    for name in ("SIGINT", *_SIGNALS):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(number, interrupt)
    warnings.showwarning = _show_warning
    try:
        app()
    except SystemExit as done:
        stopped = _interrupt_in(done)
        if stopped is None:
            raise
        signum = received[-1] if received else signal.SIGINT
        raise SystemExit(_interrupted(stopped, signum)) from None
    except KeyboardInterrupt as stopped:  # before or after Typer's own handling
        signum = received[-1] if received else signal.SIGINT
        raise SystemExit(_interrupted(stopped, signum)) from None
    except OSError as error:
        typer.secho(f"error: {os_error_line(error)}", err=True, fg=typer.colors.RED)
        raise SystemExit(1) from None
    except (MemoryError, RuntimeError) as error:  # torch's CPU allocator raises RuntimeError
        if not isinstance(error, MemoryError) and not _OUT_OF_MEMORY.search(str(error)):
            raise
        typer.secho(
            "error: out of memory (the memory checks estimate a lower bound): lower --batch or --imgsz, "
            "or use fewer --workers",
            err=True,
            fg=typer.colors.RED,
        )
        raise SystemExit(1) from None


def _interrupt_in(done: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` that Typer turned into exit code 130, found in the chain of ``done``."""
    seen: set[int] = set()
    current: BaseException | None = done
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _interrupted(stopped: KeyboardInterrupt, signum: int) -> int:
    """Print the one line of an interrupted command; return its exit code: 143 for SIGTERM, else 130."""
    import signal

    from ..files import Interrupted

    if isinstance(stopped, Interrupted):
        done = stopped.done + ("; rerun the same command to resume" if stopped.resumes else "")
    else:
        command = next((word for word in sys.argv[1:] if not word.startswith("-")), "")
        done = INTERRUPTED.get(command, "stopped before the end; rerun the same command")
    typer.secho(f"interrupted: {done}", err=True, fg=typer.colors.RED)
    return 128 + (signum if signum == signal.SIGTERM else signal.SIGINT)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of the command line: one ``warning:`` line, without Python's source line."""
    warn(str(message).splitlines()[0] if str(message) else category.__name__)
