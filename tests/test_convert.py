import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from converters.rsna import ConvertError, ConvertSettings, convert_rsna
from pneumo_yolo.boxes import clip_ltwh, yolo_to_ltwh
from pneumo_yolo.cli import app
from pneumo_yolo.cli.flags import flag_message
from pneumo_yolo.data.labels import LabelFileError
from pneumo_yolo.settings import SettingError

from .conftest import RsnaFolder, make_rsna_folder

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")


def convert(folder: RsnaFolder, out: Path, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return convert_rsna(folder.images, folder.labels, out, **kwargs)


def read_yolo_labels(out: Path, split: str, pid: str) -> np.ndarray:
    text = (out / "labels" / split / f"{pid}.txt").read_text()
    rows = [line.split() for line in text.splitlines()]
    assert all(row[0] == "0" for row in rows)
    return np.array([[float(v) for v in row[1:]] for row in rows]).reshape(-1, 4)


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("imgsz", [None, 128])
def test_labels_match_source_boxes_within_one_pixel(rsna_folder, tmp_path, imgsz):
    out = tmp_path / "out"
    report = convert(rsna_folder, out, settings=ConvertSettings(imgsz=imgsz))
    assert (report.converted, report.failed) == (13, 0)
    manifest = pd.read_csv(out / "manifest.csv").set_index("patientId")
    for pid, boxes in rsna_folder.boxes.items():
        row = manifest.loc[pid]
        width, height = rsna_folder.sizes[pid]
        assert (row.width, row.height, row.n_boxes) == (width, height, len(boxes))
        image = cv2.imread(str(out / "images" / row.split / f"{pid}.png"), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.ndim == 2
        assert max(image.shape) == (imgsz or max(width, height))
        written = yolo_to_ltwh(read_yolo_labels(out, row.split, pid), width, height)
        np.testing.assert_allclose(written, clip_ltwh(boxes, width, height), atol=1.0)


def test_manifest_carries_header_fields_and_no_patient_name(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out)
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == [
        "patientId",
        "split",
        "width",
        "height",
        "n_boxes",
        "class",
        "view_position",
        "sex",
        "age",
    ]
    assert set(manifest.view_position) == {"PA", "AP"} and set(manifest.age) == {51}
    png = (out / "images" / manifest.split[0] / f"{manifest.patientId[0]}.png").read_bytes()
    chunks, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        chunks.append(png[offset + 4 : offset + 8].decode())
        offset += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}


def test_split_by_patient_with_class_info(tmp_path):
    folder = make_rsna_folder(tmp_path / "rsna", n=40)
    classes = tmp_path / "classes.csv"
    rows = ["patientId,class"] + [f"{pid},{'Lung Opacity' if len(b) else 'Normal'}" for pid, b in folder.boxes.items()]
    classes.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    convert(folder, out, class_info=classes, settings=ConvertSettings(val_fraction=0.25))
    manifest = pd.read_csv(out / "manifest.csv")
    val = manifest[manifest.split == "val"]
    n_positive = sum(len(b) > 0 for b in folder.boxes.values())
    assert len(val) == round(n_positive * 0.25) + round((41 - n_positive) * 0.25)
    assert set(val["class"]) == {"Lung Opacity", "Normal"}
    train_ids = {p.stem for p in (out / "images" / "train").glob("*.png")}
    val_ids = {p.stem for p in (out / "images" / "val").glob("*.png")}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 41


def test_k_folds_write_every_image_once_and_one_dataset_yaml_per_fold(rsna_folder, tmp_path):
    from pneumo_yolo.runtime.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "out"
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64, folds=3))
    pngs = sorted(out.glob("images/*/*.png"))
    assert sorted(p.stem for p in pngs) == sorted(rsna_folder.boxes)  # each image once, no copies
    manifest = pd.read_csv(out / "manifest.csv").set_index("patientId")
    assert all(manifest.loc[p.stem, "split"] == p.parent.name for p in pngs)
    val_sets = []
    for fold in range(3):
        listing = out / "folds" / f"fold{fold}"  # each line relative to the list, so the dataset can move
        train = {(listing / line).resolve() for line in (listing / "train.txt").read_text().split()}
        val = {(listing / line).resolve() for line in (listing / "val.txt").read_text().split()}
        assert not train & val and train | val == {p.resolve() for p in pngs}
        assert {p.parent.name for p in val} == {f"fold{fold}"}
        data = check_det_dataset(str(out / f"data_fold{fold}.yaml"))
        assert Path(data["val"]) == out / "folds" / f"fold{fold}" / "val.txt"
        val_sets.append({p.stem for p in val})
    assert sorted(pid for v in val_sets for pid in v) == sorted(rsna_folder.boxes)  # every patient in one val
    assert (out / "data.yaml").read_text() == (out / "data_fold0.yaml").read_text()


def test_rerun_with_folds_after_a_plain_split_needs_overwrite_and_leaves_no_stale_files(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64))
    with pytest.raises(ConvertError, match="other settings"):
        convert(rsna_folder, out, settings=ConvertSettings(imgsz=64, folds=2))
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64, folds=2), overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["fold0", "fold1"]
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64), overwrite=True)
    assert not (out / "folds").exists() and not list(out.glob("data_fold*.yaml"))


def test_bad_inputs_are_named_and_the_rest_converts(rsna_folder, tmp_path):
    images = rsna_folder.images
    (images / "notdicom.dcm").write_text("hello")
    good = next(iter(sorted(images.glob("*.dcm"))))
    data = good.read_bytes()
    (images / "truncated.dcm").write_bytes(data[: len(data) // 2])
    nopixels = pydicom.dcmread(good)
    del nopixels.PixelData
    nopixels.save_as(images / "nopixels.dcm")
    (images / "nolabel.dcm").write_bytes(data)
    rsna_folder.write_labels(
        (
            "notdicom,,,,,0",
            "truncated,,,,,0",
            "nopixels,,,,,0",
            "textsize,1,1,abc,5,1",
            "nansize,1,1,nan,5,1",
            "negsize,1,1,-5,5,1",
            "../escape,1,1,5,5,1",
            "/abs/path,1,1,5,5,1",
            "nodicom,,,,,0",
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["convert", "--images", str(images), "--labels", str(rsna_folder.labels), "--out", str(out), "--workers", "2"],
    )
    assert result.exit_code == 1
    errors = pd.read_csv(out / "errors.csv")
    problems = dict(zip(errors.file.map(lambda f: Path(f).name) + "|" + errors.problem.str[:60], errors.problem))
    text = "\n".join(problems)
    assert "notdicom.dcm|not a DICOM file" in text
    assert "truncated.dcm|corrupt or truncated" in text
    assert "nopixels.dcm|DICOM has no pixel data" in text
    assert "nolabel.dcm|no label row for this patient" in text
    for pid, message in [
        ("textsize", "non-numeric"),
        ("nansize", "NaN"),
        ("negsize", "negative width or height"),
        ("../escape", "not a safe file name"),
        ("/abs/path", "not a safe file name"),
        ("nodicom", "has label rows but no DICOM"),
    ]:
        assert any(pid in p and message in p for p in errors.problem), pid
    assert len(errors) == 10
    for name in ("notdicom.dcm", "truncated.dcm", "nopixels.dcm", "nolabel.dcm", "'textsize'", "'../escape'"):
        assert name in result.output
    assert "converted 13, skipped 0 (already done), failed 10" in result.output
    assert len(list((out / "images").rglob("*.png"))) == 13
    assert not (tmp_path / "escape.txt").exists() and not list(tmp_path.rglob("escape*"))


def test_rerun_skips_finished_images(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out)
    before = snapshot(out)
    report = convert(rsna_folder, out)
    assert (report.converted, report.skipped) == (0, 13)
    assert snapshot(out) == before


def test_other_settings_are_refused_unless_overwrite(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=128))
    with pytest.raises(ConvertError, match=r"imgsz=128 \(now 64\).*--overwrite"):
        convert(rsna_folder, out, settings=ConvertSettings(imgsz=64))
    report = convert(rsna_folder, out, settings=ConvertSettings(imgsz=64), overwrite=True)
    assert report.converted == 13
    assert {cv2.imread(str(p)).shape[1] for p in (out / "images").rglob("*.png")} <= {64}


def test_a_foreign_folder_is_not_written_into(rsna_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ConvertError, match="not written by pneumo-yolo convert"):
            convert(rsna_folder, out, overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["thesis.docx"] and (out / "thesis.docx").read_text() == "precious"


def test_inputs_inside_what_convert_writes_are_refused_and_kept(tmp_path):
    folder = make_rsna_folder(tmp_path / "rsna", n=3)
    out = tmp_path / "out"
    convert(folder, out)
    folder.images = folder.images.rename(out / "images" / "dicoms")
    before = snapshot(folder.images)
    for overwrite in (False, True):
        with pytest.raises(ConvertError, match=r"--images .*dicoms lies inside .*images, which convert writes"):
            convert(folder, out, overwrite=overwrite, settings=ConvertSettings(imgsz=64))
    assert snapshot(folder.images) == before


def test_the_sweep_of_temporary_files_spares_live_runs(tmp_path):
    from pneumo_yolo.files import remove_stale_temp_files

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = tmp_path / "images" / f".a.png.{gone.stdout.strip()}.0badc0de.part"
    live = tmp_path / f".b.png.{os.getpid()}.0badc0de.part"
    other = tmp_path / "notes.part"
    for path in (stale, live, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert remove_stale_temp_files(tmp_path) == 1
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux: /proc")
def test_the_sweep_takes_what_a_dead_process_left_before_it_is_reaped(tmp_path):
    """A worker killed mid-write whose parent is gone too stays a zombie until someone reaps it; it writes no more."""
    from pneumo_yolo.files import remove_stale_temp_files

    zombie = subprocess.Popen(["true"])  # ended, and not waited for yet
    deadline = time.monotonic() + 10
    while running(zombie.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    stale = tmp_path / f".a.png.{zombie.pid}.0badc0de.part"
    stale.write_text("x")
    assert Path(f"/proc/{zombie.pid}").exists() and remove_stale_temp_files(tmp_path) == 1 and not stale.exists()
    zombie.wait()


def signals_as_in_a_shell() -> None:
    """In the child before it starts: Ctrl-C acts as in a shell (default action, not blocked), whatever the test
    runner's worker had set; an ignored or blocked SIGINT is inherited, and the run would go on to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_then_rerun_is_byte_identical_to_a_clean_run(tmp_path, stop):
    folder = make_rsna_folder(tmp_path / "rsna", n=60, size=512)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pneumo_yolo",
        "convert",
        "--images",
        str(folder.images),
        "--labels",
        str(folder.labels),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    subprocess.run(command, check=True, capture_output=True)
    clean = snapshot(out)

    for path in sorted(out.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=signals_as_in_a_shell
    )
    deadline = time.monotonic() + 60
    while len(list((out / "labels").rglob("*.txt"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    labels_at_stop = len(list((out / "labels").rglob("*.txt")))
    os.kill(process.pid, stop)
    _, stderr = process.communicate()
    partial = list((out / "images").rglob("*.png"))
    assert 5 <= len(partial) < 61 and not (out / "manifest.csv").exists(), (
        f"{labels_at_stop} labels when {stop.name} was sent; exit {process.returncode}, {len(partial)} PNGs\n{stderr[-2000:]}"
    )

    subprocess.run(command, check=True, capture_output=True)
    assert snapshot(out) == clean


HOLD_WORKER_WRITES = """# A pool worker stops for good between creating a temporary file and renaming it into place.

import multiprocessing
import os
import time

_replace = os.replace


def _held_replace(source, target, *args, **kwargs):
    if multiprocessing.parent_process() is not None and str(source).endswith(".part"):
        time.sleep(3600)
    return _replace(source, target, *args, **kwargs)


os.replace = _held_replace
"""
"""A ``sitecustomize`` that every process of the run imports, and whose hold only the convert pool's workers reach."""


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux: /proc")
@pytest.mark.parametrize("stop", ["SIGINT to the process group (Ctrl-C)", "SIGKILL to the process group"])
def test_a_convert_stopped_while_its_workers_write_leaves_no_temporary_file(tmp_path, stop):
    """Every worker is held between its temporary file and the rename, so the stop always lands in that window.

    A Ctrl-C ends the pool, whose workers get SIGTERM mid-write (as SIGTERM or SIGHUP to the run would: the same
    ``KeyboardInterrupt``); a kill -9 of the group leaves the cleaning to the janitor. Either way no temporary file
    and no worker is left, and a rerun converts everything.
    """
    folder = make_rsna_folder(tmp_path / "rsna", n=6, size=64)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOLD_WORKER_WRITES)
    out = tmp_path / "out"
    args = [str(SCRIPT), "convert", "--images", str(folder.images), "--labels", str(folder.labels), "--out", str(out)]
    held_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "hook"), os.getenv("PYTHONPATH")])),
    }
    with open(tmp_path / "stderr", "w") as err:
        process = subprocess.Popen(
            [*args, "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=held_env,
            start_new_session=True,
            preexec_fn=signals_as_in_a_shell,
        )
    deadline = time.monotonic() + 60
    while len(held := list((out / "images").rglob("*.part"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
        time.sleep(0.02)
    assert len(held) == 2, "the two workers were not held mid-write"
    workers = {int(path.name.split(".")[-3]) for path in held}
    os.killpg(process.pid, signal.SIGINT if stop.startswith("SIGINT") else signal.SIGKILL)
    code = process.wait(timeout=60)
    deadline = time.monotonic() + 10  # a janitor cleans half a second after the kill
    while (left := [*map(str, out.rglob("*.part")), *(f"worker {pid}" for pid in workers if running(pid))]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert left == []
    message = (tmp_path / "stderr").read_text()
    if stop.startswith("SIGINT"):
        assert code == 130 and "interrupted: 0 of 7 images converted" in message, message[-2000:]
        assert "Traceback" not in message, message[-2000:]
    else:
        assert code == -signal.SIGKILL
    again = subprocess.run([*args, "--workers", "1"], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list((out / "images").rglob("*.png"))) == 7 and not list(out.rglob("*.part"))


def test_ultralytics_accepts_the_written_data_yaml(rsna_folder, tmp_path):
    from pneumo_yolo.runtime.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "out"
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64, channels=1, val_fraction=0.3))
    data = check_det_dataset(str(out / "data.yaml"))
    assert data["nc"] == 1 and data["names"] == {0: "opacity"} and data["channels"] == 1
    assert Path(data["train"]) == out / "images" / "train" and Path(data["val"]) == out / "images" / "val"


def test_a_rerun_picks_up_changed_labels(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out)
    pid = next(p for p, b in rsna_folder.boxes.items() if len(b) == 0)
    rsna_folder.boxes[pid] = np.array([[10.0, 20.0, 50.0, 60.0]])
    rsna_folder.write_labels()
    report = convert(rsna_folder, out)
    assert (report.converted, report.skipped) == (0, 13)
    split = pd.read_csv(out / "manifest.csv").set_index("patientId").loc[pid, "split"]
    np.testing.assert_allclose(
        yolo_to_ltwh(read_yolo_labels(out, split, pid), *rsna_folder.sizes[pid]), [[10, 20, 50, 60]], atol=1e-3
    )
    fresh = tmp_path / "fresh"
    convert(rsna_folder, fresh)
    assert {k: v for k, v in snapshot(out).items() if k != "data.yaml"} == {
        k: v for k, v in snapshot(fresh).items() if k != "data.yaml"
    }


def test_overwrite_keeps_the_old_dataset_when_the_new_labels_are_unreadable(rsna_folder, tmp_path):
    out = tmp_path / "out"
    convert(rsna_folder, out, settings=ConvertSettings(imgsz=64))
    before = snapshot(out)
    rsna_folder.labels.write_text("not,a,labels,file\n")
    with pytest.raises(LabelFileError, match="missing column"):
        convert(rsna_folder, out, settings=ConvertSettings(imgsz=32), overwrite=True)
    assert snapshot(out) == before


def test_one_fold_is_refused():
    with pytest.raises(SettingError, match="must be at least 2") as error:
        ConvertSettings(folds=1)
    assert flag_message(error.value) == "--folds 1: must be at least 2"
