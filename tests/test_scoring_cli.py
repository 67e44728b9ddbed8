"""The ``evaluate``, ``validate-submission`` and ``tune`` commands, on the real labels where they help."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumo_yolo.boxes import ltwh_to_xyxy
from pneumo_yolo.cli import app
from pneumo_yolo.data.labels import read_labels
from pneumo_yolo.eval.detections import RawImage, write_raw
from pneumo_yolo.eval.postprocess import PostprocessConfig
from pneumo_yolo.eval.submission import prediction_string, write_submission

from .conftest import RSNA_DIR as RSNA
from .conftest import RSNA_ENV
from .test_tune import generated

LABELS = RSNA / "stage_2_train_labels.csv"
SAMPLE = RSNA / "stage_2_sample_submission.csv"
needs_rsna = pytest.mark.skipif(
    not LABELS.exists(), reason=f"needs the real RSNA label CSVs, not found in {RSNA}: set {RSNA_ENV} to their folder"
)


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def real_submissions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real ground truth written as a submission, and an empty submission, for all 26,684 patients."""
    folder = tmp_path_factory.mktemp("real")
    boxes = read_labels(LABELS).boxes
    strings = {pid: prediction_string(ltwh_to_xyxy(b), np.ones(len(b))) for pid, b in boxes.items()}
    write_submission(folder / "truth.csv", strings, boxes)
    write_submission(folder / "empty.csv", {}, boxes)
    return folder / "truth.csv", folder / "empty.csv"


@needs_rsna
class TestEvaluateOnRealLabels:
    def test_ground_truth_as_submission_scores_exactly_one(self, real_submissions: tuple[Path, Path]) -> None:
        result = run("evaluate", "--predictions", real_submissions[0], "--labels", LABELS, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["score"] == 1.0
        assert set(data["per_threshold"].values()) == {1.0}
        assert data["n_images"] == 6012
        assert data["score_positive"] == 1.0 and data["score_negative"] is None

    def test_empty_submission_scores_zero(self, real_submissions: tuple[Path, Path]) -> None:
        result = run("evaluate", "--predictions", real_submissions[1], "--labels", LABELS, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["score"] == 0.0 and data["n_images"] == 6012 and data["negative_fp_share"] == 0.0

    def test_report_has_the_score_and_the_per_threshold_table(self, real_submissions: tuple[Path, Path]) -> None:
        result = run("evaluate", "--predictions", real_submissions[0], "--labels", LABELS)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == (
            "score 1.0000 on 6,012 image(s) of 26,684: the other 20,672 are negative images without a prediction,"
            " which the metric leaves out (nothing to match there, right or wrong)"
        )
        assert lines[1:10] == ["IoU threshold  score"] + [f"  {t:.2f}  1.0000" for t in np.arange(0.40, 0.76, 0.05)]
        assert "positive images  1.0000  (6,012 scored)" in lines
        assert "negative images with any prediction: 0.0%" in lines


def write_small_set(folder: Path) -> None:
    (folder / "labels.csv").write_text(
        "patientId,x,y,width,height,Target\npos-1,100,100,200,300,1\npos-2,0,0,50,50,1\nneg-1,,,,,0\nneg-2,,,,,0\n"
    )
    (folder / "manifest.csv").write_text(
        "patientId,split,width,height,n_boxes,class,view_position,sex,age\n"
        "pos-1,val,1024,1024,1,Lung Opacity,PA,M,40\nneg-1,val,1024,1024,0,Normal,AP,F,30\n"
        "pos-2,train,1024,1024,1,Lung Opacity,PA,F,50\nneg-2,train,1024,1024,0,Normal,PA,M,60\n"
    )


class TestEvaluate:
    def test_manifest_split_and_missing_patients(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        # neg-1 carries a false positive; pos-2 is in the train split and ignored.
        (tmp_path / "sub.csv").write_text(
            "patientId,PredictionString\npos-1,0.9 100 100 200 300\nneg-1,0.2 5 5 10 10\npos-2,\n"
        )
        result = run(
            "evaluate",
            "--predictions",
            tmp_path / "sub.csv",
            "--labels",
            tmp_path / "labels.csv",
            "--manifest",
            tmp_path / "manifest.csv",
            "--split",
            "val",
            "--json",
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert (data["score"], data["n_images"], data["score_positive"], data["score_negative"]) == (0.5, 2, 1.0, 0.0)
        assert data["negative_fp_share"] == 1.0
        # Without a manifest every labelled patient counts: pos-2 has no prediction.
        result = run("evaluate", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--json")
        assert json.loads(result.stdout)["score"] == pytest.approx(1 / 3)

    def test_says_how_many_images_it_scored_and_why_not_the_others(self, tmp_path: Path) -> None:
        """Of 4 patients, one positive has a box and the two negatives none: the metric scores the 2 positives only."""
        write_small_set(tmp_path)
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\npos-1,0.9 100 100 200 300\nneg-1,\nneg-2,\n")
        result = run("evaluate", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0] == (
            "score 0.5000 on 2 image(s) of 4: the other 2 are negative images without a prediction,"
            " which the metric leaves out (nothing to match there, right or wrong)"
        )
        as_json = run("evaluate", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv", "--json")
        assert json.loads(as_json.stdout)["n_left_out"] == 2

    def test_submission_patient_not_in_the_labels_is_an_error(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\npos-1,\nstranger,0.5 1 1 5 5\n")
        result = run("evaluate", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv")
        assert result.exit_code == 1
        assert "1 patient(s) are not in the labels, e.g. stranger" in result.stderr

    def test_malformed_submission_is_an_error(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\npos-1,0.5 1 1 5\n")
        result = run("evaluate", "--predictions", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv")
        assert result.exit_code == 1
        assert "line 2: pos-1: PredictionString has 4 numbers" in result.stderr

    def test_unknown_split_is_an_error(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\n")
        result = run(
            "evaluate",
            "--predictions",
            tmp_path / "sub.csv",
            "--labels",
            tmp_path / "labels.csv",
            "--manifest",
            tmp_path / "manifest.csv",
            "--split",
            "valid",
        )
        assert result.exit_code == 2
        assert "'valid' is not one of 'train', 'val', 'fold0'" in " ".join(result.stderr.replace("│", " ").split())


class TestValidateSubmission:
    @pytest.mark.skipif(
        not SAMPLE.exists(),
        reason=f"needs the real sample submission, not found in {RSNA}: set {RSNA_ENV} to its folder",
    )
    def test_real_sample_is_valid(self) -> None:
        result = run("validate-submission", "--predictions", SAMPLE, "--sample", SAMPLE)
        assert result.exit_code == 0, result.output
        assert "covers the 3,000 expected patients" in result.stdout

    def test_problems_are_listed_with_exit_code_one(self, tmp_path: Path) -> None:
        (tmp_path / "ids.txt").write_text("a-1\nb-2\nc-3\n")
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\na-1,0.5 0 0 5\na-1,\nz-9,\n")
        result = run(
            "validate-submission",
            "--predictions",
            tmp_path / "sub.csv",
            "--ids",
            tmp_path / "ids.txt",
            "--max-problems",
            "3",
        )
        assert result.exit_code == 1
        errors = result.stderr.splitlines()
        assert errors[0].endswith(
            "line 2: a-1: PredictionString has 4 numbers, not a multiple of 5 (conf x y w h per box)"
        )
        assert errors[1].endswith("line 3: a-1: duplicate patientId (lines 2, 3)")
        assert errors[3:] == ["… and 2 more (see --max-problems)", f"invalid: 5 problem(s) in {tmp_path / 'sub.csv'}"]

    def test_a_box_outside_the_manifest_size_is_a_warning_not_a_failure(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        (tmp_path / "small.csv").write_text("patientId,split,width,height\npos-1,val,300,300\n")
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\npos-1,0.5 250 0 100 100\n")
        assert (
            run("validate-submission", "--predictions", tmp_path / "sub.csv", "--ids", tmp_path / "small.csv").exit_code
            == 0
        )
        result = run(
            "validate-submission",
            "--predictions",
            tmp_path / "sub.csv",
            "--ids",
            tmp_path / "small.csv",
            "--manifest",
            tmp_path / "small.csv",
        )
        assert result.exit_code == 0
        assert "warning: line 2: pos-1: box 1 reaches outside the 300×300 image" in result.stderr
        assert result.stdout.startswith(f"valid: {tmp_path / 'sub.csv'} covers the 1 expected patients (1 warning(s))")

    def test_needs_exactly_one_list_of_ids(self, tmp_path: Path) -> None:
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\n")
        assert (
            "exactly one of --sample or --ids"
            in run("validate-submission", "--predictions", tmp_path / "sub.csv").stderr
        )
        both = run(
            "validate-submission",
            "--predictions",
            tmp_path / "sub.csv",
            "--sample",
            tmp_path / "sub.csv",
            "--ids",
            tmp_path / "sub.csv",
        )
        assert both.exit_code == 2


class TestTune:
    def test_a_model_that_finds_nothing_is_said_to_score_0_with_every_configuration_tied(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        nothing = [RawImage(pid, np.zeros((0, 4)), np.zeros(0), 1024.0, 1024.0) for pid in ("pos-1", "neg-1")]
        write_raw(tmp_path / "raw.csv", nothing)
        args = ["tune", "--predictions", tmp_path / "raw.csv", "--labels", tmp_path / "labels.csv"]
        result = run(*args, "--manifest", tmp_path / "manifest.csv", "--split", "val", "--shrink-grid", "1,0.9")
        assert result.exit_code == 0, result.output
        message = " ".join(result.stderr.split())
        assert "warning: the best score is 0.0000: no configuration finds an opacity" in message
        configurations = int(result.stdout.split()[1])
        assert f"{configurations} of the {configurations} configurations tie for the best score 0.0000" in message

    def test_tune_writes_a_config_that_predict_can_read(self, tmp_path: Path) -> None:
        truth, images = generated(120, seed=2)
        rows = ["patientId,x,y,width,height,Target"]
        for pid, boxes in truth.items():
            rows += [f"{pid},{x},{y},{w},{h},1" for x, y, w, h in boxes.tolist()] or [f"{pid},,,,,0"]
        rows.append("other-split,,,,,0")
        (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
        write_raw(tmp_path / "raw.parquet", images)
        PostprocessConfig(max_boxes=2).to_yaml(tmp_path / "base.yaml")

        result = run(
            "tune",
            "--predictions",
            tmp_path / "raw.parquet",
            "--labels",
            tmp_path / "labels.csv",
            "--postprocess",
            tmp_path / "base.yaml",
            "--conf-grid",
            "0.1,0.5,0.7",
            "--merge-grid",
            "none,wbf:0.5",
            "--shrink-grid",
            "1,0.875",
            "--top",
            "4",
        )
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("scored 12 configurations on 120 image(s)")
        assert lines[1].startswith("(the best score is optimistic")
        assert lines[2].startswith("default  ") and lines[3].startswith("best     ")
        assert lines[-1] == f"wrote the best configuration to {tmp_path / 'postprocess.yaml'}"
        best = PostprocessConfig.from_yaml(tmp_path / "postprocess.yaml")
        assert best.max_boxes == 2
        assert best.conf in (0.1, 0.5, 0.7) and best.merge in ("none", "wbf") and best.shrink in (1.0, 0.875)
        assert "1 scored patient(s) have no raw rows" in result.stderr

    def test_bad_grid_is_an_error(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        write_raw(tmp_path / "raw.csv", [])
        result = run(
            "tune", "--predictions", tmp_path / "raw.csv", "--labels", tmp_path / "labels.csv", "--merge-grid", "nms"
        )
        assert result.exit_code == 2
        assert "'nms' is not a merge" in result.stderr

    def test_raw_patient_outside_the_labels_is_an_error(self, tmp_path: Path) -> None:
        write_small_set(tmp_path)
        _, images = generated(2)
        write_raw(tmp_path / "raw.csv", images)
        result = run("tune", "--predictions", tmp_path / "raw.csv", "--labels", tmp_path / "labels.csv")
        assert result.exit_code == 1
        assert "2 patient(s) of the raw detections are not in the labels, e.g. case-0000" in result.stderr
