"""The Typer application that every command module registers on."""

from collections.abc import Callable, Mapping
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
    files: Mapping[str, Path | None], folders: Mapping[str, Path | None] = {}, inputs: Mapping[str, Any] = {}
) -> None:
    """:func:`pneumo_yolo.files.check_outputs`, its refusal printed as a usage error (exit 2)."""
    from ..files import OutputError, check_outputs

    try:
        check_outputs(files, folders=folders, inputs=inputs)
    except OutputError as error:
        raise fail(f"error: {error}", code=2) from None


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
