"""A trait's backfill holds the applier out while it reads the history and writes the values: otherwise a
chunk committed in between would be counted by neither (the backfill did not see it, the applier did not see
the trait)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections

from tsunagu.events.apply import _INGEST_LOCK_CLASS
from tsunagu.segments import computed_store
from tsunagu.segments.tests.computed_support import declare, send_batch, track, values

pytestmark = pytest.mark.django_db(transaction=True)


def _applier_could_start(workspace_id: int) -> bool:
    """From another connection, as the applier begins a chunk: PostgreSQL's ingest advisory lock, SQLite's
    write transaction (``BEGIN IMMEDIATE``, without waiting)."""
    answer: dict[str, bool] = {}

    def probe() -> None:
        conn = connections["default"]
        try:
            if conn.vendor == "postgresql":
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_INGEST_LOCK_CLASS, workspace_id])
                    answer["free"] = bool(cursor.fetchone()[0])
            else:
                conn.ensure_connection()
                raw: Any = conn.connection
                raw.execute("PRAGMA busy_timeout = 0")
                try:
                    raw.execute("BEGIN IMMEDIATE")
                except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError: locked
                    answer["free"] = "locked" not in str(exc)
                else:
                    raw.execute("ROLLBACK")
                    answer["free"] = True
        finally:
            conn.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=60)
    return answer["free"]


def test_the_backfill_keeps_the_applier_out_until_it_commits(send, workspace, monkeypatch):
    send_batch(send, [track("u1", "Order Completed", "2026-01-01T00:00:00Z")])
    seen: list[bool] = []
    real = computed_store.states_all

    def reading(*args: Any, **kwargs: Any) -> Any:
        seen.append(_applier_could_start(workspace.pk))
        return real(*args, **kwargs)

    monkeypatch.setattr(computed_store, "states_all", reading)
    trait = declare(workspace, "orders", "count", "Order Completed")
    assert seen == [False]
    assert list(values(trait).values()) == [1]
    assert _applier_could_start(workspace.pk) is True  # and lets it in once committed
