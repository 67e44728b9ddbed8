"""The comparison of archs: one table, every row tuned on validation images and scored on held-out test images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_yolo.pipelines.compare import ROWS, CompareSettings, Row, check_rows, write_outputs
from pneumo_yolo.eval.postprocess import PostprocessConfig


def test_rows_are_checked_and_kept_in_table_order() -> None:
    assert check_rows(["unet", "yolov3"]) == ("yolov3", "unet")
    with pytest.raises(ValueError, match="--archs retinanet: choose from yolo11, yolov3"):
        check_rows(["retinanet"])
    assert [CompareSettings().plan(row)[0] for row in ROWS] == ["yolo", "yolo", "faster-rcnn", "mask-rcnn", "unet"]


def test_the_table_has_one_row_per_arch(tmp_path: Path) -> None:
    rows = [Row(row, f"model-{row}", 2, 0.1 * i, 0.2, 30.0, 5.0, PostprocessConfig()) for i, row in enumerate(ROWS)]
    write_outputs(tmp_path, rows, CompareSettings(n_train=40, n_test=10), val_images=10)
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert [row["arch"] for row in summary["rows"]] == list(ROWS)
    assert {"arch", "model", "score", "train_s", "predict_img_s"} <= set(summary["rows"][0])
    table = (tmp_path / "compare.md").read_text()
    assert table.count("\n| ") == 6 and "rank the methods only roughly" in table
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_the_compare_command_runs_end_to_end_through_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("pneumo-yolo")
    """The U-Net row only, to stay quick: every arch's own train → predict → tune → evaluate is tests/test_archs.py's."""
    args = ["compare", "--out", "c", "--archs", "unet", "--n-train", "20", "--n-test", "8", "--dicom-size", "128", "--imgsz", "64",
            "--unet-epochs", "1", "--batch", "8", "--device", "cpu"]  # fmt: skip
    result = subprocess.run([str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "c" / "compare.json").read_text())
    [row] = summary["rows"]
    assert (row["arch"], row["model"]) == ("unet", "unet-resnet18") and row["train_s"] > 0 and row["predict_img_s"] > 0
    assert row["score"] is None or 0.0 <= row["score"] <= 1.0  # None: no test image counted
    tuned_on = set((tmp_path / "c" / "dataset" / "images" / "val").glob("*.png"))
    assert tuned_on and not {p.stem for p in tuned_on} & set((tmp_path / "c" / "runs" / "unet" / "trained_on.txt").read_text().split())
