"""Command line: ``pneumo-yolo <command>``. Each module here only parses arguments and calls the library.

The modules register their commands in pipeline order, which ``--help`` shows.
"""

from . import synth  # noqa: F401  (registers commands)
from . import data  # noqa: F401  (registers commands)
from . import model  # noqa: F401  (registers commands)
from . import scoring  # noqa: F401  (registers commands)
from . import demo  # noqa: F401  (registers commands)
from .app import app


def main() -> None:
    """Console-script entry point."""
    app()
