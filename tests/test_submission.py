"""Submission CSVs: write → read → validate, one message per kind of bad submission, scoring inputs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pneumo_yolo.data.dataset import read_manifest
from pneumo_yolo.data.labels import LabelFileError
from pneumo_yolo.eval.scoring import ScoringSet, evaluate_submission, load_scoring_set
from pneumo_yolo.eval.submission import (
    SubmissionError,
    errors_only,
    parse_prediction_string,
    prediction_string,
    read_patient_ids,
    read_submission,
    validate_submission,
    write_submission,
)

from .conftest import RSNA_DIR, RSNA_ENV

SAMPLE = RSNA_DIR / "stage_2_sample_submission.csv"
IDS = ["c-3", "a-1", "b-2"]


def test_write_read_validate_round_trip(tmp_path: Path) -> None:
    boxes = np.array([[10, 20, 110, 220], [500, 500, 600, 700.5]])
    strings = {"a-1": prediction_string(boxes, np.array([0.25, 0.75]))}
    write_submission(tmp_path / "sub.csv", strings, IDS)

    assert (tmp_path / "sub.csv").read_text().splitlines() == [
        "patientId,PredictionString",
        "c-3,",
        "a-1,0.7500 500.0 500.0 100.0 200.5 0.2500 10.0 20.0 100.0 200.0",
        "b-2,",
    ]
    parsed = read_submission(tmp_path / "sub.csv")
    assert list(parsed) == IDS
    np.testing.assert_array_equal(parsed["a-1"], [[0.75, 500, 500, 100, 200.5], [0.25, 10, 20, 100, 200]])
    assert parsed["b-2"].shape == (0, 5)
    assert validate_submission(tmp_path / "sub.csv", IDS) == []


def test_write_refuses_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not asked for"):
        write_submission(tmp_path / "sub.csv", {"z-9": ""}, IDS)
    with pytest.raises(ValueError, match="more than once"):
        write_submission(tmp_path / "sub.csv", {}, ["a-1", "a-1"])
    with pytest.raises(ValueError, match="a-1: PredictionString has 3 numbers"):
        write_submission(tmp_path / "sub.csv", {"a-1": "1 2 3"}, IDS)
    assert not (tmp_path / "sub.csv").exists()


GOOD = ["c-3,0.5 0 0 100 100", "a-1,", "b-2,0.9 10 10 20 20 0.1 1000 1000 24 24"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (GOOD[:2], "b-2: missing patientId: no row for this expected patient"),
        (GOOD + ["a-1,"], "line 5: a-1: duplicate patientId (lines 3, 5)"),
        (GOOD + ["z-9,"], "line 5: z-9: extra patientId: not in the expected ids"),
        (GOOD + ["../etc,"], "line 5: ../etc: patientId '../etc' is not a safe file name"),
        (GOOD + [","], "line 5: patientId is empty"),
        (["c-3,0.5 0 0 100", *GOOD[1:]], "line 2: c-3: PredictionString has 4 numbers, not a multiple of 5"),
        (["c-3,0.5 0 0 abc 100", *GOOD[1:]], "line 2: c-3: PredictionString value 'abc' is not a number"),
        (
            ["c-3,0.5 0 0 nan 100", *GOOD[1:]],
            "line 2: c-3: PredictionString box 1 (0.5 0 0 nan 100) has a NaN or infinite value",
        ),
        (
            ["c-3,0.5 0 0 100 -1", *GOOD[1:]],
            "line 2: c-3: PredictionString box 1 (0.5 0 0 100 -1) has a negative width or height",
        ),
        (
            ["c-3,0.5 0 0 100 100 1.2 0 0 5 5", *GOOD[1:]],
            "line 2: c-3: PredictionString box 2 (1.2 0 0 5 5) has a confidence outside [0, 1]",
        ),
        (["c-3,0.5 -3 0 100 100", *GOOD[1:]], "line 2: c-3: box 1 reaches outside the 1024×1024 image"),
        (["c-3,0.5 0 0 100 100 0.4 1000 0 25 10", *GOOD[1:]], "line 2: c-3: box 2 reaches outside the 1024×1024 image"),
    ],
    ids=[
        "missing",
        "duplicate",
        "extra",
        "unsafe-id",
        "empty-id",
        "count",
        "not-a-number",
        "nan",
        "negative-size",
        "confidence",
        "outside-left",
        "outside-right",
    ],
)
def test_each_bad_submission_has_its_own_message(tmp_path: Path, rows: list[str], message: str) -> None:
    (tmp_path / "sub.csv").write_text("\n".join(["patientId,PredictionString", *rows]) + "\n")
    problems = [str(p) for p in validate_submission(tmp_path / "sub.csv", IDS)]
    assert len(problems) == 1 and problems[0].startswith(message)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    (tmp_path / "sub.csv").write_text("patientId,PredictionString\na-1,0.5 0 0\na-1,\nz-9,\n")
    problems = [str(p) for p in validate_submission(tmp_path / "sub.csv", IDS)]
    assert len(problems) == 5
    assert problems[0].startswith("line 2: a-1: PredictionString has 3 numbers")


def test_image_sizes_come_from_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "sub.csv").write_text("patientId,PredictionString\na-1,0.5 300 0 100 100\n")
    assert validate_submission(tmp_path / "sub.csv", ["a-1"]) == []
    problems = validate_submission(tmp_path / "sub.csv", ["a-1"], {"a-1": (350.0, 400.0)})
    assert [str(p) for p in problems] == ["line 2: a-1: box 1 reaches outside the 350×400 image"]
    assert [p.warning for p in problems] == [True]
    assert errors_only(problems) == []


def test_bad_header_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sub.csv").write_text("id,boxes\na-1,\n")
    with pytest.raises(SubmissionError, match="sub.csv: missing column"):
        validate_submission(tmp_path / "sub.csv", IDS)


def test_read_submission_lists_the_problems(tmp_path: Path) -> None:
    (tmp_path / "sub.csv").write_text("patientId,PredictionString\na-1,0.5 0 0 1\nb-2,2 0 0 1 1\n")
    with pytest.raises(
        SubmissionError, match=r"sub.csv: 2 problem\(s\):\n  line 2: a-1: .*\n  line 3: b-2: .*confidence"
    ):
        read_submission(tmp_path / "sub.csv")


def test_semicolon_crlf_copy_is_read(tmp_path: Path) -> None:
    (tmp_path / "sub.csv").write_bytes(b"patientId;PredictionString\r\na-1;0.5 1 2 3 4\r\nb-2;\r\n")
    parsed = read_submission(tmp_path / "sub.csv")
    np.testing.assert_array_equal(parsed["a-1"], [[0.5, 1, 2, 3, 4]])


def test_parse_prediction_string_accepts_extra_spaces() -> None:
    np.testing.assert_array_equal(parse_prediction_string("  0.5 1  2 3 4 "), [[0.5, 1, 2, 3, 4]])


def test_read_patient_ids_from_csv_or_list(tmp_path: Path) -> None:
    (tmp_path / "sample.csv").write_text("patientId,PredictionString\nb-2,0.5 0 0 100 100\na-1,\n")
    (tmp_path / "ids.txt").write_text("b-2\n\na-1\nb-2\n")
    assert read_patient_ids(tmp_path / "sample.csv") == (["b-2", "a-1"], [])
    assert read_patient_ids(tmp_path / "ids.txt") == (["b-2", "a-1"], ["b-2"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc,\n", "no patientId column in its header 'abc,'"),
        ("id,foo\nabc,1\n", "no patientId column in its header 'id,foo'"),
        (
            "patientId,PredictionString\nok-1,\n../../etc/passwd,\n",
            "line 3: patientId '../../etc/passwd' is not a safe file name",
        ),
        ("patientId,PredictionString\n", "lists no patientId"),
    ],
    ids=["no-header", "wrong-header", "unsafe-id", "header-only"],
)
def test_read_patient_ids_refuses_what_it_cannot_use(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ids.csv").write_text(text)
    with pytest.raises(SubmissionError, match=re.escape(message)):
        read_patient_ids(tmp_path / "ids.csv")


@pytest.mark.skipif(
    not SAMPLE.exists(),
    reason=f"needs the real sample submission, not found in {RSNA_DIR}: set {RSNA_ENV} to its folder",
)
def test_real_sample_submission_is_valid_against_itself() -> None:
    ids, duplicates = read_patient_ids(SAMPLE)
    assert len(ids) == 3000 and not duplicates
    assert validate_submission(SAMPLE, ids) == []


def write_labels(path: Path) -> None:
    path.write_text(
        "patientId,x,y,width,height,Target\n"
        "pos-1,100,100,200,300,1\npos-1,600,100,200,300,1\npos-2,0,0,50,50,1\nneg-1,,,,,0\nneg-2,,,,,0\n"
    )


def write_manifest(path: Path) -> None:
    path.write_text(
        "patientId,split,width,height,n_boxes,class,view_position,sex,age\n"
        "pos-1,val,1024,1024,2,Lung Opacity,PA,M,40\nneg-1,val,1024,1024,0,Normal,AP,F,30\n"
        "pos-2,train,1024,1024,1,Lung Opacity,PA,F,50\nneg-2,train,1024,1024,0,Normal,PA,M,60\n"
    )


class TestScoring:
    def test_scoring_set_without_manifest_covers_every_labelled_patient(self, tmp_path: Path) -> None:
        write_labels(tmp_path / "labels.csv")
        scoring = load_scoring_set(tmp_path / "labels.csv")
        assert sorted(scoring.boxes) == ["neg-1", "neg-2", "pos-1", "pos-2"]

    def test_manifest_split_restricts_the_scored_patients(self, tmp_path: Path) -> None:
        write_labels(tmp_path / "labels.csv")
        write_manifest(tmp_path / "manifest.csv")
        scoring = load_scoring_set(tmp_path / "labels.csv", tmp_path / "manifest.csv", "val")
        assert sorted(scoring.boxes) == ["neg-1", "pos-1"]
        assert scoring.sizes == {"pos-1": (1024.0, 1024.0), "neg-1": (1024.0, 1024.0)}

    def test_unknown_split_and_split_without_manifest_are_errors(self, tmp_path: Path) -> None:
        write_labels(tmp_path / "labels.csv")
        write_manifest(tmp_path / "manifest.csv")
        with pytest.raises(LabelFileError, match=r"no patient in split 'test' \(splits found: train, val\)"):
            load_scoring_set(tmp_path / "labels.csv", tmp_path / "manifest.csv", "test")
        with pytest.raises(LabelFileError, match="--split needs --manifest"):
            load_scoring_set(tmp_path / "labels.csv", None, "val")

    def test_manifest_patient_missing_from_labels_is_an_error(self, tmp_path: Path) -> None:
        write_labels(tmp_path / "labels.csv")
        (tmp_path / "manifest.csv").write_text("patientId,split,width,height\nzzz,val,1024,1024\n")
        with pytest.raises(LabelFileError, match="1 patient.* not in .*labels.csv, e.g. zzz"):
            load_scoring_set(tmp_path / "labels.csv", tmp_path / "manifest.csv", "val")

    def test_manifest_with_bad_size_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / "manifest.csv").write_text("patientId,split,width,height\na-1,val,1024,0\n")
        with pytest.raises(LabelFileError, match="line 2: width and height must be positive"):
            read_manifest(tmp_path / "manifest.csv")

    def test_evaluate_submission_scores_the_split_and_ignores_other_labelled_patients(self, tmp_path: Path) -> None:
        write_labels(tmp_path / "labels.csv")
        write_manifest(tmp_path / "manifest.csv")
        # pos-1 found exactly; pos-2 (train) is ignored; neg-1 has no row: no prediction.
        (tmp_path / "sub.csv").write_text(
            "patientId,PredictionString\npos-1,0.9 100 100 200 300 0.8 600 100 200 300\npos-2,\n"
        )
        scoring = load_scoring_set(tmp_path / "labels.csv", tmp_path / "manifest.csv", "val")
        result = evaluate_submission(tmp_path / "sub.csv", scoring)
        assert result.score == 1.0 and result.n_images == 1

    def test_patient_outside_the_labels_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / "sub.csv").write_text("patientId,PredictionString\nzzz,\n")
        scoring = ScoringSet({"a-1": np.zeros((0, 4))}, frozenset({"a-1"}))
        with pytest.raises(SubmissionError, match="1 patient.* not in the labels, e.g. zzz"):
            evaluate_submission(tmp_path / "sub.csv", scoring)
