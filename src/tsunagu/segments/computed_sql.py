"""The raw statements of computed traits: reading and writing a chunk's values, which the applier does for
every trait in every chunk. The ORM's ``bulk_create`` (with ``update_conflicts``) spent more time building
model instances and adapting their fields than the database spent storing them: most of the applier's cost
of a computed trait. These read and write what the ORM would (``tests/test_computed_sql.py`` compares them
on both backends)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from django.db import connection

from tsunagu.core.dburl import datetime_param, json_param, json_placeholder
from tsunagu.segments.computed_fold import num_of
from tsunagu.segments.models import ComputedValue

_TABLE = ComputedValue._meta.db_table


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
