"""The comparison of archs on an equal budget: one table, every row tuned on validation images and scored on held-out test images."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumo_yolo.cli import app
from pneumo_yolo.eval.bootstrap import Interval
from pneumo_yolo.eval.postprocess import PostprocessConfig
from pneumo_yolo.pipelines.compare import MODELS, ROWS, CompareSettings, check_rows, parse_models
from pneumo_yolo.pipelines.compare_report import Row, write_outputs
from pneumo_yolo.train.budget import Budget, LearningCurve, TrainingClock

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
BUDGET_MIN = 0.02
"""Each row's budget in the end-to-end run: 1.2 CPU-s, a few steps of a 64 px training (a step takes 0.3-0.5 CPU-s)."""


def test_rows_and_models_are_checked_and_kept_in_table_order() -> None:
    assert check_rows(["unet", "yolov3"]) == ("yolov3", "unet")
    with pytest.raises(ValueError, match="--rows retinanet: choose from yolo11, yolov3"):
        check_rows(["retinanet"])
    assert [CompareSettings().plan(row) for row in ROWS] == [
        ("yolo", "yolo11n.yaml"),
        ("yolo", "yolov3-tiny.yaml"),
        ("faster-rcnn", MODELS["faster-rcnn"]),
        ("mask-rcnn", MODELS["mask-rcnn"]),
        ("unet", MODELS["unet"]),
    ]
    assert parse_models(["unet=efficientnet-b0"]) == {**MODELS, "unet": "efficientnet-b0"}
    with pytest.raises(ValueError, match="expected ROW=MODEL"):
        parse_models(["retinanet=resnet18"])


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--rows", "retinanet"], "--rows retinanet: choose from"), (["--model", "resnet34"], "expected ROW=MODEL")],
)
def test_bad_rows_or_models_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["compare", "--out", str(tmp_path / "c"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "c").exists()


def _record(points: list[float | None]) -> dict:
    curve = [
        {"epoch": i + 1, "step": 10 * (i + 1), "train_min": 0.5 * (i + 1), "wall_min": 0.3 * (i + 1), "val_score": s}
        for i, s in enumerate(points)
    ]
    return {
        "budget": {"minutes": 2.0, "clock": "cpu"},
        "clock": "cpu",
        "epochs": len(points),
        "steps": 10 * len(points),
        "train_s": 121.0,
        "train_wall_s": 70.0,
        "curve_scoring_s": 5.0,
        "curve": curve,
    }


def test_every_row_carries_its_interval_budget_curve_and_share_of_yolo11(tmp_path: Path) -> None:
    scores = [0.2, 0.12, 0.05, float("nan"), 0.1]
    rows = [
        Row(
            row,
            f"model-{row}",
            Interval(score, score - 0.03, score + 0.03),
            0.2,
            _record([0.0, 0.05 * i, None]),
            5.0,
            PostprocessConfig(),
        )
        for i, (row, score) in enumerate(zip(ROWS, scores))
    ]
    write_outputs(tmp_path, rows, CompareSettings(n_train=40, n_test=10), val_images=10, wall_min=3.0)
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert [row["arch"] for row in summary["rows"]] == list(ROWS) and summary["wall_min"] == 3.0
    yolov3 = summary["rows"][1]
    assert yolov3["interval"] == [0.09, 0.15] and yolov3["of_yolo11"] == 0.6
    assert yolov3["budget"] == {"minutes": 2.0, "clock": "cpu"} and (yolov3["epochs"], yolov3["steps"]) == (3, 30)
    assert [point["val_score"] for point in yolov3["curve"]] == [0.0, 0.05, None]
    assert summary["rows"][3]["score"] is None and summary["rows"][3]["of_yolo11"] is None  # no test image counted
    table = (tmp_path / "compare.md").read_text()
    assert table.count("\n| ") == 6
    assert "| yolov3 | model-yolov3 | 0.1200 [0.0900, 0.1500] | 0.60 |" in table and "0.000 → 0.050 → n/a" in table
    png = (tmp_path / "compare.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 2 * height > 0  # two panels side by side: the scores and the learning curves


class TestBudget:
    def test_the_cpu_clock_counts_work_only_while_running(self) -> None:
        clock = TrainingClock("cpu")
        clock.start()
        time.sleep(0.3)  # waiting: wall time, no CPU time
        busy_until = time.process_time() + 0.2
        while time.process_time() < busy_until:
            pass
        clock.stop()
        counted = clock.seconds()
        sum(range(2_000_000))  # not counted: the clock is stopped
        assert 0.19 <= counted < 0.3 and clock.seconds() == counted and clock.wall_seconds() >= 0.5

    def test_a_budget_needs_minutes_and_a_known_clock(self) -> None:
        assert Budget.for_device(2, on_cpu=False) == Budget(2, "wall") and Budget(0.5, "cpu").seconds == 30
        with pytest.raises(ValueError, match="more than 0 minutes"):
            Budget(0, "cpu")
        with pytest.raises(ValueError, match="one of cpu, wall"):
            TrainingClock("gpu")

    def test_the_curve_scores_once_per_share_and_after_the_last_epoch(self) -> None:
        curve = LearningCurve(points=3)
        taken = [
            curve.due(progress, last=last)
            for progress, last in [(0.2, False), (0.7, False), (0.8, False), (0.95, True)]
        ]
        assert taken == [False, True, False, True]
        assert not any(LearningCurve(points=0).due(p, last=True) for p in (0.5, 1.0))


def check_budgeted_run(record: dict, budget_min: float, batches_per_epoch: int) -> None:
    """The budget (CPU seconds here) ended the run at the first step past it, and ``curve.json`` says how far it got."""
    assert record["budget"] == {"minutes": budget_min, "clock": "cpu"} and record["clock"] == "cpu"
    assert budget_min * 60 <= record["train_s"] < budget_min * 60 * 3
    assert (
        record["epochs"] >= 1
        and (record["epochs"] - 1) * batches_per_epoch < record["steps"] <= record["epochs"] * batches_per_epoch
    )
    curve = record["curve"]
    assert 1 <= len(curve) <= 2 and curve[-1]["epoch"] == record["epochs"] and curve[-1]["step"] == record["steps"]
    assert (
        np.all(np.diff([point["train_min"] for point in curve]) > 0)
        and curve[-1]["train_min"] <= record["train_s"] / 60 + 1e-3
    )
    assert (
        all(point["val_score"] is None or 0.0 <= point["val_score"] <= 1.0 for point in curve)
        and record["curve_scoring_s"] > 0
    )


def test_the_compare_command_runs_end_to_end_through_the_console_script(tmp_path: Path) -> None:
    """Two rows at once, each in its own process (the CPU default): the U-Net and YOLO11, to stay quick.

    Each row's budget ends its training through its trainer's callbacks: Lightning's (the U-Net) and
    Ultralytics' (YOLO11), both checked by :func:`check_budgeted_run`. Every arch's own train → predict → tune → evaluate is tests/test_archs.py's. Run as from a
    user's shell, without the ``YOLO_*`` variables this test session set: a row that is not a
    YOLO must still set Ultralytics up offline before anything imports it.
    """
    args = [
        "compare",
        "--out",
        "c",
        "--rows",
        "unet,yolo11",
        "--model",
        "unet=resnet18",
        "--n-train",
        "20",
        "--n-test",
        "8",
        "--dicom-size",
        "128",
        "--imgsz",
        "64",
        "--budget-min",
        str(BUDGET_MIN),
        "--curve-points",
        "2",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--parallel",
        "2",
    ]
    shell = {key: value for key, value in os.environ.items() if not key.startswith("YOLO_")}
    result = subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=shell)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 rows at a time, 1 thread each" in result.stdout
    summary = json.loads((tmp_path / "c" / "compare.json").read_text())
    rows = {row["arch"]: row for row in summary["rows"]}
    assert (
        list(rows) == ["yolo11", "unet"]
        and rows["unet"]["model"] == "unet-resnet18"
        and rows["unet"]["predict_img_s"] > 0
    )
    train_images = len(list((tmp_path / "c" / "dataset" / "images" / "train").glob("*.png")))
    check_budgeted_run(
        rows["unet"], BUDGET_MIN, batches_per_epoch=train_images // 8
    )  # Lightning drops the last, incomplete batch
    check_budgeted_run(rows["yolo11"], BUDGET_MIN, batches_per_epoch=math.ceil(train_images / 8))
    low, high = rows["unet"]["interval"]
    assert (
        rows["unet"]["score"] is not None and low <= rows["unet"]["score"] <= high
    )  # 8 test images, half of them positive: the score is defined
    assert all(f"{row['arch']} ({row['model']}): test score" in result.stdout for row in rows.values())
    assert (
        "Epoch" in (tmp_path / "c" / "logs" / "yolo11.log").read_text()
    )  # each row's own output went to its log, not to the terminal
    assert "Epoch" not in result.stdout
    tuned_on = {p.stem for p in (tmp_path / "c" / "dataset" / "images" / "val").glob("*.png")}
    assert tuned_on and not tuned_on & set((tmp_path / "c" / "runs" / "unet" / "trained_on.txt").read_text().split())
    assert "| unet | unet-resnet18 |" in (tmp_path / "c" / "compare.md").read_text()


def test_a_row_without_a_score_is_plotted_as_missing_not_as_0(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    from pneumo_yolo.pipelines.compare_report import figure

    drawn: dict[str, list] = {"bars": [], "texts": []}
    barh, text = Axes.barh, Axes.text
    monkeypatch.setattr(
        Axes, "barh", lambda self, y, width, **kw: drawn["bars"].append(list(width)) or barh(self, y, width, **kw)
    )
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, **kw: drawn["texts"].append(s) or text(self, x, y, s, **kw))
    rows = [
        Row(row, row, Interval(score, score, score), 0.2, _record([0.1]), 5.0, PostprocessConfig())
        for row, score in (("yolo11", 0.3), ("unet", float("nan")))
    ]
    assert figure(rows, 10)[:4] == b"\x89PNG"
    assert math.isnan(drawn["bars"][0][0]) and drawn["bars"][0][1] == 0.3  # drawn bottom up: unet, yolo11
    assert " no score" in drawn["texts"] and " 0.000" not in drawn["texts"]
