"""The ablation's bookkeeping: stages tuned on out-of-fold detections only, scored on the test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pneumo_yolo.pipelines.ablation import STAGES, stage_rows, write_outputs
from pneumo_yolo.eval.detections import RawDetections
from pneumo_yolo.eval.tune import TuneGrid

from .test_gate import ensemble


GRID = TuneGrid(conf=(0.1, 0.3, 0.5), merges=(("none", 0.0), ("wbf", 0.5)), shrink=(1.0, 0.875), fusion_iou=(0.4, 0.6), gate_alpha=(0.0, 1.0), gate_threshold=(0.0, 0.4))


def renamed(raw: RawDetections, prefix: str) -> RawDetections:
    return RawDetections(tuple(f"{prefix}{pid}" for pid in raw.patient_ids), raw.sizes, raw.image, raw.scores, raw.boxes, raw.member, raw.members, raw.p_opacity)


def folds_and_test(k: int = 3) -> tuple[list[RawDetections], list[RawDetections], dict, dict]:
    """``k`` out-of-fold tables of distinct images and ``k`` test tables of the same test images, each with two members and a probability."""
    oof, oof_truth = [], {}
    for fold in range(k):
        truth, raw = ensemble(60, seed=10 + fold)
        oof.append(renamed(raw, f"f{fold}-"))
        oof_truth.update({f"f{fold}-{pid}": boxes for pid, boxes in truth.items()})
    test_truth, _ = ensemble(80, seed=50)
    test = [renamed(ensemble(80, seed=50)[1], "t-") for _ in range(k)]
    return oof, test, oof_truth, {f"t-{pid}": boxes for pid, boxes in test_truth.items()}


def test_every_stage_is_tuned_on_out_of_fold_images_and_scored_on_the_test_set(tmp_path: Path) -> None:
    oof, test, oof_truth, test_truth = folds_and_test()
    stages = stage_rows(oof, test, oof_truth, test_truth, GRID)
    assert [s.stage for s in stages] == list(STAGES)
    assert stages[0].tuned_on.startswith("nothing") and stages[0].config.shrink == 1.0
    assert all("fold 0 (60)" in s.tuned_on for s in stages[1:4]) and all("every fold (180)" in s.tuned_on for s in stages[4:])
    assert all(s.config.shrink == 1.0 for s in stages[:5])  # shrink is tuned in the last stage only
    assert all(s.result.n_images <= 80 for s in stages)  # test images only
    write_outputs(tmp_path, stages, test_images=80)
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert summary["test_images"] == 80 and [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "ablation.md").read_text().count("\n| ") == 7


def test_the_gate_stage_differs_from_the_one_before_only_by_the_probability() -> None:
    oof, test, oof_truth, test_truth = folds_and_test()
    blind = stage_rows([t.without_probability() for t in oof], [t.without_probability() for t in test], oof_truth, test_truth, GRID)
    assert blind[2].score == blind[1].score and blind[2].config == blind[1].config
    seeing = stage_rows(oof, test, oof_truth, test_truth, GRID)
    assert seeing[1].score == blind[1].score  # stage 2 never sees the probability
    assert (seeing[2].config.gate_alpha, seeing[2].config.gate_threshold) != (blind[2].config.gate_alpha, blind[2].config.gate_threshold) or seeing[2].score != blind[2].score
    assert np.isfinite([s.score for s in seeing]).all()


def test_the_ablation_command_runs_end_to_end_through_the_console_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    from pneumo_yolo.eval.detections import read_raw

    script = Path(sys.executable).with_name("pneumo-yolo")
    args = ["ablation", "--out", "a", "--n-train", "24", "--n-test", "6", "--dicom-size", "128", "--imgsz", "64", "--folds", "2",
            "--epochs", "1", "--classifier-epochs", "1", "--device", "cpu"]  # fmt: skip
    result = subprocess.run([str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "a"
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["test_images"] == 6 and [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert all(0.0 <= row["score"] <= 1.0 for row in summary["stages"])
    test_ids = set(read_raw(out / "raw" / "test-fold0.parquet").patient_ids)
    for fold in (0, 1):
        oof = read_raw(out / "raw" / f"oof-fold{fold}.parquet")
        trained_on = set((out / "runs" / f"detector-fold{fold}" / "trained_on.txt").read_text().split())
        assert oof.patient_ids and not set(oof.patient_ids) & trained_on  # out of fold
        assert not set(oof.patient_ids) & test_ids and set(oof.members) == {2}  # TTA: two members
        assert not np.isnan(oof.p_opacity).any()  # the fold classifier's probability
