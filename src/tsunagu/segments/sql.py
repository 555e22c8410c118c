"""The segments app's raw statements, for what the applier does in every chunk:

- computed traits: reading and writing a chunk's values, for every trait. The ORM's ``bulk_create`` (with
  ``update_conflicts``) spent more time building model instances and adapting their fields than the
  database spent storing them: most of the applier's cost of a computed trait;
- membership: the chunk's customers' current memberships of every segment in one read, and each segment's
  entries, exits and history rows. Through the ORM (a query per segment, model instances for every row)
  this was half of the segments reaction with 50 live segments (``python -m bench segments --profile``).

These read and write what the ORM would (``tests/test_sql.py`` compares them on both backends)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from django.db import connection

from tsunagu.core.dburl import datetime_param, ids_in, json_param, json_placeholder
from tsunagu.segments.computed_fold import num_of
from tsunagu.segments.models import ComputedValue, Membership, MembershipChange

_TABLE = ComputedValue._meta.db_table
_MEMBERS = Membership._meta.db_table
_CHANGES = MembershipChange._meta.db_table
# Rows per multi-row INSERT … RETURNING: 8 parameters a row, well inside SQLite's 32,766.
_RETURNING_BATCH = 1000


def values_upsert(*, workspace_id: int, trait_id: int, rows: dict[int, tuple[Any, dict[str, Any]]],
                  now: dt.datetime) -> None:
    """Insert or replace the rows {customer: (value, state)} of one trait: one ``INSERT … ON CONFLICT (trait,
    customer) DO UPDATE`` run with executemany. A value of None is SQL NULL, as the ORM stores it."""
    if not rows:
        return
    vendor = connection.vendor
    json_ph = json_placeholder(vendor)
    sql = (
        f"INSERT INTO {_TABLE} (workspace_id, trait_id, customer_id, value, num, state, updated_at) "  # noqa: S608
        f"VALUES (%s, %s, %s, {json_ph}, %s, {json_ph}, %s) "
        "ON CONFLICT (trait_id, customer_id) DO UPDATE SET value = excluded.value, num = excluded.num, "
        "state = excluded.state, updated_at = excluded.updated_at"
    )
    when = datetime_param(now, vendor)
    params = [
        (workspace_id, trait_id, cid, None if value is None else json_param(value), num_of(value), json_param(state),
         when)
        for cid, (value, state) in rows.items()
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def values_read(*, trait_id: int, customer_ids: list[int]) -> dict[int, tuple[Any, dict[str, Any]]]:
    """{customer: (value, state)} of the customers that have a row: what ``values_list("customer_id", "value",
    "state")`` gives, decoded by orjson instead of the field machinery. JSON is read as text on both
    backends (``CAST … AS TEXT``), so a string value is never taken for already-decoded JSON."""
    if not customer_ids:
        return {}
    marks = ", ".join(["%s"] * len(customer_ids))
    sql = (
        f"SELECT customer_id, CAST(value AS TEXT), CAST(state AS TEXT) FROM {_TABLE} "  # noqa: S608
        f"WHERE trait_id = %s AND customer_id IN ({marks})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [trait_id, *customer_ids])
        rows = cursor.fetchall()
    loads = orjson.loads
    return {cid: (None if value is None else loads(value), loads(state)) for cid, value, state in rows}


def members_read(*, customer_ids: list[int], segment_id: int | None = None) -> dict[int, set[int]]:
    """{segment: its members among ``customer_ids``}: of every segment at once (by the ``customer`` index),
    or of ``segment_id``'s only."""
    if not customer_ids:
        return {}
    cond, param = ids_in("customer_id", customer_ids, connection.vendor)
    params: list[Any] = [param]
    if segment_id is not None:
        cond += " AND segment_id = %s"
        params.append(segment_id)
    out: dict[int, set[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT segment_id, customer_id FROM {_MEMBERS} WHERE {cond}", params)  # noqa: S608
        for segment_id, customer_id in cursor.fetchall():
            out.setdefault(segment_id, set()).add(customer_id)
    return out


def members_insert(*, workspace_id: int, segment_id: int, customer_ids: list[int], at: dt.datetime) -> None:
    """The rows of customers entering a segment, with one executemany."""
    if not customer_ids:
        return
    at_param = datetime_param(at, connection.vendor)
    sql = (f"INSERT INTO {_MEMBERS} (workspace_id, segment_id, customer_id, entered_at) "  # noqa: S608
           "VALUES (%s, %s, %s, %s)")
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(workspace_id, segment_id, c, at_param) for c in customer_ids])


def members_delete(*, segment_id: int, customer_ids: list[int]) -> None:
    """The rows of customers leaving a segment, with one DELETE."""
    if not customer_ids:
        return
    cond, param = ids_in("customer_id", customer_ids, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_MEMBERS} WHERE segment_id = %s AND {cond}", [segment_id, param])  # noqa: S608


def changes_insert(
    *, workspace_id: int, segment_id: int, rows: list[tuple[int, bool]], at: dt.datetime, reason: str,
    published_at: dt.datetime | None, webhook_pending: bool,
) -> list[int]:
    """History rows (customer, entered) of one segment; returns their ids in the order given. A multi-row
    ``INSERT … RETURNING id``, the statement Django's ``bulk_create`` issues to learn the ids, on both
    backends."""
    vendor = connection.vendor
    at_param, published = datetime_param(at, vendor), datetime_param(published_at, vendor)
    columns = "workspace_id, segment_id, customer_id, entered, at, reason, published_at, webhook_pending"
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _RETURNING_BATCH):
            part = rows[start:start + _RETURNING_BATCH]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(part))
            params: list[Any] = []
            for customer_id, entered in part:
                params += [workspace_id, segment_id, customer_id, entered, at_param, reason, published,
                           webhook_pending]
            cursor.execute(f"INSERT INTO {_CHANGES} ({columns}) VALUES {values} RETURNING id", params)  # noqa: S608
            ids += [row[0] for row in cursor.fetchall()]
    return ids
