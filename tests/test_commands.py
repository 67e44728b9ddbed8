"""The installed ``pneumo-yolo`` command, run the way users type it: in subprocesses, from the README.

The README's walkthrough (its ```bash blocks) runs here command by command, with only the
sizes made smaller for the CPU, so that the documented commands cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
SMALLER = {
    "--n-train 300 --n-test 60": "--n-train 30 --n-test 6 --dicom-size 128",
    "--imgsz 512": "--imgsz 64",
    "--model yolo11s.pt": "--model yolo11n.yaml",
    "--epochs 30": "--epochs 1",
    "--batch 16": "--batch 4",
    "--device 0": "--device cpu",
}
"""README value → the value the tests run with (tiny synthetic data, the CPU)."""
PIPELINE_ORDER = ["synth", "convert", "train", "predict", "tune", "evaluate", "validate-submission", "report", "demo", "ablation", "compare"]


def readme_commands(text: str) -> list[str]:
    """Every ``pneumo-yolo`` command of the ```bash blocks of ``text``, continuation lines joined.

    >>> readme_commands("```bash\\n# x\\npneumo-yolo a --b \\\\\\n    c\\nmake d\\n```")
    ['pneumo-yolo a --b c']
    """
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("pneumo-yolo "):
                commands.append(" ".join(line.split()))
    return commands


def run(args: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd``, as a user's shell would, capturing its output."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def pneumo_yolo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script (the venv's ``bin/pneumo-yolo``)."""
    return run([str(SCRIPT), *args], cwd)


def option(command: list[str], name: str) -> str | None:
    """The value of ``name`` in a split command line, if given."""
    return command[command.index(name) + 1] if name in command else None


@dataclass
class Walkthrough:
    """The folder the README's commands ran in, and what each printed."""

    cwd: Path
    commands: list[list[str]]
    results: list[subprocess.CompletedProcess]

    def result(self, name: str, index: int = 0) -> tuple[list[str], subprocess.CompletedProcess]:
        """The ``index``-th run of the command ``name`` and its result."""
        runs = [(c, r) for c, r in zip(self.commands, self.results) if c[1] == name]
        return runs[index]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    assert SCRIPT.is_file(), f"{SCRIPT}: the console script is not installed (pip install -e .)"
    cwd = tmp_path_factory.mktemp("walkthrough")
    text = README.read_text(encoding="utf-8")
    unused = [value for value in SMALLER if value not in text]
    assert not unused, f"README no longer shows {unused}: update SMALLER in {__file__}"
    commands, results = [], []
    for line in readme_commands(text):
        for readme_value, test_value in SMALLER.items():
            line = line.replace(readme_value, test_value)
        command = shlex.split(line)
        result = pneumo_yolo(*command[1:], cwd=cwd)
        assert result.returncode == 0, f"`{line}` exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        commands.append(command)
        results.append(result)
    return Walkthrough(cwd, commands, results)


def test_the_walkthrough_covers_every_stage_and_writes_its_outputs(walkthrough: Walkthrough) -> None:
    names = [command[1] for command in walkthrough.commands]
    assert names == ["synth", "convert", "train", "predict", "tune", "evaluate", "predict", "validate-submission", "report"]
    for command in walkthrough.commands:
        for flag in ("--out", "--save-raw", "--dicom-out"):
            written = option(command, flag)
            if written:
                assert (walkthrough.cwd / written).exists(), f"{' '.join(command)}: {written} was not written"


def test_train_names_its_weights_and_rsna_scores(walkthrough: Walkthrough) -> None:
    _, result = walkthrough.result("train")
    run_dir = walkthrough.cwd / "runs" / "exp"
    assert (run_dir / "weights" / "best.pt").is_file()
    assert f"Best weights: {run_dir / 'weights' / 'best.pt'}" in result.stdout
    scores = json.loads((run_dir / "rsna_val.json").read_text())
    assert 0.0 <= scores["tuned"]["score"] <= 1.0


def test_predict_on_converted_pngs_maps_boxes_to_the_original_dicom_grid(walkthrough: Walkthrough) -> None:
    command, result = walkthrough.result("predict", 0)
    raw = pd.read_parquet(walkthrough.cwd / option(command, "--save-raw"))
    manifest = pd.read_csv(walkthrough.cwd / "datasets/rsna/manifest.csv")
    val = manifest[manifest.split == "val"]
    assert set(raw.patientId) == set(val.patientId)
    assert set(raw.width) == {128.0} and set(raw.height) == {128.0}  # the DICOMs' size, not the 64 px PNGs'
    assert "own pixels" not in result.stderr
    assert f"predicted {len(val)} images" in result.stdout


def test_tune_writes_a_configuration_that_predict_used(walkthrough: Walkthrough) -> None:
    from pneumo_yolo.eval.postprocess import PostprocessConfig

    command, result = walkthrough.result("tune")
    tuned = PostprocessConfig.from_yaml(walkthrough.cwd / option(command, "--out"))
    assert f"wrote the best configuration to {option(command, '--out')}" in result.stdout
    assert 0.0 <= tuned.conf <= 1.0


def test_evaluate_prints_the_score(walkthrough: Walkthrough) -> None:
    _, result = walkthrough.result("evaluate")
    assert re.match(r"score \d\.\d{4} on \d+ image\(s\)", result.stdout), result.stdout


def test_test_submission_has_one_row_per_sample_patient_in_order(walkthrough: Walkthrough) -> None:
    command, _ = walkthrough.result("predict", 1)
    submission = pd.read_csv(walkthrough.cwd / option(command, "--out"), keep_default_na=False)
    sample = pd.read_csv(walkthrough.cwd / option(command, "--sample"))
    assert submission.patientId.tolist() == sample.patientId.tolist()
    _, validated = walkthrough.result("validate-submission")
    assert validated.stdout.startswith("valid: submission.csv covers the 6 expected patients")


def test_dicom_results_and_the_report_are_written(walkthrough: Walkthrough) -> None:
    _, predicted = walkthrough.result("predict", 1)
    sample = pd.read_csv(walkthrough.cwd / "rsna/stage_2_sample_submission.csv")
    reports = sorted((walkthrough.cwd / "results" / "sr").glob("*.dcm"))
    assert [p.stem for p in reports] == sorted(sample.patientId)  # one SR per image, boxes or not
    assert "DICOM SR and GSPS -> results" in predicted.stdout
    _, reported = walkthrough.result("report")
    assert (walkthrough.cwd / "report" / "index.html").is_file() and "report of" in reported.stdout


def test_python_dash_m_runs_the_same_commands(walkthrough: Walkthrough) -> None:
    args = ["evaluate", "--submission", "submission.csv", "--labels", "rsna/stage_2_test_labels.csv", "--json"]
    by_module = run([sys.executable, "-m", "pneumo_yolo", *args], walkthrough.cwd)
    by_script = pneumo_yolo(*args, cwd=walkthrough.cwd)
    assert by_module.returncode == by_script.returncode == 0, by_module.stderr
    assert json.loads(by_module.stdout) == json.loads(by_script.stdout)
    assert json.loads(by_module.stdout)["n_images"] >= 1


def test_predict_sample_gives_every_patient_a_row_even_unreadable_or_missing_ones(walkthrough: Walkthrough) -> None:
    cwd = walkthrough.cwd
    source = cwd / "broken_test_images"
    shutil.copytree(cwd / "rsna/stage_2_test_images", source, dirs_exist_ok=True)
    dicoms = sorted(source.glob("*.dcm"))
    dicoms[0].write_bytes(b"not a dicom")
    dicoms[1].unlink()
    result = pneumo_yolo(
        "predict", "--weights", "runs/exp/weights/best.pt", "--source", str(source), "--sample",
        "rsna/stage_2_sample_submission.csv", "--out", "partial.csv", "--conf", "0.01", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 1
    submission = pd.read_csv(cwd / "partial.csv", keep_default_na=False)
    sample = pd.read_csv(cwd / "rsna/stage_2_sample_submission.csv")
    assert submission.patientId.tolist() == sample.patientId.tolist()
    rows = dict(zip(submission.patientId, submission.PredictionString))
    assert rows[dicoms[0].stem] == rows[dicoms[1].stem] == ""
    assert f"failed: {dicoms[0]}" in result.stderr
    assert f"{dicoms[1].stem}: no image for this expected patientId" in result.stderr
    errors = pd.read_csv(cwd / "partial.csv.errors.csv")
    assert len(errors) == 2
    assert "2 problem(s) listed in partial.csv.errors.csv" in result.stderr
    assert "problem" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "README.md", "--imgsz", "100"], "100 is not a multiple of 32; the nearest valid size is 96"),
        (["predict", "--weights", "README.md", "--source", ".", "--imgsz", "10"], "the nearest valid size is 32"),
        (["convert", "--images", ".", "--labels", "README.md", "--out", "x", "--channels", "2"], "2 is not valid; use 1 or 3"),
        (["convert", "--images", ".", "--labels", "README.md", "--out", "x", "--val-fraction", "1"], "1.0 is not in [0, 1)"),
        (["evaluate", "--submission", "README.md", "--labels", "README.md", "--split", "test"], "'test' is not one of 'train', 'val', 'fold0'"),
        (["validate-submission", "README.md"], "give exactly one of --sample or --ids"),
    ],
    ids=["train-imgsz", "predict-imgsz", "channels", "val-fraction", "split", "ids"],
)
def test_usage_errors_exit_2_and_name_the_valid_values(args: list[str], message: str) -> None:
    result = pneumo_yolo(*args, cwd=README.parent)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.replace("│", " ").split())


def test_help_lists_the_commands_in_pipeline_order() -> None:
    result = pneumo_yolo("--help", cwd=README.parent)
    assert result.returncode == 0
    listed = [name for name in re.findall(r"│ (\S+)\s", result.stdout) if name in PIPELINE_ORDER]
    assert listed == PIPELINE_ORDER
    assert "synth → convert → train → predict → tune → evaluate → validate-submission → report" in " ".join(result.stdout.split())


@pytest.mark.parametrize("command", PIPELINE_ORDER)
def test_help_shows_every_option_text_whole(command: str) -> None:
    """Typer renders help as Markdown: nothing of an option's text (e.g. ``<name>``) may be eaten."""
    import typer

    from pneumo_yolo.cli import app

    result = run([str(SCRIPT), command, "--help"], README.parent, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    shown = " ".join(result.stdout.replace("│", " ").split())
    params = typer.main.get_command(app).commands[command].params
    for param in params:
        if param.param_type_name == "option" and getattr(param, "help", None):
            assert " ".join(param.help.replace("`", "").split()) in shown, f"{command} {param.opts[0]}: help text altered"


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = pneumo_yolo(
        "demo", "--out", "demo", "--n-train", "20", "--n-test", "4", "--imgsz", "64", "--epochs", "1", "--device", "cpu", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RSNA score on the synthetic test set" in result.stdout
    submission = pd.read_csv(tmp_path / "demo" / "submission.csv", keep_default_na=False)
    assert len(submission) == 4
