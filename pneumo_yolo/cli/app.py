"""The Typer application that every command module registers on."""

import typer

app = typer.Typer(
    name="pneumo-yolo",
    help="Pneumonia detection on chest X-rays (RSNA challenge) with Ultralytics YOLO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``message`` to stderr and return the ``typer.Exit`` to raise."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)
