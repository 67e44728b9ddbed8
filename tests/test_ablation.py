"""The ablation: its split, its stages (tuned on out-of-fold images, scored on the test set), its report, and its resumable chain."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pneumo_yolo.eval.detections import RawDetections, RawImage
from pneumo_yolo.eval.tune import TuneGrid
from pneumo_yolo.pipelines.ablation_data import AblationDataError, split_patients
from pneumo_yolo.pipelines.ablation_report import ORACLE, SeedRun, Stage, write_report
from pneumo_yolo.pipelines.ablation_stages import STAGES, Tables, box_recall, diagnostics, stage_rows, top_scores
from pneumo_yolo.pipelines.ablation_steps import predicted_table

from .test_gate import ensemble, jittered

GRID = TuneGrid(
    conf=(0.1, 0.3, 0.5),
    merges=(("none", 0.0), ("wbf", 0.5)),
    shrink=(1.0, 0.875),
    fusion_iou=(0.4, 0.6),
    gate_alpha=(0.0, 1.0),
    gate_threshold=(0.0, 0.4),
    model_iou=(0.4,),
    model_votes=(1, 2, "majority"),
)


def renamed(raw: RawDetections, prefix: str) -> RawDetections:
    return replace(raw, patient_ids=tuple(f"{prefix}{pid}" for pid in raw.patient_ids))


@functools.cache
def tables(k: int = 3) -> Tables:
    """``k`` out-of-fold tables of distinct images, and ``k`` models' tables of the same test images."""
    oof, truth = [], {}
    for fold in range(k):
        fold_truth, raw = ensemble(60, seed=10 + fold)
        oof.append(renamed(raw, f"f{fold}-"))
        truth.update({f"f{fold}-{pid}": boxes for pid, boxes in fold_truth.items()})
    test_truth, raw = ensemble(80, seed=50)
    test = [renamed(raw if model == 0 else jittered(raw, 50 + model), "test-") for model in range(k)]
    truth.update({f"test-{pid}": boxes for pid, boxes in test_truth.items()})
    return Tables(oof=oof, test=test, truth=truth)


@pytest.fixture(scope="module")
def seen() -> tuple[list, object]:
    """The stages and the oracle of :func:`tables`."""
    return stage_rows(tables(), GRID)


class TestStages:
    def test_each_stage_is_tuned_on_out_of_fold_images_and_scored_on_the_test_images(self, seen: tuple) -> None:
        stages, oracle = seen
        assert [s.stage for s in stages] == list(STAGES)
        assert stages[0].tuned_on.startswith("nothing") and stages[0].config.shrink == 1.0
        assert all("fold 0 (60)" in s.tuned_on for s in stages[1:4]) and all(
            "every fold (180)" in s.tuned_on for s in stages[4:]
        )
        assert all("voted by majority" in s.tuned_on for s in stages[4:]) and stages[4].config.model_votes == "majority"
        assert all(s.config.shrink == 1.0 for s in stages[:5])  # shrink is tuned in the last stage only
        assert [s.config.model_fusion for s in stages] == ["passes"] * 4 + ["vote"] * 2
        assert {k: v for k, v in vars(stages[5].config).items() if k != "shrink"} == {
            k: v for k, v in vars(stages[4].config).items() if k != "shrink"
        }
        assert all(
            s.result.n_images <= 80 and len(s.result.image_scores) == 80 for s in [*stages, oracle]
        )  # the test images only
        assert oracle.tuned_on == "the test images themselves" and oracle.config.model_fusion == "vote"
        assert oracle.result.score >= stages[4].result.score - 1e-12  # tuned on the very images it is scored on
        assert all(0 <= s.recall <= 1 for s in stages)

    def test_the_gate_stage_differs_from_the_one_before_only_by_the_probability(self, seen: tuple) -> None:
        seeing = tables()
        blind = Tables(
            [t.without_probability() for t in seeing.oof], [t.without_probability() for t in seeing.test], seeing.truth
        )
        blind_stages, _ = stage_rows(blind, GRID)
        assert (
            blind_stages[2].result.score == blind_stages[1].result.score
            and blind_stages[2].config == blind_stages[1].config
        )
        seeing_stages = seen[0]
        assert seeing_stages[1].result.score == blind_stages[1].result.score  # stage 2 never sees the probability
        assert (
            seeing_stages[2].config != blind_stages[2].config
            or seeing_stages[2].result.score != blind_stages[2].result.score
        )
        assert blind_stages[4].config.model_fusion == "vote" and blind_stages[4].result.score >= 0

    def test_box_recall_counts_true_boxes_found_at_iou_04(self) -> None:
        truth = {"a": np.array([[0, 0, 100, 100.0], [200, 200, 50, 50.0]]), "b": np.zeros((0, 4))}
        predictions = {
            "a": np.array([[0.9, 10, 0, 100, 100.0], [0.8, 0, 0, 10, 10.0]]),
            "b": np.array([[0.5, 0, 0, 10, 10.0]]),
        }
        assert box_recall(truth, predictions) == 0.5  # IoU 0.82 found, the second true box missed

    def test_diagnostics_give_each_classifiers_roc_auc_on_the_test_images(self) -> None:
        found = diagnostics(tables())
        assert len(found["classifier_roc_auc"]) == 3 and all(
            0.5 < auc <= 1 for auc in found["classifier_roc_auc"]
        )  # the probability knows the truth
        assert 0.5 < found["ensemble_classifier_roc_auc"] <= 1 and found["test_positive_images"] > 0
        assert len(found["detector_roc_auc"]) == 3 and all(0.0 <= auc <= 1 for auc in found["detector_roc_auc"])

    def test_an_images_top_score_is_its_best_box_of_any_pass_and_0_without_one(self) -> None:
        boxes = np.array([[0, 0, 10, 10.0], [5, 5, 20, 20.0]])
        raw = RawDetections.from_images(
            [
                RawImage("a", boxes, np.array([0.2, 0.7]), 64.0, 64.0, pass_index=np.array([0, 1]), passes=2),
                RawImage("b", np.zeros((0, 4)), np.zeros(0), 64.0, 64.0, passes=2),
            ]
        )
        assert top_scores(raw, ["b", "a"]).tolist() == [0.0, 0.7]


class TestSplit:
    STRATA = {f"p{i:03d}": ("Lung Opacity", "Normal", "No Lung Opacity / Not Normal")[i % 3] for i in range(300)}

    def test_the_test_images_are_an_exact_stratified_share_and_the_rest_are_the_folds(self) -> None:
        split = split_patients(self.STRATA, 60)
        assert split == split_patients(
            self.STRATA, 0.2
        )  # a count or a fraction, drawn with a fixed key: the same for every seed
        assert (len(split.test), len(split.folds)) == (60, 240) and not set(split.test) & set(split.folds)
        assert Counter(self.STRATA[p] for p in split.test) == {
            "Lung Opacity": 20,
            "Normal": 20,
            "No Lung Opacity / Not Normal": 20,
        }

    @pytest.mark.parametrize(
        ("test", "message"),
        [
            (0.999, "--test-fraction 0.999 leaves no patient for the folds"),
            (0.001, "leaves no patient for the test images"),
            (300, "--n-test 300"),
            (1.5, "--n-test 1.5"),
        ],
    )
    def test_sizes_that_do_not_fit_are_named(self, test: float, message: str) -> None:
        with pytest.raises(AblationDataError, match=message):
            split_patients(self.STRATA, test)


class TestReport:
    def test_one_seed_gives_intervals_per_stage_and_step_with_the_oracle_apart(
        self, tmp_path: Path, seen: tuple
    ) -> None:
        stages, oracle = seen
        summary = write_report(tmp_path, [SeedRun(0, stages, oracle, {"classifier_roc_auc": [0.8]})])
        assert summary == json.loads((tmp_path / "ablation.json").read_text())
        assert summary["test_images"] == 80 and [row["stage"] for row in summary["stages"]] == list(STAGES)
        for i, row in enumerate(summary["stages"]):
            assert row["ci_low"] <= row["score"] <= row["ci_high"]
            if i:
                assert row["change_ci_low"] <= row["change"] <= row["change_ci_high"]
                assert row["change"] == pytest.approx(row["score"] - summary["stages"][i - 1]["score"], abs=2e-4)
                assert row["verdict"] in ("clearly positive", "clearly negative", "not clear")
        assert summary["oracle"]["stage"] == ORACLE and summary["oracle"]["score"] >= summary["stages"][4]["score"]
        text = (tmp_path / "ablation.md").read_text()
        assert text.count("\n| ") == 7 and "leakage" in text and "ROC AUC" in text
        assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    def test_several_seeds_give_the_mean_its_interval_and_the_spread(self, tmp_path: Path, seen: tuple) -> None:
        stages, oracle = seen
        rng = np.random.default_rng(0)

        def other(stage: Stage) -> Stage:  # another seed's result: each image's score moved a little
            scores = np.clip(stage.result.image_scores + rng.normal(0, 0.05, len(stage.result.image_scores)), 0, 1)
            return replace(stage, result=replace(stage.result, score=float(np.nanmean(scores)), image_scores=scores))

        runs = [SeedRun(0, stages, oracle), SeedRun(1, [other(stage) for stage in stages], other(oracle))]
        summary = write_report(tmp_path, runs)
        assert summary["seeds"] == [0, 1] and len(summary["runs"]) == 2
        for row in summary["stages"]:
            assert (
                row["score"] == pytest.approx(np.mean(row["scores"]), abs=2e-4)
                and row["sd"] >= 0
                and len(row["scores"]) == 2
            )
        assert "spread" in (tmp_path / "ablation.md").read_text()


def test_a_table_is_predicted_once_and_reused_while_its_settings_stay(tmp_path: Path) -> None:
    from pneumo_yolo.eval.detections import write_raw

    _, raw = ensemble(5, seed=1)
    calls = []

    def predict() -> None:
        calls.append(1)
        write_raw(tmp_path / "t.parquet", raw.images())

    logged = []
    for settings in ({"model": "a"}, {"model": "a"}, {"model": "b"}):
        assert predicted_table(tmp_path / "t.parquet", settings, predict, logged.append).patient_ids == raw.patient_ids
    assert len(calls) == 2 and len(logged) == 1  # the second call reused the table, the third had other settings


def test_the_ablation_command_resumes_after_an_interruption_through_the_console_script(tmp_path: Path) -> None:
    from pneumo_yolo.eval.detections import read_raw

    script = str(Path(sys.executable).with_name("pneumo-yolo"))
    made = subprocess.run(
        [script, "synth", "--out", "rsna", "--n-train", "36", "--dicom-size", "128", "--preset", "hard"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    args = [
        script,
        "ablation",
        "--rsna",
        "rsna",
        "--out",
        "a",
        "--n-test",
        "12",
        "--imgsz",
        "64",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--classifier-epochs",
        "1",
        "--device",
        "cpu",
    ]
    out = tmp_path / "a" / "seed0"
    finished = out / "runs" / "detector-fold0" / "trained_on.txt"
    first = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not finished.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # interrupted once the first training finished
    first.wait()
    assert finished.exists() and not (tmp_path / "a" / "ablation.json").exists()
    weights = finished.parent / "weights" / "best.pt"
    stamp = weights.stat().st_mtime_ns
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (
        f"fold 0: reusing {finished.parent}" in second.stdout and weights.stat().st_mtime_ns == stamp
    )  # the finished training was reused
    summary = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert summary["test_images"] == 12 and [row["stage"] for row in summary["stages"]] == list(STAGES)
    assert (
        all(0.0 <= row["score"] <= 1.0 and "ci_low" in row for row in summary["stages"])
        and "change" in summary["stages"][1]
    )
    assert summary["oracle"]["stage"] == ORACLE
    test_ids = set((out / "test_ids.txt").read_text().split())
    assert len(test_ids) == 12 and set(read_raw(out / "raw" / "test-fold1.parquet").patient_ids) == test_ids
    for fold in (0, 1):
        oof = read_raw(out / "raw" / f"oof-fold{fold}.parquet")
        trained_on = set((out / "runs" / f"detector-fold{fold}" / "trained_on.txt").read_text().split())
        assert oof.patient_ids and not set(oof.patient_ids) & (
            trained_on | test_ids
        )  # out of fold, and never a test image
        assert (
            set(oof.passes) == {2} and set(oof.models) == {1} and not np.isnan(oof.p_opacity).any()
        )  # TTA and the fold classifier
