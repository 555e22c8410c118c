"""The ingest log: ``/v1/*`` appends validated events here and answers 200 once they are durable; the applier
(``tsunagu.events.applier``) reads them in order and applies them behind.

Two stores, one interface (``IngestLog``):

- **SQLite** (the embedded default): a database file of its own beside the main one. Appends then never
  wait behind the applier's long transactions on the main database, which is what kept acknowledgement
  latency low. Durability is grouped *across threads and processes*: a commit is written to the log's WAL
  without an fsync (synchronous=NORMAL), then the appender makes the WAL durable up to its own record —
  unless another thread or process has already fsync'd past it. A small shared file holds two counters
  (last appended id, last durable id) so that one fsync covers every record appended before it, whichever
  process wrote it. ``PRAGMA synchronous=NORMAL`` still fsyncs the WAL before every checkpoint, and a
  checkpoint is the only thing that lets SQLite restart the WAL, so a record made durable by our fsync
  cannot be lost by a later WAL reset.
- **PostgreSQL**: the ``events_logentry`` table in the main database. Commits are durable on their own
  (PostgreSQL groups concurrent WAL flushes itself), and the applier deletes what it applied in the same
  transaction — ids there are assigned before commit, so "everything after position N" would miss a row
  whose transaction commits late; deleting consumed rows has no such gap.

Raw SQL on purpose: this is the hot path of every SDK call (see docs/performance.md).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import connection

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: only threads of one process are grouped
    fcntl = None  # type: ignore[assignment]

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


@dataclass(slots=True)
class Record:
    id: int
    workspace_id: int
    source_id: int
    received_at: dt.datetime
    count: int
    body: bytes


class IngestLog(Protocol):
    def append(self, *, workspace_id: int, source_id: int, received_at: dt.datetime, count: int, body: bytes) -> int:
        """Store one request's events; return its id once it is durable."""

    def read(self, *, workspace_id: int, after: int, max_events: int) -> list[Record]:
        """Records of a workspace past ``after``, in order, up to about ``max_events`` events (at least one
        record when there is one)."""

    def consumed(self, *, workspace_id: int, ids: list[int]) -> None:
        """Inside the applier's transaction: the records it applied."""

    def trim(self, *, workspace_id: int, position: int) -> None:
        """After the applier's commit: drop records up to ``position``."""

    def pending(self, *, workspace_id: int, after: int) -> tuple[int, dt.datetime | None]:
        """Events not yet applied, and the receive time of the oldest of them."""

    def workspaces(self) -> list[int]:
        """Workspaces with records in the log."""


def _micros(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


@contextmanager
def _flocked(fd: int | None) -> Iterator[None]:
    if fd is None or fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id INTEGER NOT NULL,
    source_id INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_ws ON log (workspace_id, id);
"""
# AUTOINCREMENT: without it SQLite reuses the largest rowid once its row is deleted, and a reused id at or
# below an applier's position would never be applied.

_COUNTERS = struct.Struct("<qq")  # (appended, durable), in the shared ``.sync`` file


class SqliteLog:
    """The ingest log in an SQLite file of its own (see the module docstring for the durability scheme)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()  # one appender per process at a time (flock orders processes)
        self._sync_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._conn = self._connect()
        with self._write_lock:
            self._conn.executescript(_SCHEMA)
        self._reader = self._connect()
        self._durable = 0
        # Opened only now: the WAL exists (the schema write created it) and stays while this process keeps
        # its connection open, so the descriptor always names the live WAL file.
        self._wal_fd = os.open(f"{path}-wal", os.O_RDONLY)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._sync_fd = os.open(f"{path}.sync", os.O_RDWR | os.O_CREAT, 0o600)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: commits do not fsync; ``append`` fsyncs the WAL itself, once for many records.
        conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints copy the WAL into the file with fsyncs of their own: run them rarely and, normally,
        # from the applier (``trim``), not inside an appending request.
        conn.execute("PRAGMA wal_autocheckpoint=20000")
        return conn

    # -- counters shared by every process appending to this log ------------------------------------------
    def _counters(self) -> tuple[int, int]:
        raw = os.pread(self._sync_fd, _COUNTERS.size, 0)
        return _COUNTERS.unpack(raw) if len(raw) == _COUNTERS.size else (0, 0)

    def _set_appended(self, value: int) -> None:
        os.pwrite(self._sync_fd, struct.pack("<q", value), 0)

    def _set_durable(self, value: int) -> None:
        os.pwrite(self._sync_fd, struct.pack("<q", value), 8)

    def append(self, *, workspace_id: int, source_id: int, received_at: dt.datetime, count: int, body: bytes) -> int:
        with self._write_lock, _flocked(self._lock_fd):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "INSERT INTO log (workspace_id, source_id, received_us, n, body) VALUES (?, ?, ?, ?, ?)",
                    (workspace_id, source_id, _micros(received_at), count, body),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            record_id = int(cursor.lastrowid or 0)
            # Under the append lock, so the shared counter only ever grows.
            self._set_appended(record_id)
        self._make_durable(record_id)
        return record_id

    def _make_durable(self, record_id: int) -> None:
        """Return once the WAL is on disk at least up to ``record_id``: fsync it ourselves, or find that
        another appender (thread or process) already has."""
        with self._sync_lock:
            if self._durable >= record_id:
                return
            with _flocked(self._sync_fd):
                appended, durable = self._counters()
                if durable < record_id:
                    # Everything appended so far is in the WAL file already: one fsync covers it all.
                    target = max(appended, record_id)
                    os.fsync(self._wal_fd)
                    self._set_durable(target)
                    durable = target
            self._durable = durable

    def read(self, *, workspace_id: int, after: int, max_events: int) -> list[Record]:
        out: list[Record] = []
        total = 0
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT id, source_id, received_us, n, body FROM log WHERE workspace_id = ? AND id > ? ORDER BY id",
                (workspace_id, after),
            )
            for rid, source_id, received_us, n, body in rows:
                if out and total + n > max_events:
                    break
                out.append(Record(rid, workspace_id, source_id, _from_micros(received_us), n, body))
                total += n
            rows.close()
        return out

    def consumed(self, *, workspace_id: int, ids: list[int]) -> None:
        return None  # the position in the main database is the truth; ``trim`` removes the rows later

    def trim(self, *, workspace_id: int, position: int) -> None:
        with self._write_lock, _flocked(self._lock_fd):
            self._conn.execute("DELETE FROM log WHERE workspace_id = ? AND id <= ?", (workspace_id, position))
        # Outside the append lock: a passive checkpoint never blocks appenders, and keeps the WAL (and the
        # time of the checkpoint an append would otherwise run) small.
        try:
            with self._read_lock:
                self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:
            pass  # another process is checkpointing

    def pending(self, *, workspace_id: int, after: int) -> tuple[int, dt.datetime | None]:
        with self._read_lock:
            n, oldest = self._reader.execute(
                "SELECT coalesce(sum(n), 0), min(received_us) FROM log WHERE workspace_id = ? AND id > ?",
                (workspace_id, after),
            ).fetchone()
        return int(n), (_from_micros(oldest) if oldest is not None else None)

    def workspaces(self) -> list[int]:
        with self._read_lock:
            return [row[0] for row in self._reader.execute("SELECT DISTINCT workspace_id FROM log")]

    def close(self) -> None:
        for conn in (self._conn, self._reader):
            conn.close()
        for fd in (self._wal_fd, self._lock_fd, self._sync_fd):
            os.close(fd)


class PostgresLog:
    """The ingest log as the ``events_logentry`` table of the main PostgreSQL database."""

    table = "events_logentry"

    def append(self, *, workspace_id: int, source_id: int, received_at: dt.datetime, count: int, body: bytes) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {self.table} (workspace_id, source_id, received_at, count, body) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                [workspace_id, source_id, received_at, count, body],
            )
            (record_id,) = cursor.fetchone()
        # Autocommit (no transaction is open in a /v1 request): the INSERT is committed — flushed to
        # PostgreSQL's WAL — when execute returns.
        return int(record_id)

    def read(self, *, workspace_id: int, after: int, max_events: int) -> list[Record]:
        # ``after`` is not used: rows are deleted when applied, so all that is left is pending. The ids and
        # counts come first, so that the chunk is bounded by events (a record holds 1 to 500+ of them) and
        # only the bodies of the chosen records are fetched.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, count FROM {self.table} WHERE workspace_id = %s ORDER BY id LIMIT %s",  # noqa: S608
                [workspace_id, max(1, max_events)],
            )
            chosen: list[int] = []
            total = 0
            for rid, n in cursor.fetchall():
                if chosen and total + n > max_events:
                    break
                chosen.append(rid)
                total += n
            if not chosen:
                return []
            cursor.execute(
                f"SELECT id, source_id, received_at, count, body FROM {self.table} "  # noqa: S608
                "WHERE id = ANY(%s) ORDER BY id",
                [chosen],
            )
            return [
                Record(rid, workspace_id, source_id, received_at, n, bytes(body))
                for rid, source_id, received_at, n, body in cursor.fetchall()
            ]

    def consumed(self, *, workspace_id: int, ids: list[int]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.table} WHERE id = ANY(%s)", [ids])  # noqa: S608

    def trim(self, *, workspace_id: int, position: int) -> None:
        return None  # ``consumed`` deleted the rows in the applier's transaction

    def pending(self, *, workspace_id: int, after: int) -> tuple[int, dt.datetime | None]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT coalesce(sum(count), 0), min(received_at) FROM {self.table} WHERE workspace_id = %s",  # noqa: S608
                [workspace_id],
            )
            n, oldest = cursor.fetchone()
        return int(n), oldest

    def workspaces(self) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT workspace_id FROM {self.table}")  # noqa: S608
            return [row[0] for row in cursor.fetchall()]


_logs: dict[tuple[int, str], SqliteLog] = {}
_logs_lock = threading.Lock()
_postgres = PostgresLog()


def sqlite_log_path() -> Path:
    """Where the SQLite ingest log lives: ``TSUNAGU_INGEST_LOG``, else ``ingest-log.sqlite3`` in the data
    directory."""
    configured: Any = getattr(settings, "TSUNAGU_INGEST_LOG", None)
    return Path(configured) if configured else Path(settings.DATA_DIR) / "ingest-log.sqlite3"


def logs_close(path: Path | str | None = None) -> None:
    """Close this process's SQLite logs (of ``path`` only, when given): for tests and benchmarks that
    replace the log's file, so the next ``get_log`` opens it afresh."""
    with _logs_lock:
        for key in [k for k in _logs if path is None or k[1] == str(path)]:
            _logs.pop(key).close()


def get_log() -> IngestLog:
    """The ingest log of this process's database (one SQLite log object per process and path: a forked
    process opens its own descriptors and connections)."""
    if connection.vendor == "postgresql":
        return _postgres
    path = sqlite_log_path()
    key = (os.getpid(), str(path))
    log = _logs.get(key)
    if log is None:
        with _logs_lock:
            log = _logs.get(key)
            if log is None:
                log = _logs[key] = SqliteLog(path)
    return log
