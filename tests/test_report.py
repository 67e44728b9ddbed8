"""pneumo-yolo report: the pictures (boxes drawn where they belong), the page (only existing files), the inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pneumo_yolo.dicom.write import write_dicom
from pneumo_yolo.eval.detections import RawImage, read_raw, write_raw
from pneumo_yolo.eval.metric import evaluate
from pneumo_yolo.eval.postprocess import PostprocessConfig
from pneumo_yolo.report import ReportError, write_report
from pneumo_yolo.report.analysis import Predictions, analyse, labelled_galleries, match_image
from pneumo_yolo.report.overlay import to_picture

from .conftest import assert_self_contained

GREEN = (0, 255, 0)
RED = (0, 0, 255)


def overlay(index: Path, patient_id: str) -> np.ndarray:
    return cv2.imread(str(index.parent / "overlays" / f"{patient_id}.png"), cv2.IMREAD_COLOR)


def edge_colours(picture: np.ndarray, corners: np.ndarray) -> set[tuple[int, ...]]:
    """Colours along the four edges of an inclusive ``x1 y1 x2 y2`` rectangle, corners left out."""
    x1, y1, x2, y2 = (int(v) for v in corners)
    edges = [
        picture[y1, x1 + 2 : x2 - 1],
        picture[y2, x1 + 2 : x2 - 1],
        picture[y1 + 2 : y2 - 1, x1],
        picture[y1 + 2 : y2 - 1, x2],
    ]
    return {tuple(int(c) for c in pixel) for edge in edges for pixel in edge}


def png_case(root: Path, original: int = 256, stored: int = 128) -> tuple[dict, dict, dict, dict]:
    """One converted PNG (``stored`` px of an ``original`` px radiograph) with a truth box and a distant prediction."""
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "case.png"), np.full((stored, stored), 100, np.uint8))
    images = {"case": root / "images" / "case.png"}
    truth = {"case": np.array([[40.0, 60.0, 100.0, 80.0]])}
    predictions = {"case": np.array([[0.87, 160.0, 20.0, 60.0, 40.0]])}
    return images, truth, predictions, {"case": (float(original), float(original))}


def test_a_truth_box_is_drawn_where_it_belongs(tmp_path):
    images, truth, predictions, sizes = png_case(tmp_path)
    summary = write_report(tmp_path / "report", images, Predictions(predictions), truth, sizes=sizes)
    picture = overlay(summary.index, "case")
    assert picture.shape[:2] == (128, 128)
    # 40,60 + 100×80 in the 256 px grid is x 20..69, y 30..69 in the 128 px picture
    assert edge_colours(picture, np.array([20, 30, 69, 69])) == {GREEN}
    assert edge_colours(picture, np.array([80, 10, 109, 29])) == {RED}
    assert tuple(picture[50, 45]) == (100, 100, 100)
    assert_self_contained(summary.index)


def test_a_large_dicom_is_drawn_at_half_size(tmp_path):
    write_dicom(tmp_path / "images" / "big.dcm", np.full((1024, 1024), 90, np.uint8))
    truth = {"big": np.array([[264.0, 152.0, 213.0, 379.0]])}
    summary = write_report(
        tmp_path / "report", {"big": tmp_path / "images" / "big.dcm"}, Predictions({"big": np.zeros((0, 5))}), truth
    )
    picture = overlay(summary.index, "big")
    assert picture.shape[:2] == (512, 512)
    assert to_picture(truth["big"], (1024, 1024), (512, 512)).tolist() == [[132, 76, 237, 265]]
    assert edge_colours(picture, np.array([132, 76, 237, 265])) == {GREEN}


def test_the_page_holds_every_section_and_only_existing_files(tmp_path):
    images, truth, predictions, sizes = png_case(tmp_path)
    cv2.imwrite(str(tmp_path / "images" / "hit.png"), np.full((64, 64), 50, np.uint8))
    images["hit"] = tmp_path / "images" / "hit.png"
    truth["hit"], predictions["hit"] = np.array([[10.0, 10.0, 30.0, 30.0]]), np.array([[0.9, 11.0, 10.0, 30.0, 30.0]])
    (tmp_path / "report" / "overlays").mkdir(parents=True)
    (tmp_path / "report" / "overlays" / "stale.png").write_bytes(b"left by an earlier report")
    summary = write_report(tmp_path / "report", images, Predictions(predictions), truth, sizes=sizes)
    html = summary.index.read_text(encoding="utf-8")
    for heading in (
        "Per IoU threshold",
        "Score against the confidence threshold",
        "Boxes per image",
        "Worst false positives",
        "Worst missed opacities",
        "Best hits",
    ):
        assert heading in html
    assert summary.score == pytest.approx(evaluate(truth, predictions).score)
    assert not (tmp_path / "report" / "overlays" / "stale.png").exists()
    assert_self_contained(summary.index)


def test_without_labels_only_predictions_are_drawn(tmp_path):
    images, _, predictions, sizes = png_case(tmp_path)
    summary = write_report(tmp_path / "report", images, Predictions(predictions), None, sizes=sizes)
    html = summary.index.read_text(encoding="utf-8")
    assert "Most confident predictions" in html and "RSNA metric" not in html and "Worst missed" not in html
    picture = overlay(summary.index, "case")
    assert GREEN not in {tuple(int(c) for c in p) for p in picture.reshape(-1, 3)}
    assert edge_colours(picture, np.array([80, 10, 109, 29])) == {RED}
    assert summary.score is None
    assert_self_contained(summary.index)


def test_no_common_patient_is_an_error(tmp_path):
    images, _, _, _ = png_case(tmp_path)
    with pytest.raises(ReportError, match="no image has a prediction"):
        write_report(tmp_path / "report", images, Predictions({"other": np.zeros((0, 5))}))


def test_matching_follows_the_metric():
    truth = np.array([[0, 0, 10, 10.0], [50, 50, 10, 10.0]])
    rows = np.array([[0.3, 0, 0, 10, 10.0], [0.9, 1, 0, 10, 10.0], [0.5, 200, 200, 5, 5.0]])
    match = match_image(truth, rows)
    assert match.predicted.tolist() == [False, True, False] and match.truth.tolist() == [True, False]
    galleries = labelled_galleries(
        {"a": truth, "b": np.zeros((0, 4))}, {"a": rows, "b": np.array([[0.95, 0, 0, 5, 5.0]])}, size=5
    )
    assert [t.patient_id for t in galleries.false_positives] == ["b", "a"]
    assert [t.patient_id for t in galleries.missed] == ["a"] and [t.patient_id for t in galleries.best] == ["a"]


def test_raw_detections_are_post_processed_and_scored_along_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    images, truth = [], {}
    for i in range(12):
        boxes = np.array([[20.0, 30.0, 120.0, 150.0]]) if i % 2 else np.zeros((0, 4))
        truth[f"p{i}"] = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        found = np.array([[22.0, 28.0, 118.0, 149.0], [150.0, 150.0, 200.0, 220.0]]) + rng.normal(0, 2, (2, 4))
        images.append(RawImage(f"p{i}", found, rng.uniform(0.05, 0.95, 2), 256.0, 256.0))
    write_raw(tmp_path / "raw.csv", images)
    config = PostprocessConfig(conf=0.3)
    predictions = Predictions.from_raw(read_raw(tmp_path / "raw.csv"), config)
    analysis = analyse(predictions, truth, gallery_size=4)
    scored = analysis.scored
    at_conf = scored.conf_scores[np.flatnonzero(np.isclose(scored.conf_thresholds, 0.3))[0]]
    assert at_conf == pytest.approx(scored.result.score)
    assert len(analysis.galleries.false_positives) <= 4


def console_script() -> str:
    return str(Path(sys.executable).with_name("pneumo-yolo"))


def test_report_from_the_console_script(tmp_path):
    """The first report runs through the console script; the refused and replacing reruns in this process (the report
    code is loaded here already), as Typer's ``CliRunner`` runs them."""
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    folder = tmp_path / "dicoms"
    for i in range(4):
        write_dicom(folder / f"case{i}.dcm", np.full((256, 256), 120, np.uint8), patient_id="Doe^Secret")
    (tmp_path / "labels.csv").write_text(
        "patientId,x,y,width,height,Target\ncase0,10,10,50,50,1\ncase1,,,,,0\ncase2,100,100,60,80,1\ncase3,,,,,0\n"
    )
    (tmp_path / "sub.csv").write_text(
        "patientId,PredictionString\ncase0,0.9 12 10 50 50\ncase1,0.7 30 30 40 40\ncase2,\ncase3,\n"
    )
    args = [
        console_script(),
        "report",
        "--predictions",
        str(tmp_path / "sub.csv"),
        "--images",
        str(folder),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(tmp_path / "report"),
    ]
    run = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "report of 4 images, score 0.3333" in run.stdout
    index = tmp_path / "report" / "index.html"
    assert_self_contained(index)
    assert "Secret" not in index.read_text(encoding="utf-8")

    page = index.read_bytes()
    again = CliRunner().invoke(app, args[1:])
    assert again.exit_code == 2 and "add --overwrite" in again.stderr and index.read_bytes() == page
    replaced = CliRunner().invoke(app, [*args[1:], "--overwrite"])
    assert replaced.exit_code == 0, replaced.stderr
    assert_self_contained(index)
    own = tmp_path / "report" / "plots" / "my_own.png"
    own.write_bytes(b"a user's own picture")
    refused = CliRunner().invoke(app, [*args[1:], "--overwrite"])
    assert refused.exit_code == 2 and "report did not write" in refused.stderr
    assert own.read_bytes() == b"a user's own picture" and index.is_file()


def test_report_names_a_file_that_is_neither_kind(tmp_path):
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    (tmp_path / "images").mkdir()
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    result = CliRunner().invoke(
        app, ["report", "--predictions", str(tmp_path / "odd.csv"), "--images", str(tmp_path / "images")]
    )
    assert result.exit_code == 1
    assert "odd.csv: neither a submission" in result.output


def test_report_warns_when_boxes_on_converted_pngs_cannot_be_placed(tmp_path):
    """A submission's boxes are in the original pixels: on a resized PNG they need the manifest's sizes, as in predict."""
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    (tmp_path / "images").mkdir()
    for pid in ("a", "b"):
        cv2.imwrite(str(tmp_path / "images" / f"{pid}.png"), np.full((64, 64), 100, np.uint8))
    (tmp_path / "sub.csv").write_text("patientId,PredictionString\na,0.9 100 100 300 300\nb,\n")
    (tmp_path / "manifest.csv").write_text(
        "patientId,split,width,height,n_boxes,class,view_position,sex,age\n"
        "a,val,1024,1024,1,Lung Opacity,PA,M,40\nb,val,1024,1024,0,Normal,AP,F,30\n"
    )
    args = ["report", "--predictions", str(tmp_path / "sub.csv"), "--images", str(tmp_path / "images")]
    unplaced = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r1")])
    assert unplaced.exit_code == 0, unplaced.output
    assert "warning: 2 picture(s) in" in unplaced.stderr and "give --manifest" in unplaced.stderr
    placed = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "r2"), "--manifest", str(tmp_path / "manifest.csv")]
    )
    assert placed.exit_code == 0, placed.output
    assert "warning" not in placed.stderr
