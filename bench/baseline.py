"""The baseline: the same events appended to SQLite with nothing in between.

One process, a table with only an integer key and the event's JSON (``CREATE TABLE log (id INTEGER PRIMARY
KEY, body BLOB)``), ``executemany`` of pre-encoded rows, one ``COMMIT`` with ``synchronous=FULL`` (so one
fsync'd WAL commit) per 5,000 events. Rows are built before the clock starts: this is what a durable
append costs on this disk and CPU, the floor the acknowledged path can approach but not beat.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

COMMIT_EVERY = 5_000


def run_baseline(*, target_db: Path, batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Append every event of ``batches`` and time it; returns seconds, events stored and the rate."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target_db}{suffix}").unlink(missing_ok=True)
    rows = [(orjson.dumps(item),) for items in batches for item in items]
    conn = sqlite3.connect(target_db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        start = time.monotonic()
        for i in range(0, len(rows), COMMIT_EVERY):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO log (body) VALUES (?)", rows[i : i + COMMIT_EVERY])
            conn.execute("COMMIT")
        seconds = time.monotonic() - start
        stored = conn.execute("SELECT COUNT(*) FROM log").fetchone()[0]
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target_db}{suffix}").unlink(missing_ok=True)
    return {"seconds": seconds, "stored": stored, "rate": stored / seconds if seconds else 0.0}
