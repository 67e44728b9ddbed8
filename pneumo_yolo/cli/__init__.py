"""Command line: ``pneumo-yolo <command>``. Each module here only parses arguments and calls the library.

The modules register their commands in pipeline order, which ``--help`` shows.
"""

from . import ablation, compare, convert, demo, evaluate, predict, report, synth, train, tune  # noqa: F401  (each registers its commands)
from .app import app as app
from .app import run


def main() -> None:
    """Console-script entry point: the app, with one line for an interrupt or a refusal of the file system (:func:`.app.run`)."""
    run()
