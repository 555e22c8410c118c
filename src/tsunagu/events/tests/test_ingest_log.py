"""The SQLite ingest log: an append returns only once the log's WAL is fsync'd up to it, and one fsync
covers the appends of every thread and process that came before it (group commit across processes).

Two ``SqliteLog`` objects on one file stand for two web processes: each has its own connections and file
descriptors, so the ``flock``s between them are exactly those between processes."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from typing import Any

import pytest

from tsunagu.events import log as log_module
from tsunagu.events.log import SqliteLog

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def fsyncs(monkeypatch: Any) -> list[int]:
    """Every fsync of a log's WAL, recorded with the appended counter at that moment."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(log_module.os, "fsync", counting)
    return calls


def append(log: SqliteLog, n: int = 1, workspace_id: int = 1) -> int:
    return log.append(workspace_id=workspace_id, source_id=7, received_at=NOW, count=n, body=b"[]")


def test_an_append_returns_after_its_record_is_fsynced(tmp_path, fsyncs):
    log = SqliteLog(tmp_path / "log.sqlite3")
    first = append(log)
    assert fsyncs == [log._wal_fd]
    appended, durable = log._counters()
    assert appended == durable == first
    second = append(log)
    assert second > first and len(fsyncs) == 2 and log._counters() == (second, second)


def test_the_log_is_a_wal_database_committing_without_its_own_fsync(tmp_path):
    """The scheme relies on both: WAL (the fsync'd file is the WAL) and NORMAL (commits do not fsync, so an
    fsync is paid once per group, by ``_make_durable``)."""
    log = SqliteLog(tmp_path / "log.sqlite3")
    assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert os.path.samefile(f"{log.path}-wal", f"/proc/self/fd/{log._wal_fd}")


def test_one_fsync_covers_what_other_processes_appended_before_it(tmp_path, fsyncs):
    path = tmp_path / "log.sqlite3"
    web1, web2 = SqliteLog(path), SqliteLog(path)
    # web2's record is committed but not yet durable when web1 appends: web1's fsync covers both.
    a = web2._conn  # commit a record through web2 without its durability step
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO log (workspace_id, source_id, received_us, n, body) VALUES (1, 7, 0, 1, x'5b5d')")
    a.execute("COMMIT")
    pending = a.execute("SELECT max(id) FROM log").fetchone()[0]
    web2._set_appended(pending)
    mine = append(web1)
    assert len(fsyncs) == 1
    assert web1._counters()[1] == mine > pending
    # web2 now finds its record durable already: no second fsync.
    web2._make_durable(pending)
    assert len(fsyncs) == 1


def test_concurrent_appenders_share_fsyncs_and_each_returns_durable(tmp_path, fsyncs):
    path = tmp_path / "log.sqlite3"
    logs = [SqliteLog(path), SqliteLog(path)]
    problems: list[str] = []
    ids: list[int] = []
    lock = threading.Lock()

    def worker(log: SqliteLog) -> None:
        for _ in range(40):
            rid = append(log)
            durable = log._counters()[1]
            if durable < rid:
                problems.append(f"append {rid} returned with the log durable only to {durable}")
            with lock:
                ids.append(rid)

    threads = [threading.Thread(target=worker, args=(logs[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert sorted(ids) == list(range(1, 321))
    # Grouped: fewer fsyncs than appends (each thread waits on the sync lock while another fsyncs).
    assert 0 < len(fsyncs) < len(ids)


def test_read_returns_records_in_order_in_chunks_and_trim_keeps_ids_unique(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3")
    ids = [append(log, n=10) for _ in range(5)]
    append(log, n=3, workspace_id=2)
    assert [r.id for r in log.read(workspace_id=1, after=0, max_events=25)] == ids[:2]
    assert [r.id for r in log.read(workspace_id=1, after=ids[1], max_events=25)] == ids[2:4]
    # A record larger than the chunk is still read, alone.
    assert [r.id for r in log.read(workspace_id=1, after=0, max_events=1)] == ids[:1]
    assert log.pending(workspace_id=1, after=ids[2]) == (20, NOW)
    log.trim(workspace_id=1, position=ids[-1])
    assert log.pending(workspace_id=1, after=0) == (0, None)
    assert log.workspaces() == [2]
    log.trim(workspace_id=2, position=10**9)
    # AUTOINCREMENT: after every row is gone, a new record still gets an id past every applied position.
    assert append(log) > ids[-1] + 1


def test_a_second_process_opening_the_log_later_sees_every_record(tmp_path):
    path = tmp_path / "log.sqlite3"
    first = SqliteLog(path)
    rid = append(first)
    first.close()
    later = SqliteLog(path)
    assert [r.id for r in later.read(workspace_id=1, after=0, max_events=10)] == [rid]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM log").fetchone()[0] == 1


def test_a_failing_append_fails_alone_and_leaves_the_log_usable(tmp_path):
    """What group commit's savepoints guaranteed before: one request's failure is its own. Here each append
    is its own transaction: a failed one is rolled back, raises to its caller only, and the appends around
    it — concurrent ones included — are stored and durable."""
    log = SqliteLog(tmp_path / "log.sqlite3")
    before = append(log)
    with pytest.raises(sqlite3.Error):
        log.append(workspace_id=1, source_id=7, received_at=NOW, count=1, body=object())  # type: ignore[arg-type]
    assert not log._conn.in_transaction
    results: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            if i == 3:
                log.append(workspace_id=1, source_id=7, received_at=NOW, count=1, body=object())  # type: ignore[arg-type]
            else:
                results.append(append(log))
        except sqlite3.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and len(results) == 5
    stored = [r.id for r in log.read(workspace_id=1, after=0, max_events=100)]
    assert stored == sorted([before, *results])
    assert log._counters()[1] >= max(results)
