"""The code's layout: import-linter's contracts (pyproject.toml) hold, lazy imports included, and modules stay small."""

from __future__ import annotations

import ast
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


MAX_PARAMETERS = 8
"""Parameters of a function at most; more travel together in a frozen settings dataclass."""


def _is_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A Typer command (``@app.command(...)``): its parameters are the command's option declarations."""
    return any(
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "command"
        for decorator in function.decorator_list
    )


def _forwards(function: ast.FunctionDef | ast.AsyncFunctionDef, parents: dict[ast.AST, ast.AST]) -> bool:
    """A plain forwarding wrapper of a decorator: ``def wrapper(*args, **kwargs)`` inside another function."""
    arguments = function.args
    nested = isinstance(parents.get(function), (ast.FunctionDef, ast.AsyncFunctionDef))
    return (
        nested and arguments.vararg is not None and not (arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
    )


def signature_problems(path: Path, root: Path = REPO) -> list[str]:
    """Functions of ``path`` with more than :data:`MAX_PARAMETERS` parameters, or a ``**kwargs`` of options."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_command(node):
            continue
        arguments = node.args
        names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
        count = len([name for name in names if name not in ("self", "cls")])
        where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
        if count > MAX_PARAMETERS:
            problems.append(f"{where} takes {count} parameters: group them in a frozen settings dataclass")
        if arguments.kwarg is not None and not _forwards(node, parents):
            problems.append(f"{where} takes **{arguments.kwarg.arg}: name its parameters, or pass a settings object")
    return problems


def test_no_function_takes_more_than_eight_parameters_or_a_dict_of_options() -> None:
    problems = [problem for path in SOURCES for problem in signature_problems(path)]
    assert not problems, "\n".join(problems)


def test_the_signature_check_sees_long_signatures_and_options_dicts(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "def long(a, b, c, d, e, f, g, h, *, i): ...\n"
        "def fine(self, a, b, c, d, e, f, g, h): ...\n"
        "def options(a, **options): ...\n"
        "def decorator(function):\n    def wrapper(*args, **kwargs):\n        return function(*args, **kwargs)\n"
        "    return wrapper\n"
    )
    problems = signature_problems(source, tmp_path)
    assert [problem.split(" ")[0] for problem in problems] == ["example.py:1", "example.py:3"]


def test_the_device_option_is_parsed_only_on_the_command_line() -> None:
    """``Devices.parse`` reads ``--device``: only ``pneumo_yolo/cli`` calls it; the library receives ``Devices``."""
    callers = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "parse"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Devices"
            ):
                callers.append(path.relative_to(REPO))
    assert callers and all(path.parts[:2] == ("pneumo_yolo", "cli") for path in callers), callers
