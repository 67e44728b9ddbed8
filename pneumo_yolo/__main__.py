"""``python -m pneumo_yolo`` runs the command line."""

from .cli import main

main()
