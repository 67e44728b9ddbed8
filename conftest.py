"""Doctests are collected from the package's modules that hold one, and only from them.

``--doctest-modules`` imports every module it collects, and so every library each one imports at its
top, Lightning and torch among them: 7 of the 12.7 CPU-seconds that each test process spent
collecting. A module whose text has no ``>>>`` holds no doctest, so it is left out of the
collection (its tests import it where they need it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGES = ("pneumo_yolo", "converters")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out a module of :data:`PACKAGES` without a ``>>>`` prompt; decide nothing about any other path."""
    root = Path(str(config.rootpath))
    if collection_path.suffix != ".py" or not collection_path.is_relative_to(root):
        return None
    if collection_path.relative_to(root).parts[0] not in PACKAGES:
        return None
    return ">>>" not in collection_path.read_text(encoding="utf-8")
