"""Command line: ``pneumo-yolo <command>``. Each module here only parses arguments and calls the library.

The modules register their commands in pipeline order, which ``--help`` shows.
"""

# isort: off
from . import synth, convert, train, predict, tune, evaluate, report, send, listen, demo, ablation, compare  # noqa: F401  (each registers its commands, in this order)

# isort: on
from .app import app as app
from .app import run


def main() -> None:
    """Console-script entry point: the app, with one line for an interrupt or a refusal of the file system (:func:`.app.run`)."""
    run()
