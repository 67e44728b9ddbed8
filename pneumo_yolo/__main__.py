"""``python -m pneumo_yolo`` and the ``pneumo-yolo`` console script run the command line.

The console script imports :func:`main` from here rather than from :mod:`pneumo_yolo.cli`,
because this module imports nothing until it is called: multiprocessing's spawn runs the
parent's main script again in every process it starts (predict's decoding workers, its
processes per device), and there it now costs nothing instead of the whole command line
(Typer, pandas, pyarrow: about 50 MB in each decoding worker).
"""


def main() -> None:
    """Console-script entry point."""
    from .cli import main as run

    run()


if __name__ == "__main__":
    main()
