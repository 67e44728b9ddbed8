"""Peers for the PACS tests: free loopback ports, a pynetdicom receiver standing in for a PACS, throwaway TLS certificates."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class Receiver:
    """A storage SCP that keeps what it receives: ``(SOP class name, dataset, transfer syntax)`` per C-STORE."""

    ae_title: str = "PACS"
    port: int = field(default_factory=free_port)
    received: list = field(default_factory=list)
    server: object = None

    def start(self, ssl_context=None) -> Receiver:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        def keep(event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received.append((event.request.AffectedSOPClassUID.name, ds, event.context.transfer_syntax))
            return 0x0000

        ae = AE(self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.server = ae.start_server(
            (LOOPBACK, self.port), block=False, ssl_context=ssl_context, evt_handlers=[(evt.EVT_C_STORE, keep)]
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{LOOPBACK}:{self.port}"

    def kinds(self) -> list[str]:
        return [name for name, _, _ in self.received]

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        """Wait until ``n`` objects arrived."""
        end = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < end, f"{len(self.received)} of {n} objects arrived in {timeout} s"
            time.sleep(0.05)


def make_certs(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a node certificate for 127.0.0.1 and a client certificate, signed by it (openssl CLI, EC keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test CA")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("node", "client"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.ext"]
        run("x509", "-req", "-in", f"{name}.csr", *sign, "-out", f"{name}.pem")
    return {name: folder / name for name in ("ca.pem", "node.pem", "node.key", "client.pem", "client.key")}


class LineReader:
    """Collects a subprocess's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 180.0, count: int = 1) -> None:
        end = time.monotonic() + timeout
        while self.text().count(needle) < count:
            if self.process.poll() is not None and self.text().count(needle) < count:
                self.thread.join(2)
                raise AssertionError(f"the process ended ({self.process.returncode}) before {needle!r}:\n{self.text()}")
            assert time.monotonic() < end, f"no {needle!r} in {timeout} s:\n{self.text()}"
            time.sleep(0.05)
