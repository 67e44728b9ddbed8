"""A throwaway local Orthanc (Debian's ``/usr/sbin/Orthanc``) for the tests, the bench and the demo.

:class:`Orthanc` writes a configuration into a folder of its own (storage, index, log), picks free
loopback ports, starts the server, waits for ``GET /system``, and kills it by its PID when its
``with`` block ends; Linux also kills it if the process that started it dies. The DICOMweb plugin
is loaded; HTTP from other hosts is refused (``RemoteAccessAllowed``), and only the modalities it
is given may store into it or be sent to (``DicomAlwaysAllowStore`` off, host checked). Its REST helpers are the few routes a test needs: upload, send to a modality, find, list
and fetch instances. Every address is 127.0.0.1.

>>> with Orthanc(tmp / "orthanc", {"pneumo": Modality("PNEUMOYOLO", 11112)}) as pacs:  # doctest: +SKIP
...     pacs.store("pneumo", [pacs.upload(path)])
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
PORT_TRIES = 3


class OrthancError(RuntimeError):
    """Orthanc did not start, or a REST call failed (the message holds the route and Orthanc's answer)."""


class _PortTaken(OrthancError):
    """Another process took one of the ports between :func:`free_port` and Orthanc's start."""


@dataclass(frozen=True)
class Modality:
    """A DICOM node Orthanc knows: it may store into Orthanc, and Orthanc may send to it."""

    aet: str
    port: int
    host: str = HOST

    def as_config(self) -> dict[str, Any]:
        return {"AET": self.aet, "Host": self.host, "Port": self.port}


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until_listening(process: subprocess.Popen, port: int, seconds: float) -> str | None:
    """Wait until ``process`` accepts connections on ``port`` of the loopback; the problem if it exits or times out first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"it exited with {process.returncode}"
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return None
        except OSError:
            time.sleep(0.1)
    return f"it did not open port {port} within {seconds:.0f} s"


def config(
    folder: Path,
    http_port: int,
    dicom_port: int,
    aet: str,
    modalities: dict[str, Modality],
    stable_age_s: int,
    overwrite: bool = False,
    lua_scripts: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """The configuration of a private, loopback-only Orthanc whose files all live in ``folder``.

    ``overwrite``: a copy of a stored SOP Instance UID replaces it and counts as a change (Orthanc's
    default keeps the first copy silently), so that a test can count every object that arrives.
    ``lua_scripts``: Orthanc's Lua scripts, e.g. a routing rule that sends new radiographs to a modality.
    """
    storage = str(folder / "db")
    return {
        "Name": "pneumo-yolo-test",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomCheckCalledAet": True,
        "DicomModalities": {name: modality.as_config() for name, modality in modalities.items()},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": stable_age_s,
        "OverwriteInstances": overwrite,
        "LuaScripts": [str(path) for path in lua_scripts],
        "HttpsVerifyPeers": False,
    }


def _die_with_parent() -> None:
    """In the child before ``exec``: ask Linux for SIGKILL when the process that started Orthanc ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class Orthanc:
    """One Orthanc server in ``folder``, on free loopback ports kept across :meth:`stop` and :meth:`start`.

    ``modalities`` maps names (as in ``/modalities/<name>``) to the nodes it may exchange with;
    :meth:`set_modality` adds or changes one while it runs. A restart keeps the stored instances.
    ``overwrite``, ``lua_scripts``: see :func:`config`.
    """

    def __init__(
        self,
        folder: Path,
        modalities: dict[str, Modality] | None = None,
        aet: str = "ORTHANC",
        stable_age_s: int = 2,
        overwrite: bool = False,
        lua_scripts: tuple[Path, ...] = (),
        binary: Path = BINARY,
    ) -> None:
        self.folder = Path(folder)
        self.modalities = dict(modalities or {})
        self.aet = aet
        self.stable_age_s = stable_age_s
        self.overwrite = overwrite
        self.lua_scripts = tuple(Path(path).absolute() for path in lua_scripts)
        self.binary = binary
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False
        """Whether it has run once: its ports are then known to others and kept."""

    @property
    def url(self) -> str:
        """The REST root, ``http://127.0.0.1:<port>``; Orthanc Explorer is at ``<url>/app/explorer.html``."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def address(self) -> str:
        """Its DICOM address as ``AE@HOST:PORT``."""
        return f"{self.aet}@{HOST}:{self.dicom_port}"

    def start(self) -> Self:
        """Write the configuration, start the server, and return once ``/system`` answers.

        If a port was taken in the meantime, the first start tries new ones; a restart keeps its ports.
        """
        if not self.binary.is_file():
            raise OrthancError(
                f"{self.binary}: Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb)"
            )
        for attempt in range(PORT_TRIES):
            try:
                self._launch()
                break
            except _PortTaken:
                if self.started or attempt == PORT_TRIES - 1:
                    raise
                self.http_port, self.dicom_port = free_port(), free_port()
        self.started = True
        return self

    def _launch(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = config(
            self.folder,
            self.http_port,
            self.dicom_port,
            self.aet,
            self.modalities,
            self.stable_age_s,
            self.overwrite,
            self.lua_scripts,
        )
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(settings, indent=2))
        log = (self.folder / "orthanc.log").open("ab")
        with log:
            written = log.seek(0, 2)
            self.process = subprocess.Popen(
                [str(self.binary), str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready(written)

    def _wait_ready(self, log_offset: int) -> None:
        """Until ``/system`` answers; if Orthanc exits first, an error with what it logged from ``log_offset`` on."""
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with (self.folder / "orthanc.log").open("rb") as log:
                    log.seek(log_offset)
                    tail = log.read().decode(errors="replace")[-2000:]
                self.process = None
                problem = _PortTaken if "already in use" in tail else OrthancError
                raise problem(f"Orthanc exited while starting; the end of its log:\n{tail}")
            try:
                self.get("/system")
                return
            except OrthancError:
                time.sleep(0.05)
        self.stop()
        raise OrthancError(f"Orthanc did not answer {self.url}/system within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """SIGKILL to its PID, and wait for it to end.

        A throwaway server needs no clean stop, which takes Orthanc 3.5 s (its HTTP server looks for the
        stop every 2 s, its DICOM server every second). Its SQLite index survives the kill with every
        stored instance, so a restart on the same folder finds them all.
        """
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def request(self, method: str, route: str, body: bytes | None = None, content_type: str = "") -> bytes:
        """One REST call; an HTTP error or a refused connection raises :class:`OrthancError`."""
        headers = {"Content-Type": content_type} if content_type else {}
        call = urllib.request.Request(self.url + route, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(call, timeout=120) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise OrthancError(f"{method} {route}: HTTP {error.code} {detail}") from None
        except OSError as error:
            raise OrthancError(f"{method} {route}: {error}") from None

    def get(self, route: str) -> Any:
        return json.loads(self.request("GET", route))

    def post(self, route: str, payload: Any) -> Any:
        return json.loads(self.request("POST", route, json.dumps(payload).encode(), "application/json") or b"null")

    def upload(self, path: Path) -> str:
        """Store one DICOM file (``POST /instances``); its Orthanc instance ID."""
        answer = json.loads(self.request("POST", "/instances", Path(path).read_bytes(), "application/dicom"))
        return str(answer["ID"])

    def set_modality(self, name: str, modality: Modality) -> None:
        """Add or change a modality while the server runs (``PUT /modalities/<name>``); kept for restarts too."""
        self.modalities[name] = modality
        self.request("PUT", f"/modalities/{name}", json.dumps(modality.as_config()).encode(), "application/json")

    def echo(self, name: str) -> bool:
        """Whether a C-ECHO from Orthanc to the modality succeeds."""
        try:
            self.request("POST", f"/modalities/{name}/echo", b"{}", "application/json")
        except OrthancError:
            return False
        return True

    def store(self, name: str, resources: list[str]) -> dict[str, Any]:
        """Send instances, series or studies to a modality by C-STORE and wait for the end (as a routing rule would)."""
        answer: dict[str, Any] = self.post(f"/modalities/{name}/store", {"Resources": resources, "Synchronous": True})
        return answer

    def find(self, level: str, query: dict[str, str]) -> list[str]:
        """Orthanc IDs of the resources at ``level`` (``Study``, ``Series``, ``Instance``) that match ``query``."""
        return [str(found) for found in self.post("/tools/find", {"Level": level, "Query": query})]

    def instances(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every instance of one study (its Orthanc ID), or of the whole server, with its main DICOM tags."""
        if study is not None:
            return list(self.get(f"/studies/{study}/instances"))
        return [self.get(f"/instances/{found}") for found in self.get("/instances")]

    def instance_file(self, instance: str) -> bytes:
        """The stored DICOM file of one instance, as Orthanc keeps it."""
        return self.request("GET", f"/instances/{instance}/file")

    def studies(self) -> list[str]:
        """Orthanc IDs of every study."""
        return [str(found) for found in self.get("/studies")]

    def new_instances(self, since: int = 0) -> tuple[list[str], int]:
        """Orthanc IDs of the instances stored (or, with ``overwrite``, stored again) after change ``since``, and the last change."""
        found: list[str] = []
        while True:
            page = self.get(f"/changes?since={since}&limit=1000")
            found += [change["ID"] for change in page["Changes"] if change["ChangeType"] == "NewInstance"]
            since = int(page["Last"])
            if page["Done"]:
                return found, since

    def delete_everything(self) -> None:
        """Remove every stored patient (and so every study, series and instance)."""
        for patient in self.get("/patients"):
            self.request("DELETE", f"/patients/{patient}")
