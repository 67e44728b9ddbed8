"""The code's layout rules: imports point one way, from the CLI down to the box maths, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    "pneumo_yolo.boxes": 0,
    "pneumo_yolo.files": 0,
    "pneumo_yolo.dicom": 1,
    "pneumo_yolo.data": 2,
    "pneumo_yolo.eval": 3,
    "pneumo_yolo.synth": 3,
    "pneumo_yolo.report": 3.5,
    "pneumo_yolo.model": 4,
    "converters": 4.5,
    "pneumo_yolo.demo": 5,
    "pneumo_yolo.ablation": 5,
    "pneumo_yolo.compare": 5,
    "pneumo_yolo.cli": 6,
}
"""Each part of the code and its layer: a part imports only parts of lower layers, and itself.
``converters`` sits above the library it is built on: only the demo and the CLI import it."""
MAX_LINES = 400


def part_of(module: str) -> str | None:
    """The entry of :data:`LAYERS` that ``module`` belongs to (``None``: not ours, or the package root).

    >>> part_of("pneumo_yolo.eval.metric"), part_of("pneumo_yolo.boxes"), part_of("numpy")
    ('pneumo_yolo.eval', 'pneumo_yolo.boxes', None)
    """
    return next((part for part in LAYERS if module == part or module.startswith(part + ".")), None)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, lazy imports inside functions included."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted([*(REPO / "pneumo_yolo").rglob("*.py"), *(REPO / "converters").rglob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down_the_layers(path: Path) -> None:
    own = part_of(module_name(path))
    if own is None:
        return
    upward = sorted(
        module
        for module in imported_modules(path)
        if (part := part_of(module)) is not None and part != own and LAYERS[part] >= LAYERS[own]
    )
    assert not upward, f"{own} (layer {LAYERS[own]}) imports from its own layer or above: {upward}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split the module by job"


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(path) for path in SOURCES if part_of(module_name(path)) is None]
    assert unplaced == ["pneumo_yolo", "pneumo_yolo.__main__"]
