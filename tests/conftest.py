"""Shared fixtures: small RSNA-format folders made with the project's own DICOM writer."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.rsna import ConvertSettings, convert_rsna
from pneumo_yolo.data.labels import LABEL_COLUMNS
from pneumo_yolo.dicom.write import DicomFormat, write_dicom
from pneumo_yolo.pacs import orthanc as orthanc_server
from pneumo_yolo.runtime import offline

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
"""OpenMP threads (torch's) sleep rather than spin while they wait, in this process and every command it starts, as in
``compare`` (pipelines/compare.py): the test files run side by side on the cores, and a tiny training whose two threads
spun at their barriers while another file's process held the other core took twice the CPU time (46 s against 23 s)."""
LABEL_HEADER = ",".join(LABEL_COLUMNS)
RSNA_ENV = "PNEUMO_YOLO_RSNA_DIR"
RSNA_DIR = Path(os.environ.get(RSNA_ENV) or Path(__file__).resolve().parents[2] / "shared" / "rsna")
"""The real challenge CSVs: ``$PNEUMO_YOLO_RSNA_DIR``, else ``shared/rsna`` beside the repository."""
EXCERPT_DIR = Path(__file__).resolve().parent / "data" / "rsna_excerpt"
"""Every row of 42 real patients (the first 40 of the label CSV, plus one with 3 and one with 4 boxes)."""


def real_csv(name: str) -> Path:
    """The real challenge CSV ``name``, or skip the test with how to provide it."""
    path = RSNA_DIR / name
    if not path.is_file():
        pytest.skip(
            f"needs the real RSNA CSV {name}, not found in {RSNA_DIR}: set {RSNA_ENV} to the folder that holds it"
        )
    return path


@dataclass
class RsnaFolder:
    """An RSNA-layout folder: ``images/`` of DICOMs and ``labels.csv``; ``boxes`` is the truth."""

    root: Path
    images: Path
    labels: Path
    boxes: dict[str, np.ndarray]
    sizes: dict[str, tuple[int, int]]

    def label_rows(self) -> list[str]:
        rows = [LABEL_HEADER]
        for pid, boxes in self.boxes.items():
            rows += [f"{pid},{x:.1f},{y:.1f},{w:.1f},{h:.1f},1" for x, y, w, h in boxes] or [f"{pid},,,,,0"]
        return rows

    def write_labels(self, extra_rows: tuple[str, ...] = ()) -> None:
        self.labels.write_text("\n".join(self.label_rows() + list(extra_rows)) + "\n")


def make_rsna_folder(root: Path, n: int, seed: int = 0, size: int = 256) -> RsnaFolder:
    """``n`` real-format (JPEG Baseline) DICOMs of ``size``², plus one 400×300 image, with boxes."""
    rng = np.random.default_rng(seed)
    folder = RsnaFolder(root, root / "stage_2_train_images", root / "stage_2_train_labels.csv", {}, {})
    for index in range(n + 1):
        pid = f"{seed:02d}{index:04d}-case"
        width, height = (400, 300) if index == n else (size, size)
        pixels = cv2.GaussianBlur(rng.integers(40, 200, (height, width), dtype=np.uint8), (0, 0), 2)
        n_boxes = [0, 0, 1, 2][index % 4]
        boxes = (
            np.array(
                [
                    [
                        rng.uniform(0, width / 2),
                        rng.uniform(0, height / 2),
                        rng.uniform(20, width / 2),
                        rng.uniform(20, height / 2),
                    ]
                    for _ in range(n_boxes)
                ]
            )
            .reshape(-1, 4)
            .round(1)
        )
        write_dicom(folder.images / f"{pid}.dcm", pixels, stored=DicomFormat(view_position=["PA", "AP"][index % 2]))
        folder.boxes[pid] = boxes
        folder.sizes[pid] = (width, height)
    folder.write_labels()
    return folder


@pytest.fixture
def rsna_folder(tmp_path: Path) -> RsnaFolder:
    return make_rsna_folder(tmp_path / "rsna", n=12)


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` in the temporary folder of this pytest session, which every xdist worker of the session sees."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@dataclass
class FoldClassifiers:
    """``root/dataset``: a 2-fold dataset; ``root/runs/gate-fold{0,1}``: a classifier per fold; ``result``: the run."""

    root: Path
    result: subprocess.CompletedProcess


FOLD_CLASSIFIERS = [
    "train",
    "--data",
    "dataset/data.yaml",
    "--model",
    "yolo11n-cls.yaml",
    "--folds",
    "2",
    "--device",
    "cpu,cpu",
    "--imgsz",
    "64",
    "--epochs",
    "1",
    "--batch",
    "4",
    "--name",
    "gate",
    "--set",
    "plots=False",  # Ultralytics' plots: tests/test_train.py's
]


@pytest.fixture(scope="session")
def fold_classifiers(tmp_path_factory: pytest.TempPathFactory) -> FoldClassifiers:
    """A 2-fold dataset (12 patients, half with boxes, at 64 px) and an image classifier per fold, trained as a user
    would, through the console script (1 epoch), one fold per process (``--device cpu,cpu``).

    Made once per session for tests/test_folds.py (the folds on their own devices) and tests/test_classifier.py
    (the classifiers), whichever xdist worker asks first: the others wait on a lock, then read what it made.
    """
    root = shared_folder(tmp_path_factory, "fold-classifiers")
    record = root / "result.json"
    with open(root.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.is_file():
            shutil.rmtree(root, ignore_errors=True)  # what a worker that failed here left
            folder = make_rsna_folder(root / "rsna", n=11)
            settings = ConvertSettings(imgsz=64, folds=2)
            convert_rsna(folder.images, folder.labels, root / "dataset", settings=settings, workers=1, progress=False)
            script = Path(sys.executable).with_name("pneumo-yolo")
            done = subprocess.run(
                [str(script), *FOLD_CLASSIFIERS], cwd=root, capture_output=True, text=True, timeout=900
            )
            record.write_text(json.dumps([done.returncode, done.stdout, done.stderr]))
        returncode, stdout, stderr = json.loads(record.read_text())
    return FoldClassifiers(root, subprocess.CompletedProcess(FOLD_CLASSIFIERS, returncode, stdout, stderr))


@pytest.fixture(scope="session", autouse=True)
def pneumo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ultralytics is set up once per process: keep its settings, fonts and weights inside pytest's temp folder."""
    os.environ[offline.ENV_HOME] = str(tmp_path_factory.getbasetemp() / "pneumo-yolo-home")
    return offline.home_dir()


def require_orthanc() -> Path:
    """Debian's Orthanc binary: skip the test where it is absent, but fail under CI (CI=true), where .ci/run installs it."""
    if orthanc_server.BINARY.is_file() and orthanc_server.DICOMWEB_PLUGIN.is_file():
        return orthanc_server.BINARY
    if os.environ.get("CI") == "true":
        pytest.fail("Orthanc is not installed but CI=true: .ci/run must `apt-get install -y orthanc orthanc-dicomweb`")
    pytest.skip("Orthanc not installed (Debian: apt-get install orthanc orthanc-dicomweb)")


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[orthanc_server.Orthanc]:
    """A private Orthanc in ``tmp_path/orthanc`` on free loopback ports, stopped by its PID after the test."""
    require_orthanc()
    with orthanc_server.Orthanc(tmp_path / "orthanc") as server:
        yield server


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def page_links(index: Path) -> list[str]:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.links


def assert_self_contained(index: Path) -> None:
    """Every src/href is a relative path to a file inside the report folder; every picture there is used."""
    folder = index.parent.resolve()
    links = page_links(index)
    for link in links:
        assert "://" not in link and not link.startswith(("/", "//", "data:")), link
        target = (folder / link).resolve()
        assert target.is_file() and folder in target.parents, link
    pictures = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    assert pictures == set(links)
