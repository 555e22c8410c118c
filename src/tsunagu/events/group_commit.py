"""Group commit for ingestion on SQLite.

SQLite has one writer at a time, and with synchronous=FULL every commit ends in an fsync of the WAL and
the write of every page the transaction dirtied. Committing each request on its own made the commit the
largest cost of ingestion; so concurrent requests of one process share a transaction instead:

- a request queues its work and, if no thread of this process is writing, becomes the *leader*: it takes
  the process-wide write lock, then everything queued by then, runs each request's work in a savepoint of
  one transaction and commits once;
- the others (*followers*) wait; each returns once the commit that holds its events is done — so a 200 is
  still only ever sent for events that are on disk — or raises what its own work raised (its savepoint was
  rolled back; the rest of the group is unaffected), or the commit's error (nothing of the group stored).

Across processes (gunicorn workers) an ``flock`` on a file beside the database orders the leaders. Without
it they would meet in SQLite's busy handler, which polls with sleeps of up to 100 ms; a blocked ``flock``
wakes as soon as the lock is free, and the requests queued meanwhile make the next group larger.

Checkpoints (copying the WAL back into the database file, with its own fsyncs) would otherwise run inside
whichever commit crosses ``wal_autocheckpoint`` — half the cost of a commit under load. A thread per process
runs them instead, in the background (``_checkpoint_loop``): concurrently with the writers, and under the
write lock only when the WAL has grown past ``_WAL_RESET_PAGES`` so that the next writer can start it over.

Callers already inside a transaction (tests, the demo loader in its own atomic block) and PostgreSQL (real
row-level concurrency) do not use this path.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from django.db import transaction

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: in-process grouping only
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger(__name__)

_CHECKPOINT_EVERY = 0.2  # seconds
_WAL_RESET_PAGES = 8192  # 32 MB of 4 KB pages; ``wal_autocheckpoint`` (tsunagu.core.dburl) is twice that


class _Pending(Generic[T]):
    __slots__ = ("work", "done", "result", "error")

    def __init__(self, work: Callable[[], T]) -> None:
        self.work = work
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


_cond = threading.Condition()
_queue: list[_Pending[Any]] = []
_leading = False
_lock_file: tuple[int, int, str] | None = None  # (pid, fd, path): reopened after fork
_lock_guard = threading.Lock()


def applies(connection: Any) -> bool:
    """Whether ``run`` should be used: SQLite on a file, outside any transaction."""
    return (
        connection.vendor == "sqlite"
        and not connection.in_atomic_block
        and str(connection.settings_dict.get("NAME") or ":memory:") != ":memory:"
        and "mode=memory" not in str(connection.settings_dict.get("NAME"))
    )


def _lock_fd(db_path: str) -> int | None:
    global _lock_file
    if fcntl is None:
        return None
    with _lock_guard:
        pid = os.getpid()
        if _lock_file is None or _lock_file[0] != pid or _lock_file[2] != db_path:
            # A descriptor inherited over fork shares the parent's lock: each process opens its own.
            fd = os.open(f"{db_path}-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
            _lock_file = (pid, fd, db_path)
        return _lock_file[1]


_checkpointer_pid = 0


def _start_checkpointer(db_path: str) -> None:
    global _checkpointer_pid
    if os.environ.get("TSUNAGU_WAL_CHECKPOINTER", "1") == "0":
        return  # commits checkpoint by themselves (wal_autocheckpoint)
    with _lock_guard:
        if _checkpointer_pid == os.getpid():
            return
        _checkpointer_pid = os.getpid()
    threading.Thread(target=_checkpoint_loop, args=(db_path,), name="tsunagu-wal-checkpoint", daemon=True).start()


def _checkpoint_loop(db_path: str) -> None:
    from tsunagu.core.dburl import SQLITE_INIT

    try:
        conn = sqlite3.connect(db_path, timeout=1.0, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_INIT.split(";"):
            if pragma.strip():
                conn.execute(pragma)
    except sqlite3.Error:
        log.exception("WAL checkpointer could not open %s; commits will checkpoint instead", db_path)
        return
    # A descriptor of its own: flock excludes open files, not threads, and this thread must exclude the
    # writers of its own process too.
    own_fd = os.open(f"{db_path}-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600) if fcntl is not None else None
    wal_pages = 0
    while True:
        time.sleep(_CHECKPOINT_EVERY)
        try:
            if wal_pages > _WAL_RESET_PAGES:
                # Under the write lock the checkpoint can reach the end of the WAL, so the next writer
                # restarts it from the beginning instead of letting it grow without end.
                with _exclusive(own_fd):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                wal_pages = 0
            else:
                wal_pages = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        except sqlite3.Error:
            continue  # busy: another process is checkpointing; try again next round


def _process_lock(db_path: str) -> Any:
    return _exclusive(_lock_fd(db_path))


@contextmanager
def _exclusive(fd: int | None) -> Iterator[None]:
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _commit(group: list[_Pending[Any]]) -> None:
    try:
        with transaction.atomic():
            if len(group) == 1:
                group[0].result = group[0].work()
            else:
                for pending in group:
                    try:
                        with transaction.atomic():  # a savepoint: one request's failure is its own
                            pending.result = pending.work()
                    except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                        pending.error = exc
    except BaseException as exc:
        # The commit (or the work of a lone request) failed: nothing of this group is stored.
        for pending in group:
            pending.result = None
            pending.error = pending.error or exc


def run(work: Callable[[], T]) -> T:
    """Run ``work`` (database writes) in a transaction shared with concurrent callers; return its result
    once that transaction has committed, or raise its error."""
    global _leading
    from django.db import connection

    pending: _Pending[T] = _Pending(work)
    with _cond:
        _queue.append(pending)
        while _leading and not pending.done:
            _cond.wait()
        if pending.done:
            return pending.outcome()
        _leading = True
    group: list[_Pending[Any]] = []
    db_path = str(connection.settings_dict["NAME"])
    try:
        _start_checkpointer(db_path)
        with _process_lock(db_path):
            with _cond:
                group = _queue[:]
                _queue.clear()
            _commit(group)
    except BaseException as exc:
        for item in group:
            if not item.done and item.error is None and item.result is None:
                item.error = exc
        with _cond:
            if pending in _queue:  # failed before taking the group: leave nothing behind
                _queue.remove(pending)
                pending.error = exc
        raise
    finally:
        with _cond:
            for item in group:
                item.done = True
            _leading = False
            _cond.notify_all()
    return pending.outcome()
