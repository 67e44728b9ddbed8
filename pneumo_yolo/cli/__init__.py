"""Command line: ``pneumo-yolo <command>``. Each module here only parses arguments and calls the library.

The modules register their commands in pipeline order, which ``--help`` shows.
"""

from . import ablation, compare, convert, demo, evaluate, listen, predict, report, send, synth, train, tune  # noqa: F401  (each registers its commands)
from .app import app


def main() -> None:
    """Console-script entry point."""
    app()
