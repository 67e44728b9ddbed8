"""``pneumo-yolo listen`` and ``send`` against a real Orthanc (Debian's), through the installed console script.

One Orthanc and one node serve the whole file, in order: the round trip (Orthanc sends the images to
the node as a routing rule would; the results come back into each image's study and equal
``predict``'s), then a resend, a CT, an unknown caller, kill -9 with a restart, and the destination
down then back. Skipped where Orthanc is not installed, but failing under CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest

from pneumo_yolo.eval.submission import parse_prediction_string
from pneumo_yolo.pacs.orthanc import HOST, Modality, Orthanc, OrthancError, free_port

from .conftest import RsnaFolder, make_rsna_folder, require_orthanc
from .test_dicom_results import BOX_TOLERANCE, CSV_TOLERANCE, corners, gsps_boxes, sr_boxes, sr_verdict

SCRIPT = str(Path(sys.executable).with_name("pneumo-yolo"))
NODE_AE = "PNEUMOYOLO"
SENDER_AE = "TESTSCU"
CONF = 0.35
"""Splits the tiny model's top scores on the round trip's six images: four with boxes (top raw score ≥ 0.40), two without (≤ 0.31)."""
WAIT_S = 90.0


def tiny_model(path: Path) -> Path:
    """An untrained 1-channel yolo11n at 64 px whose class scores depend on the image.

    Its batch-norm statistics are set on one batch of noise and its class layers scaled up, so that
    images differ in their top score (an untrained network's features vanish, and every image then
    scores the same). No training: it takes about a second.
    """
    import torch

    from pneumo_yolo.runtime.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model(torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    model.eval()
    head: Any = model.model[-1]
    for branch in head.cv3:
        branch[-1].weight.data *= 20
    torch.save({"model": model, "train_args": {"imgsz": 64, "task": "detect"}}, path)
    return path


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)


def uid(path: Path, keyword: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).get(keyword))


@dataclass
class Node:
    """``pneumo-yolo listen`` in a subprocess, on a port known to Orthanc as the modality ``pneumo``."""

    weights: Path
    postprocess: Path
    spool: Path
    log: Path
    port: int
    return_to: str
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(self.accepting, "listen to accept connections", 60)

    def launch(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [
                    SCRIPT,
                    "listen",
                    "--weights",
                    str(self.weights),
                    "--postprocess",
                    str(self.postprocess),
                    "--device",
                    "cpu",
                    "--ae-title",
                    NODE_AE,
                    "--port",
                    str(self.port),
                    "--allow",
                    f"ORTHANC@{HOST}",
                    "--allow",
                    f"{SENDER_AE}@{HOST}",
                    "--return-to",
                    self.return_to,
                    "--spool",
                    str(self.spool),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"listen exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        os.kill(self.process.pid, sig)
        code = self.process.wait(60)
        self.process = None
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def delivered(self, path: Path) -> bool:
        """Whether the node says it delivered the results of ``path`` (all of them: SR and GSPS)."""
        return f"delivered the results of {uid(path, 'SOPInstanceUID')}" in self.text()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_orthanc()
    return tmp_path_factory.mktemp("pacs")


@pytest.fixture(scope="module")
def model(root: Path) -> tuple[Path, Path]:
    """The tiny model and its post-processing YAML (``conf`` splits the images into some with boxes and some without)."""
    postprocess = root / "postprocess.yaml"
    postprocess.write_text(f"conf: {CONF}\n")
    return tiny_model(root / "tiny.pt"), postprocess


@pytest.fixture(scope="module")
def images(root: Path) -> RsnaFolder:
    """Six real-format (JPEG Baseline) radiographs, each its own study."""
    return make_rsna_folder(root / "rsna", n=5)


@pytest.fixture(scope="module")
def predicted(root: Path, model: tuple[Path, Path], images: RsnaFolder) -> tuple[dict[str, np.ndarray], Path]:
    """``predict --dicom-out`` on the same files with the same weights: rows ``conf x y w h`` per patientId, and the folder."""
    weights, postprocess = model
    out, results = root / "predict.csv", root / "dicom-out"
    run = subprocess.run(
        [
            SCRIPT,
            "predict",
            "--weights",
            str(weights),
            "--postprocess",
            str(postprocess),
            "--source",
            str(images.images),
        ]
        + ["--out", str(out), "--device", "cpu", "--dicom-out", str(results)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out, keep_default_na=False)
    rows = {pid: parse_prediction_string(text) for pid, text in zip(table.patientId, table.PredictionString)}
    assert 0 < sum(len(found) > 0 for found in rows.values()) < len(rows), (
        "the tiny model must find boxes on some images only"
    )
    return rows, results


@pytest.fixture(scope="module")
def pacs(root: Path) -> Iterator[Orthanc]:
    """One Orthanc for the file; its modality ``pneumo`` is the node. A stored copy replaces the first, and counts."""
    with Orthanc(root / "orthanc", {"pneumo": Modality(NODE_AE, free_port())}, overwrite=True) as server:
        yield server


@pytest.fixture(scope="module")
def node(root: Path, model: tuple[Path, Path], pacs: Orthanc, request: pytest.FixtureRequest) -> Iterator[Node]:
    """``listen`` serving Orthanc; ``predict`` runs while it starts (both import torch and load the model)."""
    weights, postprocess = model
    listen = Node(
        weights, postprocess, root / "spool", root / "listen.log", pacs.modalities["pneumo"].port, pacs.address
    )
    listen.launch()
    request.getfixturevalue("predicted")
    listen.wait_ready()
    yield listen
    if listen.process is not None:
        assert listen.kill(signal.SIGTERM) == 0, listen.text()[-3000:]


def results_of(pacs: Orthanc, study_uid: str) -> dict[str, list[str]]:
    """Orthanc IDs of the SR and PR instances of one study (QIDO-RS through the DICOMweb plugin)."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=pacs.dicomweb)
    found: dict[str, list[str]] = {"SR": [], "PR": []}
    for modality in found:
        for item in client.search_for_instances(study_instance_uid=study_uid, search_filters={"Modality": modality}):
            found[modality].append(str(item["00080018"]["Value"][0]))
    return found


def retrieve(pacs: Orthanc, study_uid: str, sop_uid: str, path: Path) -> Path:
    """WADO-RS of one instance, written to ``path``."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=pacs.dicomweb)
    (series,) = client.search_for_instances(study_instance_uid=study_uid, search_filters={"SOPInstanceUID": sop_uid})
    dataset = client.retrieve_instance(study_uid, str(series["0020000E"]["Value"][0]), sop_uid)
    dataset.save_as(path, enforce_file_format=True)
    return path


def store_to_node(pacs: Orthanc, paths: list[Path]) -> list[str]:
    """Upload ``paths`` into Orthanc, then have Orthanc send them to the node (a routing rule's work)."""
    ids = [pacs.upload(path) for path in paths]
    pacs.store("pneumo", ids)
    return ids


def every_study_served(pacs: Orthanc, paths: list[Path], with_boxes: Callable[[Path], bool]) -> bool:
    """Each image's study holds one SR, and one GSPS where ``with_boxes`` says so."""
    for path in paths:
        found = results_of(pacs, uid(path, "StudyInstanceUID"))
        if len(found["SR"]) != 1 or len(found["PR"]) != int(with_boxes(path)):
            return False
    return True


def test_the_round_trip_through_orthanc_equals_predict(pacs, node, images, predicted, tmp_path):
    """Each study gets one SR (one GSPS where there are boxes): predict's boxes, the very objects of its --dicom-out."""
    rows, dicom_out = predicted
    paths = sorted(images.images.glob("*.dcm"))
    store_to_node(pacs, paths)
    wait_for(lambda: every_study_served(pacs, paths, lambda p: len(rows[p.stem]) > 0), "every study's results")
    for path in paths:
        study_uid, source_uid, expected = uid(path, "StudyInstanceUID"), uid(path, "SOPInstanceUID"), rows[path.stem]
        found = results_of(pacs, study_uid)
        assert len(found["SR"]) == 1 and len(found["PR"]) == int(len(expected) > 0), path.name
        assert found["SR"] == [uid(dicom_out / "sr" / path.name, "SOPInstanceUID")]
        sr = retrieve(pacs, study_uid, found["SR"][0], tmp_path / f"{path.stem}-sr.dcm")
        lines, certainty, references = sr_boxes(sr)
        np.testing.assert_allclose(lines, sr_boxes(dicom_out / "sr" / path.name)[0], atol=BOX_TOLERANCE)
        np.testing.assert_allclose(lines.reshape(-1, 5, 2), corners(expected), atol=CSV_TOLERANCE)
        assert certainty == pytest.approx((expected[:, 0] * 100).tolist(), abs=0.011)
        assert set(references) <= {source_uid}
        assert sr_verdict(sr) == ("Present" if len(expected) else "Absent")
        if found["PR"]:
            assert found["PR"] == [uid(dicom_out / "gsps" / path.name, "SOPInstanceUID")]
            gsps = retrieve(pacs, study_uid, found["PR"][0], tmp_path / f"{path.stem}-pr.dcm")
            lines, _, reference = gsps_boxes(gsps)
            np.testing.assert_allclose(lines, corners(expected), atol=CSV_TOLERANCE)
            assert reference == source_uid
    assert not any(pid in node.text() for pid in rows), "a patient ID or name in the node's log"


def test_a_resend_makes_nothing_new(pacs, node, images, root):
    """The images again, and their studies with our own SR and GSPS (the routing loop): only a new image is served."""
    _, since = pacs.new_instances()
    before = len(pacs.get("/instances"))
    pacs.store("pneumo", pacs.studies())
    marker = make_rsna_folder(root / "marker", n=0, seed=7)
    (marker_path,) = sorted(marker.images.glob("*.dcm"))
    store_to_node(pacs, [marker_path])
    wait_for(lambda: node.delivered(marker_path), "the new image's results")
    arrived, _ = pacs.new_instances(since)
    modalities = sorted(pacs.get(f"/instances/{found}/tags?simplify")["Modality"] for found in arrived)
    assert modalities in (["CR", "SR"], ["CR", "PR", "SR"]), modalities
    assert len(pacs.get("/instances")) == before + len(modalities)


def test_a_ct_is_refused_and_never_predicted(pacs, node, images, root):
    from pneumo_yolo.dicom.write import build_dataset

    ds = build_dataset(np.zeros((64, 64), np.uint8), "ct-case")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    path = root / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    (instance,) = store_ids = [pacs.upload(path)]
    with pytest.raises(OrthancError, match=r"(?s)HTTP 500.*failed with DIMSE status 0x0122"):
        pacs.store("pneumo", store_ids)
    marker = make_rsna_folder(root / "marker-ct", n=0, seed=8)
    marker_paths = sorted(marker.images.glob("*.dcm"))
    store_to_node(pacs, marker_paths)
    wait_for(lambda: all(map(node.delivered, marker_paths)), "the next image's results")
    assert results_of(pacs, ds.StudyInstanceUID) == {"SR": [], "PR": []}
    assert not list(node.spool.rglob(f"*{ds.SOPInstanceUID}*")), instance


def test_an_unknown_ae_title_is_refused(node, predicted):
    """The PACS sees an A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(Verification)
    assoc = stranger.associate(HOST, node.port, ae_title=NODE_AE)
    assert not assoc.is_established and assoc.is_rejected, "aborted" if assoc.is_aborted else "no answer"
    answer = assoc.acceptor.primitive
    assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, 0x03)
    _, results = predicted
    run = subprocess.run(
        [SCRIPT, "send", str(results), "--to", f"{NODE_AE}@{HOST}:{node.port}", "--ae-title", "STRANGER"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "rejected the association" in run.stderr
    assert "refused association from STRANGER@127.0.0.1" in node.text()


def send_to_node(node: Node, folder: Path) -> None:
    """``pneumo-yolo send`` of a folder straight to the node, as the allowed caller TESTSCU; every file accepted."""
    run = subprocess.run(
        [SCRIPT, "send", str(folder), "--to", f"{NODE_AE}@{HOST}:{node.port}", "--ae-title", SENDER_AE],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_kill_9_then_a_restart_serves_every_accepted_image_once(pacs, node, root):
    """Orthanc is down, so the accepted images are still in the spool when the node is killed: the restart, with
    Orthanc back, resumes them."""
    folder = make_rsna_folder(root / "killed", n=5, seed=3)
    paths = sorted(folder.images.glob("*.dcm"))
    _, since = pacs.new_instances()
    pacs.stop()
    send_to_node(node, folder.images)
    assert node.kill() == -signal.SIGKILL
    pacs.start()
    node.start()
    restarted = [line for line in node.text().splitlines() if "listening as" in line][-1]
    assert re.search(r"\d+ (queued|predicted)", restarted), restarted
    wait_for(lambda: all(map(node.delivered, paths)), "the results of every accepted image")
    for path in paths:
        assert node.text().count(f"delivered the results of {uid(path, 'SOPInstanceUID')}") == 1
        found = results_of(pacs, uid(path, "StudyInstanceUID"))
        assert len(found["SR"]) == 1 and len(found["PR"]) <= 1
    arrived, _ = pacs.new_instances(since)
    assert len(arrived) == len(set(arrived)), "a result arrived twice"


def test_the_destination_down_then_back_loses_and_duplicates_nothing(pacs, node, root):
    folder = make_rsna_folder(root / "down", n=3, seed=4)
    paths = sorted(folder.images.glob("*.dcm"))
    _, since = pacs.new_instances()
    failed = node.text().count("not delivered")
    pacs.stop()
    send_to_node(node, folder.images)
    wait_for(lambda: node.text().count("not delivered") > failed, "a delivery attempt to fail")
    pacs.start()
    wait_for(lambda: all(map(node.delivered, paths)), "the results once Orthanc is back")
    time.sleep(1)
    arrived, _ = pacs.new_instances(since)
    assert len(arrived) == len(set(arrived)), "a result arrived twice"
    for path in paths:
        found = results_of(pacs, uid(path, "StudyInstanceUID"))
        assert len(found["SR"]) == 1 and len(found["PR"]) <= 1


@pytest.mark.parametrize("how", ["c-store", "stow"])
def test_send_puts_a_dicom_out_folder_into_orthanc(pacs, predicted, how):
    """By C-STORE (as PNEUMOYOLO, a modality Orthanc knows) and by STOW-RS, into an emptied Orthanc."""
    _, results = predicted
    pacs.delete_everything()
    to = ["--to", pacs.address] if how == "c-store" else ["--stow", pacs.dicomweb]
    run = subprocess.run([SCRIPT, "send", str(results), *to], capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    sent = sorted(results.rglob("*.dcm"))
    assert sum(line.startswith("sent ") for line in run.stdout.splitlines()) == len(sent)
    stored = {pacs.get(f"/instances/{found}/tags?simplify")["SOPInstanceUID"] for found in pacs.get("/instances")}
    assert stored == {uid(path, "SOPInstanceUID") for path in sent}
