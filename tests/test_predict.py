"""predict: DICOM folder → submission CSV, on a model trained for one epoch on tiny synthetic data."""

import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from converters.rsna import ConvertSettings, convert_rsna
from pneumo_yolo.cli import app
from pneumo_yolo.eval.detections import read_raw
from pneumo_yolo.eval.postprocess import PostprocessConfig, postprocess
from pneumo_yolo.eval.submission import prediction_string, read_submission, validate_submission
from pneumo_yolo.nets.detector import RAW_CONF
from pneumo_yolo.nets.yolo import YoloDetector
from pneumo_yolo.predict.decoding import list_inputs, load_image
from pneumo_yolo.runtime.devices import CPU
from pneumo_yolo.runtime.offline import LIBRARY_ARGV

from .conftest import RsnaFolder, make_rsna_folder

IMGSZ = 64
SCRIPT = Path(sys.executable).with_name("pneumo-yolo")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RsnaFolder, Path, Path]:
    """A converted synthetic dataset and best.pt after one CPU epoch at 64 px from yolo11n.yaml."""
    from pneumo_yolo.train.common import TrainSettings
    from pneumo_yolo.train.run import train

    root = tmp_path_factory.mktemp("predict")
    folder = make_rsna_folder(root / "rsna", n=11)
    dataset = root / "dataset"
    convert_rsna(
        folder.images,
        folder.labels,
        dataset,
        settings=ConvertSettings(imgsz=IMGSZ, val_fraction=0.3),
        workers=1,
        progress=False,
    )
    settings = TrainSettings(
        model="yolo11n.yaml",
        imgsz=IMGSZ,
        epochs=1,
        batch=4,
        devices=CPU,
        project=root / "runs",
        name="tiny",
        overrides={"plots": False},  # Ultralytics' plots: tests/test_train.py's
    )
    result = train(dataset / "data.yaml", settings)
    return folder, dataset, result.best


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("test: network is off")

    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def run(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_convert_png_and_predict_input_are_the_same_pixels(trained):
    folder, dataset, _ = trained
    manifest = pd.read_csv(dataset / "manifest.csv")
    for pid, split in zip(manifest.patientId, manifest.split):
        png = cv2.imread(str(dataset / "images" / split / f"{pid}.png"), cv2.IMREAD_UNCHANGED)
        loaded = load_image(folder.images / f"{pid}.dcm", IMGSZ)
        np.testing.assert_array_equal(loaded.pixels, png)
        assert (loaded.width, loaded.height) == folder.sizes[pid]


def test_predict_writes_a_valid_submission_and_raw_detections(trained, tmp_path, no_network):
    folder, _, best = trained
    out = tmp_path / "submission.csv"
    raw = tmp_path / "raw.parquet"
    result = run(
        "--weights",
        str(best),
        "--source",
        str(folder.images),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--save-raw",
        str(raw),
        "--batch",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert "predicted 12 images" in result.stdout and "images/s" in result.stdout
    ids = sorted(folder.boxes)
    assert validate_submission(out, ids, image_sizes=folder.sizes) == []
    assert pd.read_csv(out).patientId.tolist() == ids
    detections = read_raw(raw)
    assert sorted(detections.patient_ids) == ids
    for pid, (width, height) in zip(detections.patient_ids, detections.sizes):
        assert (width, height) == folder.sizes[pid]
    assert no_network == []


def test_tta_fuses_the_unflipped_flipped_pass_and_a_tuned_yaml_is_accepted(trained, tmp_path):
    """``--tta`` boxes are the WBF fusion (at the YAML's merge_iou) of the plain pass and the flipped pass
    un-flipped, mapped to original pixels and post-processed by the YAML: recomputed here from ``YoloDetector.run``.

    This 1-epoch model gives near-whole-image boxes, nearly mirror-symmetric, so where an un-flipped
    box lands is checked with known boxes in ``test_box_placement.py``.
    """
    folder, _, best = trained
    config_path = tmp_path / "pp.yaml"
    config_path.write_text("conf: 0.0\nmerge: nms\nmerge_iou: 0.5\nmax_boxes: 2\nshrink: 1.0\n")
    out = tmp_path / "tta.csv"
    result = run(
        "--weights",
        str(best),
        "--source",
        str(folder.images),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--tta",
        "--postprocess",
        str(config_path),
    )
    assert result.exit_code == 0, result.output
    config = PostprocessConfig.from_yaml(config_path)
    detector = YoloDetector(best, device=CPU, conf=min(RAW_CONF, config.conf))
    images = [load_image(path, detector.imgsz) for path in list_inputs(folder.images)]
    plain = detector.run([image.pixels for image in images])
    flipped = detector.run([np.ascontiguousarray(image.pixels[:, ::-1]) for image in images])
    expected, plain_only = {}, {}
    for image, (boxes, scores), (flip_boxes, flip_scores) in zip(images, plain, flipped):
        height, width = image.pixels.shape
        sizes = {"original_size": (image.width, image.height), "input_size": (width, height)}
        unflipped = np.c_[width - flip_boxes[:, 2], flip_boxes[:, 1], width - flip_boxes[:, 0], flip_boxes[:, 3]]
        pass_index = np.r_[np.zeros(len(scores)), np.ones(len(flip_scores))]
        both = postprocess(
            np.r_[boxes, unflipped], np.r_[scores, flip_scores], config, **sizes, pass_index=pass_index, passes=2
        )
        expected[image.patient_id] = prediction_string(*both)
        plain_only[image.patient_id] = prediction_string(*postprocess(boxes, scores, config, **sizes))
    submission = pd.read_csv(out, keep_default_na=False)
    assert dict(zip(submission.patientId, submission.PredictionString)) == expected
    assert expected != plain_only, (
        "the fused boxes equal the plain pass's: this check could not tell --tta from no --tta"
    )
    assert any(expected.values()), "no box at all: the YAML's settings would go unchecked"
    assert validate_submission(out, sorted(folder.boxes), image_sizes=folder.sizes) == []


def test_one_corrupt_dicom_is_listed_and_the_rest_predicted(trained, tmp_path):
    folder, _, best = trained
    source = tmp_path / "test_images"
    source.mkdir()
    for path in sorted(folder.images.glob("*.dcm"))[:4]:
        (source / path.name).write_bytes(path.read_bytes())
    (source / "broken.dcm").write_bytes(b"\x00" * 300)
    out = tmp_path / "sub.csv"
    result = run("--weights", str(best), "--source", str(source), "--out", str(out), "--device", "cpu")
    assert result.exit_code == 1
    assert "broken.dcm: not a DICOM file" in result.output
    assert len(pd.read_csv(out)) == 4
    errors = pd.read_csv(tmp_path / "sub.csv.errors.csv")
    assert errors.file.map(lambda f: Path(f).name).tolist() == ["broken.dcm"]


def test_png_folders_are_accepted_in_their_own_pixels_with_a_warning(trained, tmp_path):
    _, dataset, best = trained
    out = tmp_path / "png.csv"
    result = run(
        "--weights", str(best), "--source", str(dataset / "images" / "val"), "--out", str(out), "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == len(list((dataset / "images" / "val").glob("*.png")))
    assert "boxes on PNG/JPEG inputs are in the pictures' own pixels; give --manifest" in result.stderr


def test_a_png_missing_from_the_manifest_is_a_problem(trained, tmp_path):
    _, dataset, best = trained
    manifest = pd.read_csv(dataset / "manifest.csv")
    val = manifest[manifest.split == "val"]
    val.iloc[1:].to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "png.csv"
    result = run(
        "--weights",
        str(best),
        "--source",
        str(dataset / "images" / "val"),
        "--out",
        str(out),
        "--manifest",
        str(tmp_path / "manifest.csv"),
    )
    assert result.exit_code == 1
    assert f"{val.patientId.iloc[0]}.png: not in --manifest: its original image size is unknown" in result.stderr
    assert pd.read_csv(out).patientId.tolist() == sorted(val.patientId.iloc[1:])


def test_a_threshold_below_the_raw_floor_is_honoured(trained, tmp_path):
    folder, _, best = trained
    raw = tmp_path / "raw.csv"
    result = run(
        "--weights",
        str(best),
        "--source",
        str(folder.images),
        "--out",
        str(tmp_path / "s.csv"),
        "--conf",
        "0.001",
        "--save-raw",
        str(raw),
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(raw).conf.dropna()
    assert scores.min() >= 0.001
    assert (scores < RAW_CONF).any(), "a 1-epoch model finds boxes below 0.05; --conf 0.001 must keep them"


def test_ultralytics_never_reads_our_command_line(trained, monkeypatch):
    """``pneumo-yolo predict`` once made Ultralytics take itself for its own ``yolo predict`` CLI."""
    _, dataset, best = trained
    monkeypatch.setattr(sys, "argv", sys.argv)  # restored afterwards, whatever happens to its items
    sys.argv[:] = ["/venv/bin/pneumo-yolo", "predict", "mode=predict"]  # Ultralytics' ARGV may be this very list
    detector = YoloDetector(best, device=CPU)
    image = cv2.imread(str(next((dataset / "images" / "val").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
    [(boxes, scores, pass_index)] = detector.detect([image])
    assert boxes.shape == (len(scores), 4) and set(pass_index) <= {0}
    argvs = {
        name: module.ARGV
        for name, module in sys.modules.items()
        if name.startswith("ultralytics") and hasattr(module, "ARGV")
    }
    assert "ultralytics.engine.model" in argvs
    assert all(argv == list(LIBRARY_ARGV) for argv in argvs.values())


NMS_CHECK = """
import sys
from pathlib import Path
import cv2, numpy as np
from pneumo_yolo.nets.yolo import YoloDetector
from pneumo_yolo.runtime.devices import CPU
detector = YoloDetector(Path(sys.argv[1]), device=CPU, conf=0.001)
images = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sorted(Path(sys.argv[2]).glob("*.png"))]
ours = detector.detect(images)
print("torchvision" in sys.modules, sum(len(scores) for _, scores, _ in ours))
import torchvision  # Ultralytics' NMS takes torchvision's kernel from now on
theirs = detector.detect(images)
print(all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs)))
"""


def test_cpu_prediction_leaves_torchvision_unimported_and_finds_the_same_boxes(trained):
    """Without the CPU warm-up (which only imports torchvision) Ultralytics' own NMS keeps the very boxes of torchvision's."""
    _, dataset, best = trained
    result = subprocess.run(
        [sys.executable, "-c", NMS_CHECK, str(best), str(dataset / "images" / "val")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported, boxes, same = result.stdout.split()
    assert imported == "False" and int(boxes) > 0 and same == "True"


def test_weights_that_do_not_exist_are_refused(tmp_path):
    result = CliRunner().invoke(
        app, ["predict", "--weights", str(tmp_path / "nope.pt"), "--source", str(tmp_path)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "Invalid value for '--weights'" in result.output and "nope.pt' does not exist" in result.output


def predict_script(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as users run it."""
    return subprocess.run(
        [str(SCRIPT), "predict", *args], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )


def test_two_device_processes_write_the_submission_and_raw_table_of_one(trained, tmp_path):
    """``--device cpu,cpu`` runs the multi-GPU path (one process per device, each with its own decoding pool) on the CPU.

    The console script runs the two-device path; the one-device run it is compared with runs in this
    process, which has torch and Ultralytics loaded already (other tests here run the same command so).
    Tolerance: the same patients in the same order, the same number of boxes per patient, scores
    within 1e-3 and box edges within 0.5 px. Both runs use one model on one CPU, but torch may
    sum in another order with other thread counts, and the CSV rounds to 4 and 1 decimals, so a
    last digit may differ; a box on the wrong patient or a lost box would not pass.
    """
    folder, _, best = trained
    runs = {}
    for device in ("cpu", "cpu,cpu"):
        out = tmp_path / device.replace(",", "_") / "submission.csv"
        raw = out.with_name("raw.parquet")
        args = ["--weights", str(best), "--source", str(folder.images), "--out", str(out), "--device", device]
        args += ["--save-raw", str(raw), "--conf", "0.01"]
        if device == "cpu":
            single = run(*args)
            assert single.exit_code == 0, single.output[-3000:]
        else:
            result = predict_script(*args)
            assert result.returncode == 0, result.stderr[-3000:]
        runs[device] = out, raw
    assert "on each of 2 devices" in result.stdout
    one, two = (pd.read_csv(runs[device][0], keep_default_na=False) for device in ("cpu", "cpu,cpu"))
    assert two.patientId.tolist() == one.patientId.tolist() == sorted(folder.boxes)
    single, split = read_submission(runs["cpu"][0]), read_submission(runs["cpu,cpu"][0])
    assert sum(len(rows) for rows in single.values()) > 0, "no box at all: the comparison would be empty"
    for pid, rows in single.items():
        assert split[pid].shape == rows.shape, pid
        np.testing.assert_allclose(split[pid][:, 0], rows[:, 0], rtol=0, atol=1e-3)
        np.testing.assert_allclose(split[pid][:, 1:], rows[:, 1:], rtol=0, atol=0.5)
    raw_one, raw_two = read_raw(runs["cpu"][1]), read_raw(runs["cpu,cpu"][1])
    assert raw_two.patient_ids == raw_one.patient_ids and np.array_equal(raw_two.image, raw_one.image)
    np.testing.assert_allclose(raw_two.scores, raw_one.scores, rtol=0, atol=1e-3)
    np.testing.assert_allclose(raw_two.boxes, raw_one.boxes, rtol=0, atol=0.5)
    assert sorted(p.name for p in runs["cpu,cpu"][0].parent.iterdir()) == ["raw.parquet", "submission.csv"]


def test_a_failing_device_process_is_named_and_nothing_is_written(trained, tmp_path):
    """A usage error, refused before any process starts: run in this process, where torch is loaded already."""
    folder, _, best = trained
    out = tmp_path / "submission.csv"
    result = run(
        "--weights",
        str(best),
        "--source",
        str(folder.images),
        "--out",
        str(out),
        "--device",
        "0,99",
        "--save-raw",
        str(tmp_path / "raw.csv"),
    )
    assert result.exit_code == 2  # a usage error, the same on every device
    assert (
        "--device 0: GPU 0 is not available" in result.stderr or "--device 99: GPU 99 is not available" in result.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_workers_must_be_auto_or_a_whole_number(trained, tmp_path):
    folder, _, best = trained
    result = predict_script("--weights", str(best), "--source", str(folder.images), "--workers", "lots")
    assert result.returncode == 2
    assert "'lots' is not valid; use auto or a whole number ≥ 0" in " ".join(result.stderr.replace("│", " ").split())
