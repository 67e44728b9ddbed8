"""predict --dicom-out: SR and GSPS objects, checked by dciodvfy (dicom3tools) and read back with highdicom/pydicom."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

from pneumo_yolo.dicom.reference import repair_numbers, repair_text
from pneumo_yolo.dicom.results import DicomResultsError, ResultsWriter, SeriesPlan
from pneumo_yolo.dicom.write import DicomFormat, build_dataset, write_dicom
from pneumo_yolo.eval.submission import parse_prediction_string

from .conftest import make_rsna_folder

ROWS = np.array([[0.8765, 10.5, 20.0, 100.2, 120.0], [0.4, 200.0, 0.0, 100.0, 256.0]])
BOX_TOLERANCE = 1e-3
"""SCOORD and GSPS coordinates are 32-bit floats."""
CSV_TOLERANCE = 0.05 + BOX_TOLERANCE
"""The results hold predict's boxes unrounded; its CSV rounds the corners to 0.1 pixel."""


@pytest.fixture(scope="module")
def dciodvfy() -> str:
    """The checker from Debian's dicom3tools: skipped where absent, but required under CI (CI=true)."""
    found = shutil.which("dciodvfy")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("dciodvfy is not installed but CI=true: .ci/run must `apt-get install -y dicom3tools`")
    pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")


def checker_errors(dciodvfy: str, path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for one file."""
    run = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def corners(rows: np.ndarray) -> np.ndarray:
    """Closed polylines ``(M, 5, 2)`` of submission rows ``conf x y w h``."""
    x, y, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    return np.stack([np.c_[x, y], np.c_[x + w, y], np.c_[x + w, y + h], np.c_[x, y + h], np.c_[x, y]], axis=1)


def sr_boxes(path: Path) -> tuple[np.ndarray, list[float], list[str]]:
    """Polylines, certainties (%) and referenced SOP Instance UIDs of an SR's planar ROIs, read with highdicom."""
    import highdicom as hd

    groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
    lines = np.array([group.roi.value for group in groups]).reshape(-1, 5, 2)
    certainty = [group.get_measurements()[0].value for group in groups]
    references = [group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for group in groups]
    return lines, certainty, references


def sr_verdict(path: Path) -> str:
    """The image-level finding: 'Present' or 'Absent'."""
    import highdicom as hd

    (group,) = hd.sr.srread(path).content.get_image_measurement_groups()
    return group.get_qualitative_evaluations()[0].value.meaning


def gsps_boxes(path: Path) -> tuple[np.ndarray, list[str], str]:
    """Polylines, texts and the referenced SOP Instance UID of a GSPS."""
    ds = pydicom.dcmread(path)
    (annotation,) = ds.GraphicAnnotationSequence
    lines = np.array(
        [np.asarray(item.GraphicData, dtype=float).reshape(-1, 2) for item in annotation.GraphicObjectSequence]
    )
    texts = [item.UnformattedTextValue for item in annotation.TextObjectSequence]
    return lines, texts, annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID


@pytest.fixture(scope="module")
def rsna(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    """Two sources in the exact RSNA format (bare PatientAge "51" included) and their results: boxes on one, none on the other."""
    root = tmp_path_factory.mktemp("rsna")
    pixels = np.random.default_rng(0).integers(0, 255, (256, 300), dtype=np.uint8)
    sources = {name: root / "src" / f"{name}.dcm" for name in ("positive", "negative")}
    for path in sources.values():
        write_dicom(path, pixels)
    writer = ResultsWriter(root / "out")
    written = writer.write(sources["positive"], ROWS) + writer.write(sources["negative"], np.zeros((0, 5)))
    assert [p.relative_to(root / "out").as_posix() for p in written] == [
        "sr/positive.dcm",
        "gsps/positive.dcm",
        "sr/negative.dcm",
    ]
    return sources, root / "out"


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 12-bit source with invalid values (bare age, long DS, sex written out, ISO date, too long accession) and its results."""
    from pydicom import config
    from pydicom.dataelem import DataElement

    root = tmp_path_factory.mktemp("odd")
    ds = build_dataset(
        np.full((128, 128), 1000, np.uint16), "odd", DicomFormat(transfer_syntax="explicit", bits_stored=12, age="51")
    )
    for keyword, vr, value in (
        ("PixelSpacing", "DS", ["0.14300000000000002", "0.14300000000000002"]),
        ("WindowCenter", "DS", "2048.00000000000001"),
        ("WindowWidth", "DS", "4096"),
        ("PatientSex", "CS", "female"),
        ("StudyDate", "DA", "2019-03-01"),
        ("AccessionNumber", "SH", "A" * 17),
    ):
        ds.add(DataElement(pydicom.datadict.tag_for_keyword(keyword), vr, value, validation_mode=config.IGNORE))
    source = root / "odd.dcm"
    ds.save_as(source, enforce_file_format=True)
    ResultsWriter(root / "out").write(source, np.array([[0.5, 10, 10, 50, 50]]))
    return source, root / "out"


@pytest.fixture(scope="module")
def monochrome1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of a 12-bit MONOCHROME1 source with rescale and window."""
    root = tmp_path_factory.mktemp("m1")
    source = root / "m1.dcm"
    write_dicom(
        source,
        np.full((64, 80), 300, np.uint16),
        stored=DicomFormat(
            transfer_syntax="explicit",
            bits_stored=12,
            photometric="MONOCHROME1",
            window=(2048, 4096),
            rescale=(1.0, -1024.0),
        ),
    )
    ResultsWriter(root / "out").write(source, np.array([[0.9, 0, 0, 80, 64]]))
    return root / "out"


def test_objects_carry_the_boxes_and_references(rsna):
    sources, out = rsna
    source = pydicom.dcmread(sources["positive"])
    lines, certainty, references = sr_boxes(out / "sr/positive.dcm")
    np.testing.assert_allclose(lines, corners(ROWS), atol=BOX_TOLERANCE)
    assert certainty == pytest.approx([87.65, 40.0])
    assert references == [source.SOPInstanceUID] * 2
    assert sr_verdict(out / "sr/positive.dcm") == "Present"
    lines, texts, reference = gsps_boxes(out / "gsps/positive.dcm")
    np.testing.assert_allclose(lines, corners(ROWS), atol=BOX_TOLERANCE)
    assert texts == ["opacity 88%", "opacity 40%"]
    assert reference == source.SOPInstanceUID

    assert sr_verdict(out / "sr/negative.dcm") == "Absent"
    assert sr_boxes(out / "sr/negative.dcm")[0].shape == (0, 5, 2)
    assert not (out / "gsps/negative.dcm").exists()


def test_objects_join_the_source_study_and_copy_only_what_the_standard_requires(rsna):
    sources, out = rsna
    source = pydicom.dcmread(sources["positive"])
    for kind, modality in (("sr", "SR"), ("gsps", "PR")):
        ds = pydicom.dcmread(out / kind / "positive.dcm")
        assert ds.Modality == modality
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
        assert (ds.PatientID, ds.PatientName, ds.PatientSex, ds.StudyDate) == (
            source.PatientID,
            source.PatientName,
            "M",
            "19010101",
        )
        for keyword in ("PatientAge", "PixelSpacing", "ViewPosition", "BodyPartExamined", "ConversionType"):
            assert keyword not in ds, (kind, keyword)
        assert ds.SeriesDescription.startswith("pneumo-yolo")
    sr = pydicom.dcmread(out / "sr/positive.dcm")
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert (
        evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    )


def test_the_same_image_and_models_make_the_same_objects_and_other_models_new_ones(rsna, tmp_path):
    sources, out = rsna
    ResultsWriter(tmp_path / "again").write(sources["positive"], ROWS)
    ResultsWriter(tmp_path / "other", fingerprint="other models").write(sources["positive"], ROWS)
    for kind in ("sr", "gsps"):
        before, again, other = (
            pydicom.dcmread(folder / kind / "positive.dcm") for folder in (out, tmp_path / "again", tmp_path / "other")
        )
        uids = ("SeriesInstanceUID", "SOPInstanceUID")
        assert [before[k].value for k in uids] == [again[k].value for k in uids]
        assert all(before[k].value != other[k].value for k in uids)
        assert (
            before.StudyInstanceUID == other.StudyInstanceUID == pydicom.dcmread(sources["positive"]).StudyInstanceUID
        )


def test_each_sr_box_is_bounded_by(rsna):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    groups = hd.sr.srread(rsna[1] / "sr/positive.dcm").content.get_planar_roi_measurement_groups()
    assert len(groups) == len(ROWS)
    for group in groups:
        (purpose,) = group.get_qualitative_evaluations(name=codes.DCM.GeometricPurposeOfRegion)
        assert purpose.value == codes.SCT.BoundedBy


def test_one_series_per_study_and_kind_within_a_run():
    plan = SeriesPlan()
    first, second, other = plan.next("1.2.3", "sr"), plan.next("1.2.3", "sr"), plan.next("1.2.4", "sr")
    assert first[0] == second[0] != other[0]
    assert (first[1], second[1], other[1]) == (1, 2, 1)
    assert plan.next("1.2.3", "gsps")[0] not in (first[0], other[0])


def test_an_image_without_boxes_loses_an_earlier_gsps(rsna, tmp_path):
    sources, _ = rsna
    writer = ResultsWriter(tmp_path)
    writer.write(sources["positive"], ROWS)
    writer.write(sources["positive"], np.zeros((0, 5)))
    assert not (tmp_path / "gsps/positive.dcm").exists() and sr_verdict(tmp_path / "sr/positive.dcm") == "Absent"


def test_invalid_source_values_are_repaired_or_left_out(odd):
    _, out = odd
    for path in (out / "sr/odd.dcm", out / "gsps/odd.dcm"):
        ds = pydicom.dcmread(path)
        assert (ds.PatientSex, ds.StudyDate, ds.AccessionNumber) == ("F", "20190301", "")
        assert "PatientAge" not in ds and "PixelSpacing" not in ds
    (voi,) = pydicom.dcmread(out / "gsps/odd.dcm").SoftcopyVOILUTSequence
    assert len(str(voi["WindowCenter"].value)) <= 16 and float(voi.WindowCenter) == pytest.approx(2048)


def test_monochrome1_sources_keep_their_look(monochrome1):
    gsps = pydicom.dcmread(monochrome1 / "gsps/m1.dcm")
    assert gsps.PresentationLUTShape == "INVERSE"
    assert (float(gsps.RescaleIntercept), gsps.RescaleType) == (-1024.0, "US")


def test_dciodvfy_finds_no_error_in_any_object(rsna, odd, monochrome1, dciodvfy):
    source, odd_out = odd
    assert any(
        "PatientAge" in line for line in checker_errors(dciodvfy, source)
    )  # the checker sees the source's faults
    objects = sorted(p for folder in (rsna[1], odd_out, monochrome1) for p in folder.rglob("*.dcm"))
    assert len(objects) == 7
    for path in objects:
        assert checker_errors(dciodvfy, path) == [], path


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_a_source_that_cannot_be_referenced_is_named(tmp_path):
    ds = build_dataset(np.zeros((32, 32), np.uint8), "bad")
    ds.SOPInstanceUID = "1.02.3"
    source = tmp_path / "bad.dcm"
    ds.save_as(source, enforce_file_format=True)
    with pytest.raises(DicomResultsError, match=r"bad\.dcm: SOPInstanceUID '1\.02\.3' is not a valid UID"):
        ResultsWriter(tmp_path / "out").write(source, np.zeros((0, 5)))


def test_repairs():
    assert repair_text("StudyTime", "12:30:00") == "123000"
    assert repair_text("PatientBirthDate", "19451301") == ""
    assert repair_text("PatientName", " Doe^Jane ") == "Doe^Jane"
    assert repair_numbers(["0.14300000000000002", "40"]) == ["0.14300000000000", "40"]
    assert repair_numbers("wide") is None and repair_numbers("inf") is None


def console_script() -> str:
    """The installed ``pneumo-yolo`` beside this interpreter."""
    return str(Path(sys.executable).with_name("pneumo-yolo"))


@pytest.fixture(scope="module")
def confident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-channel yolo11n whose class logits are raised, so that it finds boxes on any image."""
    import torch

    from pneumo_yolo.runtime.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
    for branch in model.model[-1].cv3:
        branch[-1].bias.data += 8.0
    path = tmp_path_factory.mktemp("model") / "confident.pt"
    torch.save({"model": model, "train_args": {"imgsz": 64, "task": "detect"}}, path)
    return path


@pytest.fixture(scope="module")
def predicted(
    confident, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path, subprocess.CompletedProcess]:
    """``pneumo-yolo predict --dicom-out`` run by the installed console script on six RSNA-format DICOMs."""
    root = tmp_path_factory.mktemp("cli")
    folder = make_rsna_folder(root / "rsna", n=5)
    out, results = root / "sub.csv", root / "dicom"
    run = subprocess.run(
        [
            console_script(),
            "predict",
            "--weights",
            str(confident),
            "--source",
            str(folder.images),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--dicom-out",
            str(results),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return folder.images, out, results, run


def test_predict_dicom_out_from_the_console_script(predicted):
    images, out, results, run = predicted
    assert run.returncode == 0, run.stderr
    assert f"DICOM SR and GSPS -> {results}" in run.stdout
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == len(list(images.glob("*.dcm")))
    with_boxes = 0
    for pid, text in zip(table.patientId, table.PredictionString):
        rows = parse_prediction_string(text)
        source_uid = pydicom.dcmread(images / f"{pid}.dcm", stop_before_pixels=True).SOPInstanceUID
        lines, certainty, references = sr_boxes(results / "sr" / f"{pid}.dcm")
        np.testing.assert_allclose(lines, corners(rows), atol=CSV_TOLERANCE)
        assert certainty == pytest.approx((rows[:, 0] * 100).tolist(), abs=0.011)
        assert set(references) <= {source_uid}
        assert sr_verdict(results / "sr" / f"{pid}.dcm") == ("Present" if len(rows) else "Absent")
        assert (results / "gsps" / f"{pid}.dcm").exists() == bool(len(rows))
        if len(rows):
            with_boxes += 1
            lines, _, reference = gsps_boxes(results / "gsps" / f"{pid}.dcm")
            np.testing.assert_allclose(lines, corners(rows), atol=CSV_TOLERANCE)
            assert reference == source_uid
    assert with_boxes > 0


def test_dciodvfy_finds_no_error_in_the_predicted_objects(predicted, dciodvfy):
    results = predicted[2]
    objects = sorted(results.rglob("*.dcm"))
    assert objects
    for path in objects:
        assert checker_errors(dciodvfy, path) == [], path


def test_dicom_out_refuses_picture_inputs(confident, tmp_path):
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    (tmp_path / "pictures").mkdir()
    cv2.imwrite(str(tmp_path / "pictures" / "case.png"), np.zeros((64, 64), np.uint8))
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--weights",
            str(confident),
            "--source",
            str(tmp_path / "pictures"),
            "--out",
            str(tmp_path / "s.csv"),
            "--dicom-out",
            str(tmp_path / "d"),
        ],
    )
    assert result.exit_code == 2
    assert "--dicom-out needs DICOM inputs" in result.output and "case.png is not a .dcm file" in result.output
