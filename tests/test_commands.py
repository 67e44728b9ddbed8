"""The installed ``pneumo-yolo`` command, run the way users type it: in subprocesses, from the README.

The README's walkthrough (its ```bash blocks) runs here command by command, with only the
sizes made smaller for the CPU (and the training's plots left out), so that the documented commands cannot
drift from the code.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from .conftest import assert_self_contained

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
SMALLER = {
    "--n-train 300 --n-test 60": "--n-train 30 --n-test 6 --dicom-size 128",
    "--imgsz 512": "--imgsz 64",
    "--imgsz 256": "--imgsz 64",
    "--epochs 3": "--epochs 1 --set plots=False",
}
"""README value → the value the tests run with (tiny synthetic data, the CPU). The training also skips
Ultralytics' plots (half of its CPU time; tests/test_train.py checks them), which the walkthrough reads nothing of."""
PIPELINE_ORDER = [
    "synth",
    "convert",
    "train",
    "predict",
    "tune",
    "evaluate",
    "validate-submission",
    "report",
    "demo",
    "ablation",
    "compare",
]


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


def smaller(line: str) -> str:
    """A README command line with the sizes of :data:`SMALLER`."""
    for readme_value, test_value in SMALLER.items():
        line = line.replace(readme_value, test_value)
    return line


def cpu_line(text: str) -> str:
    """The line that step 2's comment gives for a machine without a GPU or internet."""
    lines = re.findall(r"^#\s+(pneumo-yolo train .*)$", text, re.M)
    assert len(lines) == 1, lines
    return lines[0]


def run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd``, as a user's shell would, capturing its output."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


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
        if line.startswith("pneumo-yolo train "):  # step 2 on a GPU cannot run here: its line for the CPU stands in
            line = cpu_line(text)
        command = shlex.split(smaller(line))
        result = pneumo_yolo(*command[1:], cwd=cwd)
        assert result.returncode == 0, (
            f"`{smaller(line)}` exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
        commands.append(command)
        results.append(result)
    return Walkthrough(cwd, commands, results)


def test_the_walkthrough_covers_every_stage_and_each_output_reads_back_as_what_it_is(walkthrough: Walkthrough) -> None:
    """Each file a step writes is read by the reader of its kind: a valid submission, a raw table of the inputs, a YAML, a dataset."""
    from pneumo_yolo.data.dataset import ConvertedDataset
    from pneumo_yolo.eval.detections import read_raw
    from pneumo_yolo.eval.postprocess import PostprocessConfig
    from pneumo_yolo.eval.submission import errors_only, read_patient_ids, validate_submission

    cwd = walkthrough.cwd
    names = [command[1] for command in walkthrough.commands]
    assert names == [
        "synth",
        "convert",
        "train",
        "predict",
        "tune",
        "evaluate",
        "predict",
        "validate-submission",
        "report",
    ]
    dataset = ConvertedDataset.from_yaml(cwd / "datasets/rsna/data.yaml")
    val_ids = sorted(path.stem for path in dataset.listed("val"))
    test_ids = read_patient_ids(cwd / "rsna/stage_2_sample_submission.csv").ids
    assert len(dataset.listed("train")) + len(val_ids) == 30 and dataset.imgsz == 64
    for index, ids in ((0, val_ids), (1, test_ids)):
        command, _ = walkthrough.result("predict", index)
        assert sorted(read_raw(cwd / option(command, "--save-raw")).patient_ids) == sorted(ids)
        assert errors_only(validate_submission(cwd / option(command, "--out"), ids)) == []
    PostprocessConfig.from_yaml(cwd / option(walkthrough.result("tune")[0], "--out"))
    assert_self_contained(cwd / option(walkthrough.result("report")[0], "--out") / "index.html")


def test_the_readme_s_cpu_line_for_step_2_runs_as_typed_without_a_gpu_or_internet(walkthrough: Walkthrough) -> None:
    """Step 2's comment gives a line for a machine without a GPU or internet: no download, no GPU (sizes made smaller).

    The walkthrough trains with it in place of step 2's GPU line, whose options must still be ``train``'s.
    """
    import typer

    from pneumo_yolo.cli import app

    text = README.read_text(encoding="utf-8")
    line = cpu_line(text)
    assert "--device cpu" in line and ".yaml" in line and "--online" not in line
    command, result = walkthrough.result("train")
    assert command == shlex.split(smaller(line))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Best weights: " in result.stdout
    [gpu_line] = [typed for typed in readme_commands(text) if typed.startswith("pneumo-yolo train ")]
    assert "--device 0" in gpu_line and gpu_line != line
    train_options = {name for param in typer.main.get_command(app).commands["train"].params for name in param.opts}
    assert {word for word in gpu_line.split() if word.startswith("--")} <= train_options


def test_train_names_its_weights_and_the_rsna_scores_it_wrote(walkthrough: Walkthrough) -> None:
    _, result = walkthrough.result("train")
    run_dir = walkthrough.cwd / "runs" / "exp"
    scores = json.loads((run_dir / "rsna_val.json").read_text())
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Best weights: {run_dir / 'weights' / 'best.pt'} | val mAP50 ")
    default, tuned = scores["default"]["score"] or 0.0, scores["tuned"]["score"] or 0.0
    assert f"RSNA val score {default:.4f} (default post-processing), {tuned:.4f} (tuned: " in last
    assert tuned >= default  # the default configuration is one of the points tune searches
    manifest = pd.read_csv(walkthrough.cwd / "datasets/rsna/manifest.csv")
    assert scores["n_images"] <= (manifest.split == "val").sum() and scores["split"] == "val"


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
    """The test submission is exactly the test raw detections post-processed with the tuned YAML."""
    from pneumo_yolo.eval.detections import read_raw
    from pneumo_yolo.eval.postprocess import PostprocessConfig, postprocess_image
    from pneumo_yolo.eval.submission import prediction_string

    command, result = walkthrough.result("tune")
    assert f"wrote the best configuration to {option(command, '--out')}" in result.stdout
    tuned = PostprocessConfig.from_yaml(walkthrough.cwd / option(command, "--out"))
    predicted, _ = walkthrough.result("predict", 1)
    assert option(predicted, "--postprocess") == option(command, "--out")
    raw = read_raw(walkthrough.cwd / option(predicted, "--save-raw"))
    expected = {image.patient_id: prediction_string(*postprocess_image(image, tuned)) for image in raw.images()}
    submission = pd.read_csv(walkthrough.cwd / option(predicted, "--out"), keep_default_na=False)
    assert dict(zip(submission.patientId, submission.PredictionString)) == expected


def test_evaluate_prints_the_metric_of_the_validation_submission(walkthrough: Walkthrough) -> None:
    """The printed score is the library's metric of the same file on the validation split."""
    from pneumo_yolo.eval.scoring import evaluate_submission, load_scoring_set

    command, result = walkthrough.result("evaluate")
    cwd = walkthrough.cwd
    scoring = load_scoring_set(
        cwd / option(command, "--labels"), cwd / option(command, "--manifest"), option(command, "--split")
    )
    expected = evaluate_submission(cwd / option(command, "--predictions"), scoring)
    assert result.stdout.startswith(f"score {expected.score:.4f} on {expected.n_images} image(s)"), result.stdout


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
    _, tuned = walkthrough.result("tune")
    best = re.search(r"^best +(\d\.\d{4}) ", tuned.stdout, re.M)
    _, reported = walkthrough.result("report")
    assert best and f", score {best.group(1)}," in reported.stdout, (
        tuned.stdout,
        reported.stdout,
    )  # the same raw table and YAML


def test_python_dash_m_runs_the_same_commands(walkthrough: Walkthrough) -> None:
    args = ["evaluate", "--predictions", "submission.csv", "--labels", "rsna/stage_2_test_labels.csv", "--json"]
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
        "predict",
        "--weights",
        "runs/exp/weights/best.pt",
        "--source",
        str(source),
        "--sample",
        "rsna/stage_2_sample_submission.csv",
        "--out",
        "partial.csv",
        "--conf",
        "0.01",
        cwd=cwd,
    )
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


USAGE_ERRORS = {
    "train-imgsz": (
        ["train", "--data", "README.md", "--imgsz", "100"],
        "100 is not a multiple of 32; the nearest valid size is 96",
    ),
    "predict-imgsz": (
        ["predict", "--weights", "README.md", "--source", ".", "--imgsz", "10"],
        "the nearest valid size is 32",
    ),
    "channels": (
        ["convert", "--images", ".", "--labels", "README.md", "--out", "x", "--channels", "2"],
        "2 is not valid; use 1 or 3",
    ),
    "val-fraction": (
        ["convert", "--images", ".", "--labels", "README.md", "--out", "x", "--val-fraction", "1"],
        "1.0 is not in [0, 1)",
    ),
    "split": (
        ["evaluate", "--predictions", "README.md", "--labels", "README.md", "--split", "test"],
        "'test' is not one of 'train', 'val', 'fold0'",
    ),
    "ids": (["validate-submission", "--predictions", "README.md"], "give exactly one of --sample or --ids"),
}
"""Usage errors and what their message must say: in this process (Typer's CliRunner), the first through the console script too."""


def shown(text: str) -> str:
    """``text`` without Rich's box drawing, its words joined by single spaces."""
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize(("args", "message"), list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_errors_exit_2_and_name_the_valid_values(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    monkeypatch.chdir(README.parent)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.stderr
    assert message in shown(result.stderr)


def test_a_usage_error_exits_2_from_the_console_script() -> None:
    args, message = USAGE_ERRORS["train-imgsz"]
    result = pneumo_yolo(*args, cwd=README.parent)
    assert result.returncode == 2, result.stderr
    assert message in shown(result.stderr)


def test_help_lists_the_commands_in_pipeline_order() -> None:
    result = pneumo_yolo("--help", cwd=README.parent)
    assert result.returncode == 0
    assert "<bool>" not in result.stdout
    listed = [name for name in re.findall(r"│ (\S+)\s", result.stdout) if name in PIPELINE_ORDER]
    assert listed == PIPELINE_ORDER
    assert "synth → convert → train → predict → tune → evaluate → validate-submission → report" in " ".join(
        result.stdout.split()
    )


def test_the_command_line_loads_no_array_or_network_library_before_a_command_needs_it() -> None:
    """``--help`` and every usage error start at Python's pace: numpy and OpenCV alone cost each start 0.3 CPU-s."""
    heavy = "cv2", "numpy", "pandas", "pydicom", "torch", "ultralytics"
    code = f"import sys, pneumo_yolo.cli; print(sorted(set({heavy!r}) & set(sys.modules)))"
    assert run([sys.executable, "-c", code], README.parent).stdout.split() == ["[]"]


CHOICES = {
    "synth": ["--preset easy|hard"],
    "convert": ["--channels 1|3"],
    "train": ["--arch yolo|faster-rcnn|mask-rcnn|unet", "--device cpu|0|0,1,…"],
    "predict": ["--workers auto|N", "--device cpu|0|0,1,…"],
    "tune": ["--split train|val|foldI", "--merge-grid none|nms:IOU|wbf:IOU,…"],
    "evaluate": ["--split train|val|foldI"],
    "demo": ["--preset easy|hard"],
    "compare": ["--preset easy|hard"],
}
"""Options whose valid values ``--help`` lists, as each command's help shows them."""


@pytest.mark.parametrize("command", PIPELINE_ORDER)
def test_help_shows_every_option_text_whole_flags_without_a_type_and_the_choices(command: str) -> None:
    """Typer renders help as Markdown: nothing of an option's text (e.g. ``<name>``) may be eaten. A flag
    (``--json``, ``--help``) takes no value, so it shows none (no ``<bool>``); options with a few valid values list them.

    Rendered in this process, as the console script renders it (the top-level ``--help`` above runs through it).
    """
    import typer
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.stderr
    text = shown(result.stdout)
    assert "<bool>" not in text and "--help -h Show this message" in text
    for choice in CHOICES.get(command, []):
        assert choice in text, f"{command} --help does not list {choice}"
    params = typer.main.get_command(app).commands[command].params
    for param in params:
        if param.param_type_name == "option" and getattr(param, "help", None):
            assert " ".join(param.help.replace("`", "").split()) in text, (
                f"{command} {param.opts[0]}: help text altered"
            )


def test_docs_cli_md_names_every_option_of_every_command_and_no_other() -> None:
    """The vocabulary page (docs/cli.md) and the commands cannot drift apart."""
    import typer

    from pneumo_yolo.cli import app

    page = (README.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    options = {
        name
        for command in typer.main.get_command(app).commands.values()
        for param in command.params
        for name in param.opts
        if name.startswith("--")
    }
    assert sorted(name for name in options if f"`{name}`" not in page) == []
    assert sorted(set(re.findall(r"`(--[a-z][a-z-]*)", page)) - options) == []


def test_the_help_lists_the_library_s_own_presets_and_archs() -> None:
    from pneumo_yolo.cli import options
    from pneumo_yolo.nets.archs import ARCHS
    from pneumo_yolo.synth.sample import PRESETS

    assert options.PRESETS == tuple(PRESETS) and options.ARCHS == ARCHS


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = pneumo_yolo(
        "demo",
        "--out",
        "demo",
        "--n-train",
        "20",
        "--n-test",
        "4",
        "--imgsz",
        "64",
        "--epochs",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RSNA score on the synthetic test set" in result.stdout
    submission = pd.read_csv(tmp_path / "demo" / "submission.csv", keep_default_na=False)
    assert len(submission) == 4
