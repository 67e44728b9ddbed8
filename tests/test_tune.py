"""The raw detections table and the post-processing search, on generated detections."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer

from pneumo_yolo.cli import options
from pneumo_yolo.eval.detections import (
    RAW_COLUMNS,
    RawDetections,
    RawFileError,
    RawImage,
    RawWriter,
    read_raw,
    write_raw,
)
from pneumo_yolo.eval.postprocess import PostprocessConfig, postprocess_image
from pneumo_yolo.eval.scoring import ScoringSet
from pneumo_yolo.eval.tune import TuneGrid, images_to_score, score_config, tune

LEGACY_HEADER = "patientId,conf,x1,y1,x2,y2,width,height"
"""The raw table's first format."""


def generated(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], list[RawImage]]:
    """Ground truth (about 25 % positive) and detector-like output: jittered copies of each
    true box with high scores plus random low-scoring false positives."""
    rng = np.random.default_rng(seed)
    truth, images = {}, []
    for i in range(n):
        pid = f"case-{i:04d}"
        n_true = int(rng.choice([1, 2])) if rng.random() < 0.25 else 0
        wh = rng.uniform(60, 400, (n_true, 2))
        truth[pid] = np.c_[rng.uniform(0, 1024 - wh), wh]
        boxes, scores = [], []
        for x, y, w, h in truth[pid]:
            for _ in range(rng.integers(1, 4)):
                x1, y1, x2, y2 = np.array([x, y, x + w, y + h]) + rng.normal(0, 15, 4)
                boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
                scores.append(rng.uniform(0.3, 0.95))
        for _ in range(rng.integers(0, 4)):
            w, h = rng.uniform(60, 300, 2)
            x, y = rng.uniform(-20, 1024 - w), rng.uniform(0, 1024 - h)
            boxes.append([x, y, x + w, y + h])
            scores.append(rng.uniform(0.01, 0.6))
        images.append(RawImage(pid, np.array(boxes).reshape(-1, 4), np.array(scores), 1024.0, 1024.0))
    return truth, images


class TestRawTable:
    @pytest.mark.parametrize("suffix", [".csv", ".parquet"])
    def test_round_trip_is_exact_and_keeps_patients_without_detections(self, tmp_path: Path, suffix: str) -> None:
        _, images = generated(30)
        images.append(RawImage("no-box", np.zeros((0, 4)), np.zeros(0), 800.0, 600.0))
        write_raw(tmp_path / f"raw{suffix}", images)
        raw = read_raw(tmp_path / f"raw{suffix}")
        assert raw.patient_ids == tuple(image.patient_id for image in images)
        for original, back in zip(images, raw.images()):
            np.testing.assert_array_equal(back.boxes, original.boxes)
            np.testing.assert_array_equal(back.scores, original.scores)
            assert (back.width, back.height) == (original.width, original.height)
        assert [f for f in tmp_path.iterdir()] == [tmp_path / f"raw{suffix}"]

    def test_csv_layout(self, tmp_path: Path) -> None:
        write_raw(
            tmp_path / "raw.csv",
            [
                RawImage("a-1", np.array([[1, 2, 3, 4.5]]), np.array([0.5]), 1024, 1024),
                RawImage("b-2", np.zeros((0, 4)), np.zeros(0), 1024, 1024),
            ],
        )
        assert (tmp_path / "raw.csv").read_text().splitlines() == [
            ",".join(RAW_COLUMNS),
            "a-1,0.5,1.0,2.0,3.0,4.5,1024.0,1024.0,0.0,0.0,1.0,1.0,",
            "b-2,,,,,,1024.0,1024.0,,,1.0,1.0,",
        ]

    def test_models_passes_and_the_classifier_probability_round_trip(self, tmp_path: Path) -> None:
        image = RawImage(
            "a-1",
            np.array([[1, 2, 3, 4.5], [1, 2, 3, 5], [2, 2, 3, 5]]),
            np.array([0.5, 0.4, 0.3]),
            64,
            32,
            np.array([2, 0, 1]),
            np.array([1, 0, 1]),
            3,
            2,
            0.25,
        )
        write_raw(
            tmp_path / "raw.parquet",
            [image, RawImage("b-2", np.zeros((0, 4)), np.zeros(0), 64, 32, models=3, passes=2, p_opacity=0.75)],
        )
        raw = read_raw(tmp_path / "raw.parquet")
        assert raw.model.tolist() == [2, 0, 1] and raw.pass_index.tolist() == [1, 0, 1]
        assert raw.models.tolist() == [3, 3] and raw.passes.tolist() == [2, 2]
        np.testing.assert_array_equal(raw.p_opacity, [0.25, 0.75])
        back = list(raw.images())
        assert back[0].flat_pass.tolist() == [5, 0, 3]  # model × passes + pass: what fusing every pass at once fuses
        assert (back[1].models, back[1].passes, back[1].p_opacity) == (3, 2, 0.75)

    def test_first_format_tables_read_as_one_model_and_pass_without_classifier(self, tmp_path: Path) -> None:
        (tmp_path / "raw.csv").write_text(f"{LEGACY_HEADER}\na-1,0.5,1,2,3,4,10,10\nb-2,,,,,,10,10\n")
        raw = read_raw(tmp_path / "raw.csv")
        assert (
            raw.model.tolist() == [0]
            and raw.pass_index.tolist() == [0]
            and raw.models.tolist() == [1, 1]
            and raw.passes.tolist() == [1, 1]
        )
        assert np.isnan(raw.p_opacity).all()

    def test_second_format_members_read_as_the_passes_of_one_model(self, tmp_path: Path) -> None:
        header = f"{LEGACY_HEADER},member,members,p_opacity"
        (tmp_path / "raw.csv").write_text(f"{header}\na-1,0.5,1,2,3,4,10,10,5,6,0.5\nb-2,,,,,,10,10,,6,0.1\n")
        raw = read_raw(tmp_path / "raw.csv")
        assert (
            raw.models.tolist() == [1, 1]
            and raw.passes.tolist() == [6, 6]
            and raw.pass_index.tolist() == [5]
            and raw.model.tolist() == [0]
        )
        image = next(raw.images())
        config = PostprocessConfig(conf=0.0, shrink=1.0, gate_alpha=0.0)
        assert postprocess_image(image, config)[1].tolist() == pytest.approx(
            [0.5 / 6]
        )  # one of six passes found it, as before

    def test_writer_appends_in_groups_and_from_a_dataframe(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("pneumo_yolo.eval.detections._ROWS_PER_FLUSH", 5)
        _, images = generated(40)
        with RawWriter(tmp_path / "raw.parquet") as writer:
            for image in images:
                writer.add(image)
        assert pq.ParquetFile(tmp_path / "raw.parquet").num_row_groups > 1
        frame = pd.read_parquet(tmp_path / "raw.parquet")
        write_raw(tmp_path / "copy.csv", frame)
        assert read_raw(tmp_path / "copy.csv").patient_ids == read_raw(tmp_path / "raw.parquet").patient_ids

    def test_empty_table(self, tmp_path: Path) -> None:
        for suffix in (".csv", ".parquet"):
            write_raw(tmp_path / f"raw{suffix}", [])
            assert len(read_raw(tmp_path / f"raw{suffix}")) == 0

    def test_failed_write_leaves_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="already written"):
            with RawWriter(tmp_path / "raw.csv") as writer:
                writer.add(RawImage("a-1", np.zeros((0, 4)), np.zeros(0), 10, 10))
                writer.add(RawImage("a-1", np.zeros((0, 4)), np.zeros(0), 10, 10))
        assert list(tmp_path.iterdir()) == []

    def test_a_table_that_cannot_be_opened_leaves_no_temporary_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def too_many_open_files(*args: object, **kwargs: object) -> None:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr("pneumo_yolo.eval.detections.open", too_many_open_files, raising=False)
        with pytest.raises(OSError, match="Too many open files"):
            RawWriter(tmp_path / "raw.csv")
        assert list(tmp_path.iterdir()) == []

    def test_unknown_suffix(self, tmp_path: Path) -> None:
        with pytest.raises(RawFileError, match="unknown raw detections format '.txt'"):
            read_raw(tmp_path / "raw.txt")

    @pytest.mark.parametrize(
        ("row", "message"),
        [
            ("b-2,0.5,1,2,3,,10,10", "row 2 (patient b-2): conf and box fields must all be given, or all be empty"),
            ("b-2,1.5,1,2,3,4,10,10", "row 2 (patient b-2): conf outside"),
            ("b-2,0.5,3,2,1,4,10,10", "row 2 (patient b-2): x2 < x1 or y2 < y1"),
            ("b-2,0.5,1,2,3,inf,10,10", "row 2 (patient b-2): conf or box value is infinite"),
            ("b-2,0.5,1,2,3,4,0,10", "row 2 (patient b-2): width and height must be positive"),
            (
                "a-1,0.5,1,2,3,4,20,10",
                "row 2 (patient a-1): width, height, models, passes or p_opacity differ between rows of one patient",
            ),
            ("b-2,0.5,1,2,3,4,10,10,2,0,2,1,", "row 2 (patient b-2): model must be a whole number in [0, models)"),
            ("b-2,0.5,1,2,3,4,10,10,0,1,1,1,", "row 2 (patient b-2): pass must be a whole number in [0, passes)"),
            ("b-2,0.5,1,2,3,4,10,10,0,0,0.5,1,", "row 2 (patient b-2): models must be a whole number ≥ 1"),
            ("b-2,0.5,1,2,3,4,10,10,0,0,1,0,", "row 2 (patient b-2): passes must be a whole number ≥ 1"),
            ("b-2,0.5,1,2,3,4,10,10,0,0,1,1,1.5", "row 2 (patient b-2): p_opacity outside [0, 1]"),
            (
                "a-1,0.5,1,2,3,4,10,10,0,0,2,1,",
                "row 2 (patient a-1): width, height, models, passes or p_opacity differ between rows of one patient",
            ),
            ("../x,0.5,1,2,3,4,10,10", "row 2 (patient ../x): patientId '../x' is not a safe file name"),
            ("b-2,high,1,2,3,4,10,10", "a value column holds something that is not a number"),
        ],
    )
    def test_bad_rows_are_named(self, tmp_path: Path, row: str, message: str) -> None:
        header = ",".join(RAW_COLUMNS) if row.count(",") == len(RAW_COLUMNS) - 1 else LEGACY_HEADER
        first = "a-1,0.5,1,2,3,4,10,10" + (",0,0,1,1," if header != LEGACY_HEADER else "")
        (tmp_path / "raw.csv").write_text(f"{header}\n{first}\n{row}\n")
        with pytest.raises(RawFileError, match=re.escape("raw.csv: " + message)):
            read_raw(tmp_path / "raw.csv")

    def test_missing_column(self, tmp_path: Path) -> None:
        (tmp_path / "raw.csv").write_text("patientId,conf,x1,y1,x2,y2\na-1,0.5,1,2,3,4\n")
        with pytest.raises(RawFileError, match="missing column\\(s\\) width, height"):
            read_raw(tmp_path / "raw.csv")

    def test_select_keeps_detections_with_their_images(self) -> None:
        _, images = generated(10)
        raw = RawDetections.from_images(images)
        keep = np.arange(10) % 3 == 0
        chosen = list(raw.select(keep).images())
        assert [c.patient_id for c in chosen] == [images[i].patient_id for i in (0, 3, 6, 9)]
        for c, i in zip(chosen, (0, 3, 6, 9)):
            np.testing.assert_array_equal(c.boxes, images[i].boxes)


SMALL_GRID = TuneGrid(
    conf=(0.05, 0.3, 0.5, 0.7), merges=(("none", 0.0), ("nms", 0.4), ("wbf", 0.5)), shrink=(1.0, 0.875)
)


class TestTune:
    def test_every_grid_point_scores_what_postprocess_then_evaluate_gives(self) -> None:
        truth, images = generated(150)
        raw = RawDetections.from_images(images)
        base = PostprocessConfig(max_boxes=2, min_relative_score=0.3)
        report = tune(raw, truth, base, SMALL_GRID)
        assert len(report.table) == len(SMALL_GRID) == 24
        for row in report.table.itertuples():
            config = PostprocessConfig(
                conf=row.conf,
                merge=row.merge,
                merge_iou=base.merge_iou if row.merge == "none" else row.merge_iou,
                max_boxes=2,
                min_relative_score=0.3,
                shrink=row.shrink,
            )
            assert score_config(raw, truth, config).score == row.score, config

    def test_best_is_the_top_row_and_base_is_scored_directly(self) -> None:
        truth, images = generated(120, seed=1)
        raw = RawDetections.from_images(images)
        report = tune(raw, truth, grid=SMALL_GRID)
        assert report.best_result.score == report.table["score"].max()
        assert report.best.conf == report.table.iloc[0]["conf"]
        assert report.base == PostprocessConfig()
        assert report.base_result.score == score_config(raw, truth, PostprocessConfig()).score
        # Random low-scoring false positives: a high threshold must beat keeping everything.
        assert report.best.conf >= 0.3
        text = report.summary(top=3)
        assert "default" in text and "best" in text
        assert len(text.splitlines()) == 6 + 3

    def test_raw_patient_without_ground_truth_is_an_error(self) -> None:
        truth, images = generated(5)
        with pytest.raises(ValueError, match="no ground truth"):
            tune(RawDetections.from_images(images), {pid: truth[pid] for pid in list(truth)[:4]}, grid=SMALL_GRID)

    def test_images_to_score_follows_the_scoring_set(self) -> None:
        truth, images = generated(6)
        raw = RawDetections.from_images(images)
        ids = list(truth)
        boxes = {pid: truth[pid] for pid in ids[:3]} | {"extra-1": np.zeros((0, 4))}
        scoring = ScoringSet(boxes, frozenset(ids + ["extra-1"]))
        chosen, notes = images_to_score(raw, scoring)
        assert chosen.patient_ids == tuple(ids[:3])
        assert notes == [
            "3 raw patient(s) outside the scored set left out",
            "1 scored patient(s) have no raw rows and are left out",
        ]
        with pytest.raises(ValueError, match="not in the labels"):
            images_to_score(raw, ScoringSet({}, frozenset(ids[:5])))

    def test_grid_parsing(self) -> None:
        assert options.numbers("0.1, 0.2,0.3") == (0.1, 0.2, 0.3)
        assert options.merges("none, nms:0.4,wbf:0.55") == (("none", 0.0), ("nms", 0.4), ("wbf", 0.55))
        with pytest.raises(typer.BadParameter, match="'x' is not a number"):
            options.numbers("0.1,x")
        with pytest.raises(typer.BadParameter, match="'nms' is not a merge"):
            options.merges("nms")
        with pytest.raises(typer.BadParameter, match="conf: 2.0 is invalid"):
            options.postprocess_values("conf")("0.5,2")
        with pytest.raises(ValueError, match="conf: 2.0 is invalid"):
            TuneGrid(conf=(2.0,))
