"""listen: the DICOM node, its spool and its worker, talked to by pynetdicom peers on the loopback.

The node's rules (allow-list, storage classes, watermark, TLS, resends, retries) are checked in
this process with a stand-in predictor; the console script runs the real model end to end:
results equal predict's, SIGTERM ends after the batch and a restart resumes. Kill -9 and a
restart are shown against a real Orthanc (tests/test_pacs_orthanc.py).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from pneumo_yolo.dicom.results import ResultsWriter
from pneumo_yolo.dicom.write import build_dataset
from pneumo_yolo.eval.submission import parse_prediction_string
from pneumo_yolo.pacs.addresses import Caller, Peer
from pneumo_yolo.pacs.node import NodeSettings, start_node
from pneumo_yolo.pacs.send import Destination
from pneumo_yolo.pacs.spool import Spool, SpoolError
from pneumo_yolo.pacs.store import c_store_files
from pneumo_yolo.pacs.tls import TlsFiles
from pneumo_yolo.pacs.worker import Backoff, Worker
from pneumo_yolo.predict.device import DeviceOutput

from .conftest import make_rsna_folder
from .pacs_helpers import LOOPBACK, SCRIPT, LineReader, Receiver, free_port, make_certs
from .test_dicom_results import CSV_TOLERANCE, corners, sr_boxes

SENDER = "SENDER"
ROWS = np.array([[0.9, 10.0, 10.0, 40.0, 30.0]])
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-channel yolo11n whose class logits are raised, so that it finds boxes on any image (as in test_dicom_results)."""
    import torch

    from pneumo_yolo.runtime.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    network = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
    for branch in network.model[-1].cv3:
        branch[-1].bias.data += 8.0
    path = tmp_path_factory.mktemp("model") / "confident.pt"
    torch.save({"model": network, "train_args": {"imgsz": 64, "task": "detect"}}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six RSNA-format DICOMs (Secondary Capture of modality CR, JPEG Baseline)."""
    return make_rsna_folder(tmp_path_factory.mktemp("node") / "rsna", n=5).images


def dicoms(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


class StandIn:
    """A predictor with ``Predictor.predict``'s answer: every image gets :data:`ROWS` (no model, so no torch).

    Each batch is predicted when it is submitted, in the caller's thread.
    """

    batch, lanes = 4, 1

    def __init__(self, out: Path) -> None:
        self.writer, self.calls = ResultsWriter(out, "stand-in"), 0
        self.outputs: list[DeviceOutput] = []

    def submit(self, paths: list[Path]) -> None:
        self.outputs.append(self.predict(paths))

    def ready(self, timeout_s: float) -> bool:
        return bool(self.outputs)

    def collect(self) -> DeviceOutput:
        return self.outputs.pop(0)

    def predict(self, paths: list[Path]) -> DeviceOutput:
        self.calls += 1
        found = DeviceOutput()
        for path in paths:
            found.strings[path.stem] = "0.9 10 10 40 30"
            found.results[path.stem] = self.writer.write(path, ROWS)
        return found


class Node:
    """A node started in this process on a free port, with its spool; ``send`` calls it as ``SENDER``."""

    def __init__(self, root: Path, **settings) -> None:
        self.spool, self.wake = Spool(root / "spool"), threading.Event()
        options = {"port": free_port(), "allow": (Caller(SENDER, LOOPBACK),), "min_free_bytes": 0, **settings}
        self.settings = NodeSettings(**options)
        self.server = start_node(self.settings, self.spool, self.wake.set)
        self.peer = Peer(self.settings.ae_title, LOOPBACK, self.settings.port)

    def send(self, paths: list[Path], caller: str = SENDER, tls: TlsFiles | None = None):
        return c_store_files(paths, self.peer, calling_ae=caller, tls=tls, timeout_s=10)

    def close(self) -> None:
        self.server.shutdown()
        self.spool.close()


@pytest.fixture
def node(tmp_path: Path):
    started: list[Node] = []

    def start(**settings) -> Node:
        started.append(Node(tmp_path / f"node{len(started)}", **settings))
        return started[-1]

    yield start
    for item in started:
        item.close()


def test_only_callers_on_the_allow_list_may_associate(node, images):
    one = dicoms(images)[:1]
    listed = node()
    assert [status.ok for status in listed.send(one)] == [True]
    (stranger,) = listed.send(one, caller="STRANGER")
    assert not stranger.ok and "rejected the association" in stranger.detail and "Calling AE title" in stranger.detail
    (misdirected,) = c_store_files(one, Peer("OTHERNODE", LOOPBACK, listed.settings.port), calling_ae=SENDER)
    assert not misdirected.ok and "Called AE title" in misdirected.detail
    nobody = node(allow=())
    assert not nobody.send(one)[0].ok
    anybody = node(allow=(), allow_any=True)
    assert anybody.send(one, caller="ANYONE")[0].ok


def test_a_ct_is_refused_an_sr_ignored_and_a_broken_file_refused(node, images, tmp_path):
    ct = build_dataset(np.zeros((32, 32), np.uint8), "ct")
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ct.Modality = "CT"
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    sc_ct = build_dataset(np.zeros((32, 32), np.uint8), "scct")
    sc_ct.Modality = "CT"
    sc_ct.save_as(tmp_path / "sc-ct.dcm", enforce_file_format=True)
    (sr,) = [p for p in ResultsWriter(tmp_path / "results").write(dicoms(images)[0], ROWS) if p.parent.name == "sr"]
    good = dicoms(images)[1]
    broken = tmp_path / "broken.dcm"
    mismatch = pydicom.dcmread(good)
    mismatch.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"  # so the C-STORE request names another instance
    mismatch.save_as(broken)
    listen = node()
    statuses = listen.send([tmp_path / "ct.dcm", tmp_path / "sc-ct.dcm", sr, broken, good])
    assert [status.detail.split()[0] for status in statuses] == ["0x0122", "0xC000", "0x0000", "0xC000", "0x0000"]
    assert listen.spool.counts() == {"queued": 1} and [p.name for p in listen.spool.images.iterdir()] == [
        f"{sop_uid(good)}.dcm"
    ]


def test_a_data_set_that_cannot_be_parsed_is_refused_never_raised(images):
    from pneumo_yolo.pacs.node import _checked_file

    meta = pydicom.dcmread(dicoms(images)[0], stop_before_pixels=True).file_meta
    for data in (b"", b"\x08\x00\x16\x00\xff\xff\xff\x7fgarbage", b"\x00" * 7):
        kept, problem = _checked_file(
            meta, data, str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID)
        )
        assert kept == b"" and problem


def test_the_same_image_sent_again_is_kept_once(node, images):
    listen = node()
    path = dicoms(images)[0]
    assert [s.ok for s in listen.send([path]) + listen.send([path])] == [True, True]
    assert listen.spool.counts() == {"queued": 1}


def test_a_spool_disk_below_the_watermark_refuses_associations(node, images):
    (status,) = node(min_free_bytes=2**62).send(dicoms(images)[:1])
    assert not status.ok and "rejected the association" in status.detail and "Local limit exceeded" in status.detail


def test_a_spool_that_cannot_write_answers_out_of_resources(node, images, monkeypatch):
    import errno

    listen = node()

    def full(*args) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(listen.spool, "accept", full)
    (status,) = listen.send(dicoms(images)[:1])
    assert status.detail.startswith("0xA700")


def test_a_file_over_max_mb_is_refused_out_of_resources(node, images):
    (status,) = node(max_bytes=1000).send(dicoms(images)[:1])
    assert status.detail.startswith("0xA700")


def test_tls_with_mutual_certificates(node, images, tmp_path):
    certs = make_certs(tmp_path / "certs")
    server = TlsFiles(certs["node.pem"], certs["node.key"], certs["ca.pem"])
    client = TlsFiles(certs["client.pem"], certs["client.key"], certs["ca.pem"])
    listen = node(tls=server)
    one = dicoms(images)[:1]
    assert listen.send(one, tls=client)[0].ok
    assert not listen.send(one)[0].ok  # plain TCP
    stranger = TlsFiles(certs["client.pem"], certs["client.key"], certs["client.pem"])  # trusts no CA of the node
    assert not listen.send(one, tls=stranger)[0].ok
    assert listen.spool.counts() == {"queued": 1}


def test_a_destination_that_is_down_is_retried_with_backoff_and_served_when_back(node, images):
    listen = node()
    receiver = Receiver()
    now = [1000.0]
    worker = Worker(
        listen.spool,
        StandIn(listen.spool.results),
        Destination(peer=Peer("PACS", LOOPBACK, receiver.port)),
        batch=4,
        backoff=Backoff(2, 8),
        clock=lambda: now[0],
    )
    assert all(s.ok for s in listen.send(dicoms(images)[:2]))
    assert worker.step() and listen.spool.counts() == {"predicted": 2}
    assert not list(listen.spool.images.iterdir())
    receiver.start()
    try:
        worker.step()
        assert receiver.received == []  # not yet due: 2 s after the first failure
        now[0] += 2.5
        worker.step()
        assert listen.spool.counts() == {"delivered": 2}
        assert (
            sorted(receiver.kinds())
            == ["Comprehensive SR Storage"] * 2 + ["Grayscale Softcopy Presentation State Storage"] * 2
        )
        assert listen.send(dicoms(images)[:1])[0].ok and not worker.step()  # sent again: nothing new
        assert len(receiver.received) == 4
    finally:
        receiver.stop()
    assert not list(listen.spool.results.rglob("*.dcm"))


def test_results_go_by_stow_with_credentials_from_the_environment(node, images, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str]] = []

    class Stow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), Stow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PNEUMO_YOLO_STOW_AUTH", "reader:pa55")
    listen = node()
    url = f"http://{LOOPBACK}:{server.server_port}/dicom-web"
    worker = Worker(listen.spool, StandIn(listen.spool.results), Destination(stow=url), batch=4)
    try:
        assert listen.send(dicoms(images)[:1])[0].ok and worker.step()
    finally:
        server.shutdown()
    assert listen.spool.counts() == {"delivered": 1}
    assert seen == [("/dicom-web/studies", "Basic cmVhZGVyOnBhNTU=")] * 2  # the SR and the GSPS


def test_an_image_that_cannot_be_predicted_is_recorded_failed_and_never_retried(node, images):
    class Failing(StandIn):
        def predict(self, paths: list[Path]) -> DeviceOutput:
            self.calls += 1
            return DeviceOutput(errors=[(str(path), "cannot decode the pixel data") for path in paths])

    listen = node()
    failing = Failing(listen.spool.results)
    worker = Worker(listen.spool, failing, Destination(peer=Peer("PACS", LOOPBACK, free_port())), batch=4)
    assert listen.send(dicoms(images)[:1])[0].ok
    assert worker.step() and not worker.step() and failing.calls == 1
    assert listen.spool.counts() == {"failed": 1} and not list(listen.spool.images.iterdir())


def test_the_spool_is_held_by_one_node_and_keeps_its_record(tmp_path, images):
    spool = Spool(tmp_path / "spool")
    with pytest.raises(SpoolError, match="in use by another running node"):
        Spool(tmp_path / "spool")
    assert spool.accept("1.2.3", dicoms(images)[0].read_bytes())
    spool.close()
    (tmp_path / "spool/images/9.9.9.dcm").write_bytes(b"never acknowledged")
    again = Spool(tmp_path / "spool")
    assert again.counts() == {"queued": 1} and again.state("1.2.3") == "queued" and not again.accept("1.2.3", b"")
    assert [p.name for p in again.images.iterdir()] == ["1.2.3.dcm"]
    again.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--return-to", "PACS@127.0.0.1"), "has no port"),
        (("--return-to", "PACS@127.0.0.1:104", "--stow", "http://127.0.0.1/dicom-web"), "exactly one of --return-to"),
        (("--return-to", "PACS@127.0.0.1:104", "--allow", "PACS@127.0.0.1:104"), "give no port in an --allow entry"),
        (("--return-to", "PACS@127.0.0.1:104", "--tls-cert", "{file}"), "missing --tls-key, --tls-ca"),
    ],
)
def test_listen_usage_errors_exit_2_before_loading_anything(tmp_path, args, message):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"never loaded")
    args = tuple(arg.replace("{file}", str(weights)) for arg in args)
    command = [str(SCRIPT), "listen", "--weights", str(weights), "--spool", str(tmp_path / "spool"), *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


def start_listen(weights: Path, spool: Path, port: int, receiver: Receiver) -> tuple[subprocess.Popen, LineReader]:
    """``pneumo-yolo listen`` by the console script, once it says it listens."""
    command = [str(SCRIPT), "listen", "--weights", str(weights), "--device", "cpu", "--batch", "4"]
    command += ["--port", str(port), "--allow", f"{SENDER}@{LOOPBACK}", "--return-to", receiver.address]
    command += ["--spool", str(spool), "--min-free-mb", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = LineReader(process)
    lines.wait_for("listening as")
    return process, lines


def send_script(folder: Path, port: int) -> subprocess.CompletedProcess:
    command = [str(SCRIPT), "send", str(folder), "--to", f"PNEUMOYOLO@{LOOPBACK}:{port}", "--ae-title", SENDER]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def stop(process: subprocess.Popen, lines: LineReader) -> tuple[int, str]:
    """SIGTERM, then the exit code and stdout once every stderr line is read."""
    process.send_signal(signal.SIGTERM)
    out = process.stdout.read() if process.stdout else ""
    process.wait(timeout=120)
    lines.thread.join(30)
    return process.returncode, out


def spool_states(spool: Path) -> dict[str, int]:
    with sqlite3.connect(spool / "spool.sqlite") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM images GROUP BY state").fetchall())


def test_listen_returns_predicts_boxes_into_each_study_and_sigterm_ends_after_the_batch(model, images, tmp_path):
    receiver, port, spool = Receiver().start(), free_port(), tmp_path / "spool"
    try:
        process, lines = start_listen(model, spool, port, receiver)
        assert send_script(images, port).returncode == 0
        code, out = stop(process, lines)  # while the first batch is being predicted
        assert code == 0 and "stopping: the current batch is done" in lines.text(), lines.text()
        states = spool_states(spool)
        assert sum(states.values()) == 6 and states.get("delivered", 0) >= 1, out
        process, lines = start_listen(model, spool, port, receiver)  # resumes the rest
        lines.wait_for("delivered the results of", count=6 - states["delivered"])
        before = len(receiver.received)
        assert send_script(images, port).returncode == 0
        lines.wait_for("again: already delivered, nothing new", count=6)
        code, out = stop(process, lines)
    finally:
        receiver.stop()
    assert code == 0 and "stopped; spool: 6 delivered" in out
    assert len(receiver.received) == before == 12  # an SR and a GSPS per image (this model finds boxes on every one)
    predicted = tmp_path / "predict.csv"
    run = subprocess.run(
        [str(SCRIPT), "predict", "--weights", str(model), "--source", str(images), "--out", str(predicted)]
        + ["--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(predicted, keep_default_na=False).set_index("patientId")
    sources = {sop_uid(path): path for path in dicoms(images)}
    srs = [ds for kind, ds, _ in receiver.received if kind == "Comprehensive SR Storage"]
    assert sorted(ds.SOPInstanceUID for ds in srs) == sorted({ds.SOPInstanceUID for ds in srs})
    for ds in srs:
        path = tmp_path / "sr.dcm"
        ds.save_as(path, enforce_file_format=True)
        lines_, certainty, references = sr_boxes(path)
        (source_uid,) = set(references)
        source = sources[source_uid]
        assert ds.StudyInstanceUID == pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
        rows = parse_prediction_string(table.loc[source.stem, "PredictionString"])
        np.testing.assert_allclose(lines_, corners(rows), atol=CSV_TOLERANCE)
        assert certainty == pytest.approx((rows[:, 0] * 100).tolist(), abs=0.011)
    assert "PatientName" not in lines.text() and not any(p.stem in lines.text() for p in dicoms(images))


def test_two_lanes_answer_batches_in_order_and_a_killed_models_process_fails_only_what_it_held(model, images, tmp_path):
    import psutil

    from pneumo_yolo.predict.device import PredictError, PredictSettings
    from pneumo_yolo.predict.process import PredictorProcess
    from pneumo_yolo.runtime.devices import CPU

    paths = dicoms(images)
    settings = PredictSettings(weights=(model,), dicom_out=tmp_path / "out", progress=False, workers=0)
    models = PredictorProcess(settings, CPU, lanes=2)
    try:
        for start in (0, 2, 4):
            models.submit(paths[start : start + 2])
        outputs = [models.collect() for _ in range(3)]
        assert [sorted(output.strings) for output in outputs] == [[p.stem for p in paths[s : s + 2]] for s in (0, 2, 4)]
        models.submit(paths)
        together = models.collect().strings
        assert {stem: text for output in outputs for stem, text in output.strings.items()} == together
        assert all(together.values())  # the raised logits give every image boxes

        (child,) = [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]
        models.submit(paths[:2])
        models.submit(paths[2:4])
        child.kill()
        for _ in range(2):
            with pytest.raises(PredictError, match="ended abruptly"):
                models.collect()
        models.submit(paths[:1])  # starts it again
        assert models.collect().strings == {paths[0].stem: together[paths[0].stem]}
    finally:
        models.close()
    assert not [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]
