"""The code's layout: import-linter's contracts (pyproject.toml) hold, lazy imports included, and modules stay small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400
SOURCES = sorted([*(REPO / "pneumo_yolo").rglob("*.py"), *(REPO / "converters").rglob("*.py")])


def lint_imports(repo: Path) -> subprocess.CompletedProcess:
    """import-linter on ``repo``'s contracts, as ``make test`` runs it."""
    script = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(script), "--no-cache"], cwd=repo, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "No import circles" in result.stdout


def test_a_circle_hidden_in_a_function_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts see an import inside a function: a circle placed there cannot hide."""
    copy = tmp_path / "repo"
    copy.mkdir()
    (copy / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    for package in ("pneumo_yolo", "converters"):
        subprocess.run(["cp", "-r", str(REPO / package), str(copy / package)], check=True)
    detector = copy / "pneumo_yolo" / "nets" / "detector.py"
    detector.write_text(detector.read_text() + "\n\ndef _load():\n    from .load import load_detector\n")
    result = lint_imports(copy)
    assert result.returncode == 1 and "BROKEN" in result.stdout
    assert "pneumo_yolo.nets.detector -> pneumo_yolo.nets.load" in result.stdout.replace("\n", " ")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split the module by job"
