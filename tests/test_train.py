"""The ``train`` command: argument layering and checks, and real (tiny) training runs on the CPU."""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner, Result

from pneumo_yolo.cli import app
from pneumo_yolo.cli.flags import flag_message
from pneumo_yolo.eval.postprocess import PostprocessConfig
from pneumo_yolo.runtime import offline
from pneumo_yolo.runtime.devices import CPU, cpu_count
from pneumo_yolo.settings import SettingError
from pneumo_yolo.train.common import TrainSettings
from pneumo_yolo.train.yolo import cxr_defaults, option_key_problems, parse_overrides, training_arguments

from .conftest import assert_self_contained


def make_tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64) -> Path:
    """Grayscale PNGs with a bright blob (half of them) and YOLO labels; returns data.yaml."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 40, (size, size), dtype=np.uint8)
            label = ""
            if i % 2 == 0:
                cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
                cv2.circle(image, (cx, cy), size // 8, 230, -1)
                label = f"0 {cx / size:.4f} {cy / size:.4f} 0.25 0.25\n"
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), image)
            (root / "labels" / split / f"{i}.txt").write_text(label)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nchannels: 1\nnames:\n  0: opacity\n")
    return data


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["train", *args])


class TestOverrides:
    def test_values_are_yaml_never_code(self):
        items = ["lr0=1e-3", "cos_lr=true", "scale=[0.5, 1.5]", "cache=ram", "freeze=None", "x=__import__('os')"]
        assert parse_overrides(items) == {
            "lr0": 0.001,
            "cos_lr": True,
            "scale": [0.5, 1.5],
            "cache": "ram",
            "freeze": None,
            "x": "__import__('os')",
        }

    @pytest.mark.parametrize(
        ("items", "problem"),
        [
            (["lr0"], "expected key=value"),
            (["=3"], "expected key=value"),
            (["lr0=1", "lr0=2"], "given twice"),
            (["lr0=[1"], "not a valid value"),
        ],
    )
    def test_malformed(self, items, problem):
        with pytest.raises(SettingError, match=problem) as error:
            parse_overrides(items)
        assert error.value.field == "overrides" and flag_message(error.value).startswith("--set ")

    def test_unknown_keys_get_near_matches(self):
        problems = option_key_problems(["mosiac"], ["mosaic", "mixup"])
        assert problems == ["'mosiac' is not an Ultralytics training argument; did you mean 'mosaic'?"]

    @pytest.mark.parametrize(
        ("key", "problem"),
        [("epochs", "use --epochs"), ("data", "use --data"), ("task", "cannot be changed")],
    )
    def test_keys_with_their_own_option_are_refused(self, key, problem):
        with pytest.raises(SettingError) as error:
            TrainSettings(overrides={key: 1})
        assert error.value.field == "overrides" and "--" not in str(error.value)  # the library names fields
        message = flag_message(error.value)
        assert message.startswith(f"--set {key}=1: ") and problem in message
        assert len(option_key_problems([key], [key])) == 1


class TestArguments:
    def test_cxr_defaults_are_ultralytics_arguments(self):
        offline.import_ultralytics()
        from ultralytics.cfg import DEFAULT_CFG_DICT

        defaults = cxr_defaults()
        assert set(defaults) <= set(DEFAULT_CFG_DICT)
        assert defaults["flipud"] == 0.0 and defaults["fliplr"] == 0.5
        assert defaults["hsv_h"] == 0.0 and defaults["hsv_s"] == 0.0
        assert 0 < defaults["scale"] < DEFAULT_CFG_DICT["scale"] and 0 < defaults["translate"] <= 0.2

    def test_the_documented_defaults_are_the_shipped_ones(self):
        """docs/train.md's table of chest X-ray defaults names every key of cfg/cxr_train.yaml with its value."""
        text = (Path(__file__).resolve().parents[1] / "docs" / "train.md").read_text(encoding="utf-8")
        documented = {}
        for keys, values in re.findall(r"^\| ((?:`\w+`[ ,/]*)+) \| ([\d./ ]+) \|", text, re.M):
            groups = [re.findall(r"`(\w+)`", group) for group in keys.split("/")]
            numbers = [float(value) for value in values.split("/")]
            for group, number in zip(groups, numbers if len(numbers) == len(groups) else numbers * len(groups)):
                documented.update(dict.fromkeys(group, number))
        assert documented == {key: float(value) for key, value in cxr_defaults().items()}

    def test_layers_defaults_main_options_then_set(self, tmp_path):
        offline.import_ultralytics()
        settings = TrainSettings(
            epochs=3, batch=8, devices=CPU, project=tmp_path / "runs", overrides={"fliplr": 0.3, "lr0": 0.002}
        )
        args = training_arguments(settings, data=tmp_path / "data.yaml", imgsz=512)
        assert args["fliplr"] == 0.3 and args["lr0"] == 0.002  # --set wins over the CXR defaults
        assert args["flipud"] == 0.0 and args["imgsz"] == 512 and args["epochs"] == 3
        assert args["project"] == str(tmp_path / "runs")

    def test_bad_values_are_reported_by_key(self, tmp_path):
        offline.import_ultralytics()
        settings = TrainSettings(epochs=1, batch=8, devices=CPU, project=tmp_path, name="e", overrides={"lr0": "fast"})
        with pytest.raises(SettingError, match="lr0=fast"):
            training_arguments(settings, data=tmp_path / "d.yaml", imgsz=64)


class TestCommandErrors:
    @pytest.fixture
    def data(self, tmp_path: Path) -> Path:
        data = tmp_path / "data.yaml"
        data.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: {{0: opacity}}\n")
        return data

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--model", "yolo11n.yaml", "--set", "mosiac=0.5"], "did you mean 'mosaic'"),
            (["--model", "yolo11n.yaml", "--set", "epochs=3"], "use --epochs"),
            (["--model", "yolo11n.yaml", "--set", "lr0"], "expected key=value"),
            (["--model", "yolo11n.yaml", "--name", "../elsewhere"], "one folder name"),
            ([], "--model is required"),
            (["--resume", "--name", "never-ran"], "Nothing to resume"),
        ],
    )
    def test_clear_message_and_exit_2(self, data, tmp_path, args, message):
        result = run_cli("--data", str(data), "--project", str(tmp_path / "runs"), *args)
        assert result.exit_code == 2, result.output  # a usage error
        assert message in result.output

    def test_not_a_dataset_yaml(self, tmp_path):
        data = tmp_path / "data.yaml"
        data.write_text("just: text\n")
        result = run_cli("--data", str(data), "--model", "yolo11n.yaml")
        assert result.exit_code == 1
        assert f"{data}: not a YOLO dataset YAML" in result.output


@dataclass
class TinyRun:
    result: Result
    cwd: Path
    data: Path
    threads: dict[str, set[int]]
    network_attempts: list[str]
    new_site_files: set[Path]
    user_settings_created: bool


def _site_snapshot() -> set[Path]:
    import ultralytics

    package = Path(ultralytics.__file__).parent
    return {p for p in package.rglob("*") if "__pycache__" not in p.parts} | set(package.parent.iterdir())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Train yolo11n.yaml for 2 epochs at 64 px on the CPU through the CLI, watching what it touches.

    Runs from a fresh working folder without --project (so the default ./runs is used), with the
    network refused, user variables that ask for telemetry, and torch's thread count recorded in
    every training and validation batch.
    """
    offline.import_ultralytics()
    import torch
    from ultralytics.utils.callbacks import base

    cwd = tmp_path_factory.mktemp("work")
    data = make_tiny_dataset(cwd / "tiny")
    threads: dict[str, set[int]] = {"train": set(), "val": set()}
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(str(args[:2]))
        raise OSError("test: network is off")

    user_settings = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "Ultralytics" / "settings.json"
    existed = user_settings.exists()
    before = _site_snapshot()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        for name in ("getaddrinfo", "create_connection"):
            mp.setattr(socket, name, refuse)
        mp.setattr(socket.socket, "connect", refuse)
        mp.setenv("YOLO_OFFLINE", "0")
        mp.setenv("ULTRALYTICS_API_KEY", "ul_" + "0" * 40)
        for event, key in (("on_train_batch_end", "train"), ("on_val_batch_end", "val")):
            record = functools.partial(lambda key, _: threads[key].add(torch.get_num_threads()), key)
            mp.setitem(base.default_callbacks, event, [*base.default_callbacks[event], record])
        torch.set_num_threads(1)
        result = run_cli(
            "--data",
            "tiny/data.yaml",
            "--model",
            "yolo11n.yaml",
            "--imgsz",
            "64",
            "--epochs",
            "2",
            "--batch",
            "8",
            "--device",
            "cpu",
            "--name",
            "tiny",
            "--set",
            "save_period=1",
        )
    created = user_settings.exists() and not existed
    return TinyRun(result, cwd, data, threads, attempts, _site_snapshot() - before, created)


class TestTinyRun:
    def test_succeeds_with_a_final_line_naming_best_and_its_figures(self, tiny_run):
        assert tiny_run.result.exit_code == 0, tiny_run.result.output
        run_dir = tiny_run.cwd / "runs" / "tiny"
        last = tiny_run.result.stdout.strip().splitlines()[-1]
        assert last.startswith(f"Best weights: {run_dir / 'weights' / 'best.pt'} | val mAP50 ")
        assert "mAP50-95 " in last and "precision " in last and "recall " in last
        assert "RSNA val score " in last and str(run_dir / "postprocess_tuned.yaml") in last

    def test_rsna_metric_on_the_validation_split(self, tiny_run):
        run_dir = tiny_run.cwd / "runs" / "tiny"
        summary = json.loads((run_dir / "rsna_val.json").read_text())
        assert summary["n_images"] == 4 and summary["split"] == "val"
        for which in ("default", "tuned"):
            assert set(summary[which]["per_threshold"]) == {f"{t / 100:.2f}" for t in range(40, 80, 5)}
            assert summary[which]["score"] is None or 0.0 <= summary[which]["score"] <= 1.0
        assert (summary["tuned"]["score"] or 0) >= (summary["default"]["score"] or 0)
        assert PostprocessConfig.from_yaml(run_dir / "postprocess_tuned.yaml") == PostprocessConfig(
            **summary["tuned"]["postprocess"]
        )

    def test_the_validation_gallery_is_written_beside_the_scores(self, tiny_run):
        index = tiny_run.cwd / "runs" / "tiny" / "report" / "index.html"
        assert "Validation split" in index.read_text(encoding="utf-8")
        assert_self_contained(index)

    def test_ultralytics_layout_in_runs_name(self, tiny_run):
        """best.pt is a 1-channel detector of the training size, and results.csv holds both epochs' losses."""
        from pneumo_yolo.nets.yolo import YoloDetector

        run_dir = tiny_run.cwd / "runs" / "tiny"
        detector = YoloDetector(run_dir / "weights" / "best.pt", device=CPU)
        assert detector.imgsz == 64 and detector.model.model.model[0].conv.in_channels == 1
        with (run_dir / "results.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert [int(float(row["epoch"])) for row in rows] == [1, 2]
        assert all(float(row["train/box_loss"]) > 0 for row in rows)
        assert (run_dir / "results.png").stat().st_size > 10_000

    def test_cxr_defaults_reach_ultralytics(self, tiny_run):
        args = yaml.safe_load((tiny_run.cwd / "runs" / "tiny" / "args.yaml").read_text())
        assert args["flipud"] == 0.0 and args["fliplr"] == 0.5 and args["hsv_s"] == 0.0
        assert args["project"] == str(tiny_run.cwd / "runs") and args["save_period"] == 1

    def test_every_core_during_training_and_validation(self, tiny_run):
        assert tiny_run.threads == {"train": {cpu_count()}, "val": {cpu_count()}}

    def test_nothing_leaves_the_machine_or_our_folders(self, tiny_run):
        assert tiny_run.network_attempts == []
        assert tiny_run.new_site_files == set()
        assert not tiny_run.user_settings_created

    def test_resume_continues_an_interrupted_run_in_its_folder(self, tiny_run):
        """A run stopped after epoch 1 (its epoch0.pt as last.pt) trains epoch 2 into its own folder.

        Without Ultralytics' plots, which a resumed run may turn off (the first run's figures are checked above).
        """
        weights = tiny_run.cwd / "runs" / "resumed" / "weights"
        weights.mkdir(parents=True)
        shutil.copyfile(tiny_run.cwd / "runs" / "tiny" / "weights" / "epoch0.pt", weights / "last.pt")
        where = ["--data", str(tiny_run.data), "--project", str(tiny_run.cwd / "runs")]
        result = run_cli(*where, "--name", "resumed", "--resume", "--device", "cpu", "--set", "plots=False")
        assert result.exit_code == 0, result.output
        with (weights.parent / "results.csv").open() as handle:
            assert [int(float(row["epoch"])) for row in csv.DictReader(handle)] == [2]
        assert (weights / "best.pt").is_file()
        assert result.stdout.strip().splitlines()[-1].startswith(f"Best weights: {weights / 'best.pt'}")

    def test_resume_of_a_finished_run_is_refused(self, tiny_run):
        where = ["--data", str(tiny_run.data), "--project", str(tiny_run.cwd / "runs")]
        result = run_cli(*where, "--name", "tiny", "--resume")
        assert result.exit_code == 2
        assert "finished run: nothing to resume" in result.output
