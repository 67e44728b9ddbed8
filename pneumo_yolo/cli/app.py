"""The Typer application that every command module registers on."""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
