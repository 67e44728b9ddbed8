"""send: DICOM files to a node by C-STORE or to a DICOMweb server by STOW-RS, with a status per file (console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest

from .conftest import make_rsna_folder
from .pacs_helpers import LOOPBACK, SCRIPT, Receiver, free_port

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def n_sent(run: subprocess.CompletedProcess) -> int:
    return sum(line.startswith("sent ") for line in run.stdout.splitlines())


def send(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "send", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four RSNA-format (Secondary Capture, JPEG Baseline) DICOMs."""
    return make_rsna_folder(tmp_path_factory.mktemp("send") / "rsna", n=3).images


def test_each_file_gets_a_status_and_a_rerun_sends_what_failed(images):
    receiver = Receiver()
    down = send(str(images), "--to", receiver.address)
    assert down.returncode == 1
    assert down.stderr.count("FAILED") == 4 and "4 file(s) not sent" in down.stderr
    assert all(path.name in down.stderr for path in images.glob("*.dcm"))
    receiver.start()
    try:
        again = send(str(images), "--to", receiver.address)
    finally:
        receiver.stop()
    assert again.returncode == 0, again.stderr
    assert n_sent(again) == 4 and "4 of 4 file(s) sent" in again.stdout
    assert sorted(ds.SOPInstanceUID for _, ds, _ in receiver.received) == sorted(
        pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in images.glob("*.dcm")
    )
    assert {syntax for _, _, syntax in receiver.received} == {JPEG_BASELINE}  # sent as it is, not re-encoded


def test_a_file_that_is_not_dicom_is_named_and_the_others_are_sent(images, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(images, folder)
    (folder / "notes.dcm").write_text("not DICOM")
    receiver = Receiver().start()
    try:
        run = send(str(folder), "--to", receiver.address)
    finally:
        receiver.stop()
    assert run.returncode == 1
    assert "FAILED" in run.stderr and "notes.dcm" in run.stderr and "1 file(s) not sent" in run.stderr
    assert len(receiver.received) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give exactly one of --to"),
        (("--to", "PACS@127.0.0.1"), "has no port"),
        (("--to", "P\\X@127.0.0.1:104"), "not a valid AE title"),
        (("--stow", "ftp://x/dicom-web"), "not a DICOMweb URL"),
        (("--to", "PACS@127.0.0.1:104", "--tls-ca", "{file}"), "missing --tls-cert, --tls-key"),
    ],
)
def test_usage_errors_exit_2_with_one_line(images, args, message):
    some_file = str(next(images.glob("*.dcm")))
    run = send(str(images), *(arg.replace("{file}", some_file) for arg in args))
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


class _Stow(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers.get("Authorization", ""), self.headers["Content-Type"]))
        refuse = len(type(self).seen) == 2
        body = json.dumps({}).encode()
        self.send_response(409 if refuse else 200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_stow_sends_each_file_with_credentials_from_a_file_named_by_the_environment(images, tmp_path):
    server = ThreadingHTTPServer((LOOPBACK, free_port()), _Stow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "token"
    secret.write_text("Bearer s3cret\n")
    env = {"PATH": "/usr/bin:/bin", "PNEUMO_YOLO_STOW_AUTH_FILE": str(secret)}
    try:
        run = send(str(images), "--stow", f"http://{LOOPBACK}:{server.server_port}/dicom-web/", env=env)
    finally:
        server.shutdown()
    assert run.returncode == 1 and "STOW-RS answered HTTP 409" in run.stderr and n_sent(run) == 3
    assert [(path, auth) for path, auth, _ in _Stow.seen] == [("/dicom-web/studies", "Bearer s3cret")] * 4
    assert all(kind.startswith("multipart/related") for _, _, kind in _Stow.seen)
    assert "s3cret" not in run.stdout + run.stderr
