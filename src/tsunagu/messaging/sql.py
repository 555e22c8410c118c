"""The delivery engine's hot writes in raw SQL: one message costs one commit of these few statements.

Through the ORM the same statements cost ~0.3 ms of Python each (queryset cloning, compiling, per-field
preparation) — more than the SMTP hand-over itself at the 500 emails/s a worker must reach
(docs/performance.md). ``tests/test_delivery_sql.py`` proves each writes what the ORM would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import connection

from tsunagu.core.dburl import datetime_param, json_param, json_placeholder

_DELIVERY = "messaging_delivery"
_EVENT = "messaging_deliveryevent"
_JSON = frozenset({"content", "headers"})
_DATETIME = frozenset(
    {"due_at", "lease_until", "created_at", "sent_at", "updated_at", "opened_at", "clicked_at", "read_at"}
)
# The columns ``delivery_update`` may write (a guard: names are put into SQL text).
_COLUMNS = frozenset(
    {"status", "reason", "provider_id", "attempts", "locked_by", "raw", "subject", "body_text", *_JSON, *_DATETIME}
)


def _param(name: str, value: Any, vendor: str) -> Any:
    if name in _JSON:
        return json_param(value)
    if name in _DATETIME:
        return datetime_param(value, vendor)
    if name == "raw" and value is not None:
        return bytes(value)
    return value


def delivery_update(pk: int, changes: dict[str, Any], *, locked_by: str | None = None) -> int:
    """``UPDATE`` one delivery's ``changes`` (only while ``locked_by`` holds it, when given); returns rows."""
    vendor = connection.vendor
    names = sorted(changes)
    if not names or not _COLUMNS.issuperset(names):
        raise ValueError(f"not delivery columns: {sorted(set(names) - _COLUMNS)}")
    sets = ", ".join(f"{n} = {json_placeholder(vendor) if n in _JSON else '%s'}" for n in names)
    params = [_param(n, changes[n], vendor) for n in names]
    sql = f"UPDATE {_DELIVERY} SET {sets} WHERE id = %s"  # noqa: S608 - column names are checked above
    params.append(pk)
    if locked_by is not None:
        sql += " AND locked_by = %s"
        params.append(locked_by)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def events_insert(rows: Iterable[tuple[int, int, str, dt.datetime, str, dict[str, Any]]]) -> None:
    """Insert delivery events: (delivery_id, workspace_id, status, at, reason, data); not yet published."""
    vendor = connection.vendor
    params = [
        (delivery_id, workspace_id, status, datetime_param(at, vendor), reason[:1000], json_param(data), False, False)
        for delivery_id, workspace_id, status, at, reason, data in rows
    ]
    if not params:
        return
    sql = (
        f"INSERT INTO {_EVENT} (delivery_id, workspace_id, status, at, reason, data, machine, logged) "  # noqa: S608
        f"VALUES (%s, %s, %s, %s, %s, {json_placeholder(vendor)}, %s, %s)"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


_SEND = "messaging_send"


def send_wake(send_id: int, at: dt.datetime) -> None:
    """Have the policy engine look at a send now (its delivery failed, bounced, was delivered or read),
    unless it has ended or is already due sooner."""
    vendor = connection.vendor
    when = datetime_param(at, vendor)
    sql = (
        f"UPDATE {_SEND} SET due_at = %s WHERE id = %s AND ended_at IS NULL "  # noqa: S608
        "AND (due_at IS NULL OR due_at > %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [when, send_id, when])
