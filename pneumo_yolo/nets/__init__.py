"""The networks: one detector interface (:mod:`.detector`) with a family per arch, the image classifier, and the one loader of weights files."""

YOLO = "yolo"
"""The arch of Ultralytics' models (``train --arch yolo``); the registry of every arch is :mod:`.archs`.

Here, so that settings can name it without loading the networks' modules (numpy and OpenCV): the
command line imports the training settings for ``--help``.
"""
