"""The node's spool: received images named by SOP Instance UID, their results, and a SQLite record of each one's state.

::

    SPOOL/
      spool.sqlite        one row per accepted image: state, attempts, next try, problem
      images/<SOP Instance UID>.dcm       received, not yet predicted
      results/sr/<SOP Instance UID>.dcm   predicted, not yet delivered (and results/gsps/ where there are boxes)
      lock                held by the one node that uses the spool

An image goes ``queued`` (its file written, then its row committed, then the C-STORE answered)
→ ``predicted`` (its results written, its row updated, then its image removed) → ``delivered``
(its results sent, its row updated, then its results removed); ``failed`` when it cannot be
predicted. The row outlives the files, so the same image sent again is recognised and makes no
new result. Each step commits before the files it no longer needs are removed, so a node killed
at any moment resumes where it stopped: at worst it predicts or delivers an image once more,
which makes the same objects again (their UIDs derive from the source's).
"""

from __future__ import annotations

import fcntl
import json
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_bytes, remove_stale_temp_files

QUEUED, PREDICTED, DELIVERED, FAILED = "queued", "predicted", "delivered", "failed"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    sop_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    received REAL NOT NULL,
    predicted REAL,
    delivered REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    results TEXT NOT NULL DEFAULT '[]',
    problem TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS images_state ON images (state, next_try);
"""


_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_uid(text: str) -> bool:
    """Whether ``text`` is a valid DICOM UID (digits and dots, at most 64 characters), and so a safe file name.

    >>> is_uid("1.2.840.10008.5.1.4.1.1.7"), is_uid("../1.2"), is_uid("1.02")
    (True, False, False)
    """
    return len(text) <= 64 and _UID.fullmatch(text) is not None


class SpoolError(RuntimeError):
    """A spool that cannot be used: not writable, or held by another node."""


@dataclass(frozen=True)
class Pending:
    """A predicted image whose results wait for delivery."""

    sop_uid: str
    results: list[Path]
    attempts: int


class Spool:
    """The spool folder and its record; safe to use from the node's threads and the worker at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
        self.results = self.root / "results"
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self.results.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.root / "lock", "a")  # noqa: SIM115  (held for the spool's life)
        except OSError as error:
            raise SpoolError(f"--spool {self.root} cannot be used ({error})") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise SpoolError(f"--spool {self.root} is in use by another running node") from None
        self._db = sqlite3.connect(self.root / "spool.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._recover()

    def close(self) -> None:
        """Close the record and let another node use the spool."""
        with self._lock:
            self._db.close()
        self._lock_file.close()

    def _recover(self) -> None:
        """Remove what a killed node left half-done: temporary files, and images never acknowledged (no row)."""
        remove_stale_temp_files(self.root)
        known = {row[0] for row in self._db.execute("SELECT sop_uid FROM images WHERE state = ?", (QUEUED,))}
        for path in self.images.glob("*.dcm"):
            if path.stem not in known:
                path.unlink(missing_ok=True)

    def image_path(self, sop_uid: str) -> Path:
        """Where a received image waits for prediction; a ``sop_uid`` that is not a UID is a ``ValueError``."""
        if not is_uid(sop_uid):
            raise ValueError(f"{sop_uid!r} is not a valid UID")
        return self.images / f"{sop_uid}.dcm"

    def state(self, sop_uid: str) -> str | None:
        """The image's state, ``None`` if it was never accepted."""
        with self._lock:
            row = self._db.execute("SELECT state FROM images WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return row[0] if row else None

    def accept(self, sop_uid: str, data: bytes) -> bool:
        """Keep a received file (atomically) and queue it; ``False`` (nothing written) if this image was accepted before."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM images WHERE sop_uid = ?", (sop_uid,)).fetchone():
                return False
            atomic_write_bytes(self.image_path(sop_uid), data)
            self._db.execute(
                "INSERT INTO images (sop_uid, state, received) VALUES (?, ?, ?)", (sop_uid, QUEUED, time.time())
            )
        return True

    def queued(self, limit: int) -> list[str]:
        """The oldest ``limit`` images waiting for prediction."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_uid FROM images WHERE state = ? ORDER BY received LIMIT ?", (QUEUED, limit)
            ).fetchall()
        return [row[0] for row in rows]

    def record_batch(self, results: Mapping[str, list[Path]], problems: Mapping[str, str]) -> None:
        """Record a batch in one commit: each predicted image's results (already written), each failed one's problem.

        Their image files are then removed. One commit per batch, not per image: each commit
        waits for the disk (3.5 ms here), and the models wait for this.
        """
        now = time.time()
        rows = [(PREDICTED, now, self._names(paths), "", uid) for uid, paths in results.items()]
        rows += [(FAILED, 0.0, "[]", problem, uid) for uid, problem in problems.items()]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "UPDATE images SET state = ?, predicted = ?, results = ?, problem = ?, next_try = 0 WHERE sop_uid = ?",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        for uid in [*results, *problems]:
            self.image_path(uid).unlink(missing_ok=True)

    def _names(self, paths: list[Path]) -> str:
        return json.dumps([str(Path(path).relative_to(self.root)) for path in paths])

    def due(self, now: float, limit: int = 64) -> list[Pending]:
        """The (at most ``limit``) predicted images whose delivery is due at ``now``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_uid, results, attempts FROM images WHERE state = ? AND next_try <= ? "
                "ORDER BY predicted LIMIT ?",
                (PREDICTED, now, limit),
            ).fetchall()
        return [
            Pending(uid, [self.root / name for name in json.loads(names)], attempts) for uid, names, attempts in rows
        ]

    def next_due(self) -> float | None:
        """When the next delivery retry is due, ``None`` if nothing waits."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try) FROM images WHERE state = ?", (PREDICTED,)).fetchone()
        return row[0]

    def mark_delivered(self, pending: Pending) -> None:
        """Record a delivery; the results are then removed."""
        with self._lock:
            self._db.execute(
                "UPDATE images SET state = ?, delivered = ?, problem = '' WHERE sop_uid = ?",
                (DELIVERED, time.time(), pending.sop_uid),
            )
        for path in pending.results:
            path.unlink(missing_ok=True)

    def mark_retry(self, pending: Pending, problem: str, next_try: float) -> None:
        """Record a failed delivery and when to try again."""
        with self._lock:
            self._db.execute(
                "UPDATE images SET attempts = attempts + 1, next_try = ?, problem = ? WHERE sop_uid = ?",
                (next_try, problem, pending.sop_uid),
            )

    def counts(self) -> dict[str, int]:
        """How many images are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM images GROUP BY state").fetchall()
        return dict(rows)
