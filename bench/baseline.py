"""The baseline: the same event rows appended to SQLite with nothing in between.

One process, the table and indexes copied from the migrated ``events_event`` (so every index the real table
pays for is paid here too), the PRAGMAs tsunagu sets on its connections (``tsunagu.core.dburl``, so
synchronous=FULL: one fsync'd WAL commit per batch), one ``BEGIN IMMEDIATE … executemany … COMMIT`` per
batch of the same size the SDK clients send. Rows are built before the clock starts: this is the cost of
storing, the floor the HTTP path can approach but not beat.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from bench import payloads

TABLE = "events_event"


def _pragmas() -> list[str]:
    from tsunagu.core.dburl import SQLITE_INIT

    return [p.strip() for p in SQLITE_INIT.split(";") if p.strip()]


def _ddl(source_db: Path) -> list[str]:
    """CREATE statements of the event table and its indexes, without foreign keys (the baseline has no
    workspaces or sources to point at)."""
    with sqlite3.connect(source_db) as conn:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC", (TABLE,)
        ).fetchall()
    statements = [r[0] for r in rows]
    return [re.sub(r'\s*REFERENCES\s+"\w+"\s*\("\w+"\)(\s+DEFERRABLE INITIALLY DEFERRED)?', "", s) for s in statements]


def _stamp(value: str | None) -> str | None:
    # The text form Django's SQLite backend stores for an aware datetime (UTC, no offset).
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    return parsed.replace(tzinfo=None).isoformat(" ")


def _row(item: dict[str, Any], received: str) -> tuple[Any, ...]:
    return (
        1,
        1,
        item["messageId"],
        item["type"],
        item.get("event", ""),
        item.get("name", ""),
        item.get("userId", ""),
        item.get("anonymousId", ""),
        "",
        "",
        None,
        "web",
        _stamp(item.get("timestamp")),
        _stamp(item.get("timestamp")),
        received,
        received,
        orjson.dumps(item.get("properties", {})).decode(),
        orjson.dumps(item.get("traits", {})).decode(),
        orjson.dumps(item["context"]).decode(),
    )


_COLUMNS = (
    "workspace_id, source_id, message_id, type, event, name, user_id, anonymous_id, group_id, previous_id, "
    "customer_id, channel, timestamp, original_timestamp, sent_at, received_at, properties, traits, context"
)


def run_baseline(*, source_db: Path, target_db: Path, events: int, clients: int, seed: int) -> dict[str, Any]:
    """Append the rows the ingestion run sends (same seeds, same batches) and time it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target_db}{suffix}").unlink(missing_ok=True)
    received = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ")
    share = [events // clients + (1 if i < events % clients else 0) for i in range(clients)]
    batches = [
        [_row(item, received) for item in items]
        for i in range(clients)
        for items in payloads.batches(seed * 1000 + i, share[i])
    ]
    conn = sqlite3.connect(target_db, isolation_level=None)
    try:
        for pragma in _pragmas():
            conn.execute(pragma)
        for statement in _ddl(source_db):
            conn.execute(statement)
        sql = f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES ({', '.join('?' * 19)})"  # noqa: S608 - constants
        start = time.monotonic()
        for rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        seconds = time.monotonic() - start
        stored = conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]  # noqa: S608 - constant
    finally:
        conn.close()
    return {"seconds": seconds, "sent": sum(share), "stored": stored, "batches": len(batches)}
