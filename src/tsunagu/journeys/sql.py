"""Bulk writes of the engine's hot path as one ``executemany`` each, instead of the ORM's ``bulk_update``
(which builds a ``CASE WHEN id = … THEN …`` expression per field and row: most of a turn's time at 200 runs,
measured by ``python -m bench journeys --profile``) and ``bulk_create``.

Values go through each field's own ``get_db_prep_save`` — what the ORM's update and insert call — so a row
written here is the row the ORM would have written (``tests/test_sql.py`` compares them on both backends);
JSON is the one exception, encoded by orjson: the same JSON value, without ``json.dumps``'s spaces. Reads
(``runs_read``, ``awaits_read``) return what the ORM's queries return, decoded the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models.base import ModelState
from django.db.models.fields import AutoFieldMixin

from tsunagu.core.dburl import datetime_param, ids_in, json_param, json_placeholder


def _table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


class _Prep:
    """A field's ``get_db_prep_save``, remembered per value (a pure function of it) for the fields whose
    values hash: a turn writes the same few instants (its ``now``), ids and names on many rows, and converting
    them was most of what preparing a row cost. JSON values (dicts, lists) are encoded each time, by orjson
    (``core.dburl.json_param``: the ORM's ``json.dumps`` was a fifth of waking runs, profiled): the same JSON
    value, written as text with the placeholder's cast to jsonb on PostgreSQL (``placeholder``)."""

    def __init__(self, field: Any, conn: Any) -> None:
        self.field, self.conn = field, conn
        self.json = isinstance(field, models.JSONField)
        self.memo: dict[Any, Any] = {}
        self.placeholder = json_placeholder(conn.vendor) if self.json else "%s"

    def __call__(self, value: Any) -> Any:
        if self.json:
            # None is SQL NULL, as the ORM writes it to a nullable JSONField.
            return None if value is None else json_param(value)
        key = (type(value), value)
        prepared = self.memo.get(key, _MISSING)
        if prepared is _MISSING:
            prepared = self.memo[key] = self.field.get_db_prep_save(value, self.conn)
        return prepared


_MISSING = object()


def rows_update(model: type[models.Model], objs: Sequence[models.Model], names: Sequence[str]) -> None:
    """``UPDATE … SET <names> WHERE pk = …`` for each of ``objs``, from their attribute values: what
    ``bulk_update(objs, names)`` writes."""
    if not objs:
        return
    conn = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: the proxy's lookup per value added up
    fields: list[Any] = [model._meta.get_field(name) for name in names]
    qn = connection.ops.quote_name
    pk = model._meta.pk
    assert pk is not None
    # Names from the model's own metadata, quoted; the values are parameters.
    preps = [_Prep(f, conn) for f in fields]
    sets = ", ".join(f"{qn(f.column)} = {prep.placeholder}" for f, prep in zip(fields, preps, strict=True))
    sql = f"UPDATE {_table(model)} SET {sets} WHERE {qn(pk.column)} = %s"  # noqa: S608
    # One attrgetter for the row's values, and the integer key as it is (an AutoField's preparation is int()).
    values = operator.attrgetter(*[f.attname for f in fields], pk.attname)
    params = [[prep(v) for prep, v in zip(preps, row, strict=False)] + [int(row[-1])]
              for row in map(values, objs)]
    with conn.cursor() as cursor:
        cursor.executemany(sql, params)


def rows_insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """``INSERT`` each of ``objs`` (every concrete field but an automatic primary key): what
    ``bulk_create(objs)`` writes, without reading the new ids back (nothing on the hot path needs them)."""
    if not objs:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]
    qn = connection.ops.quote_name
    preps = [(f, _Prep(f, conn)) for f in fields]
    sql = (f"INSERT INTO {_table(model)} ({', '.join(qn(f.column) for f in fields)}) "  # noqa: S608
           f"VALUES ({', '.join(prep.placeholder for _, prep in preps)})")
    params: list[list[Any]] = [[prep(f.pre_save(obj, True)) for f, prep in preps] for obj in objs]
    with conn.cursor() as cursor:
        cursor.executemany(sql, params)


def _json_value(text: Any) -> Any:
    """A JSON column's value as the ORM decodes it (text on both backends: Django has psycopg hand jsonb over
    undecoded), by orjson; ``json`` for what orjson refuses (integers past 64 bits, which json_param writes)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _readers(model: type[models.Model], vendor: str) -> list[Any]:
    """Per concrete field, the conversion of its column's value to what the ORM's converters give: on SQLite
    a boolean is an integer and an instant is UTC without its zone (Django's connection parses the text into
    a naive datetime), each made aware once (a turn's runs share a few instants)."""
    memo: dict[Any, dt.datetime] = {}

    def instant(raw: Any) -> Any:
        if raw is None:
            return None
        value = memo.get(raw)
        if value is None:
            parsed = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else raw
            value = memo[raw] = (parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None
                                 else parsed.astimezone(dt.UTC))
        return value

    out: list[Any] = []
    for f in model._meta.concrete_fields:
        if isinstance(f, models.JSONField):
            out.append(_json_value)
        elif vendor == "sqlite" and isinstance(f, models.DateTimeField):
            out.append(instant)
        elif vendor == "sqlite" and isinstance(f, models.BooleanField):
            out.append(bool)
        else:
            out.append(None)
    return out


def runs_read(*, ids: Sequence[int], locked_by: str | None = None, lock: bool = False) -> list[Any]:
    """The ``Run`` rows of ``ids`` (only those leased to ``locked_by``, when given), in id order, as model
    instances — what ``Run.objects.filter(pk__in=ids).order_by("pk")`` returns (``tests/test_sql.py``),
    without the ORM's per-row compiler and converters, a third of waking 10,000 awaited runs (profiled).
    ``lock``: ``FOR UPDATE`` on PostgreSQL (SQLite's writer holds the database)."""
    from tsunagu.journeys.models import Run

    if not ids:
        return []
    vendor = connection.vendor
    qn = connection.ops.quote_name
    fields = Run._meta.concrete_fields
    cond, param = ids_in(qn("id"), list(ids), vendor)
    params: list[Any] = [param]
    if locked_by is not None:
        cond += f" AND {qn('locked_by')} = %s"
        params.append(locked_by)
    sql = (f"SELECT {', '.join(qn(f.column) for f in fields)} FROM {_table(Run)} "  # noqa: S608
           f"WHERE {cond} ORDER BY {qn('id')}")
    if lock and vendor == "postgresql":
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    readers = list(enumerate(_readers(Run, vendor)))
    convert = [(i, r) for i, r in readers if r is not None]
    names = [f.attname for f in fields]
    db = connection.alias
    out = []
    new = Run.__new__
    for row in rows:
        values = list(row)
        for i, reader in convert:
            values[i] = reader(values[i])
        # What ``Model.from_db`` makes of a full row (every concrete field, in order), without ``__init__``'s
        # per-field descriptor calls: a saved instance, its attributes the row's values.
        run = new(Run)
        run.__dict__.update(zip(names, values, strict=True))
        state = run._state = ModelState()
        state.adding, state.db = False, db
        out.append(run)
    return out


class HistoryRow(NamedTuple):
    """One ``RunHistory`` row as the engine gathers it in a turn: a tuple, not a model instance (building
    one a step was ~14% of a turn, ``bench journeys --profile``)."""

    run_id: int
    journey_id: int
    step: str
    action: str
    at: dt.datetime
    outcome: Any
    actor: str


def history_insert(rows: Sequence[HistoryRow]) -> None:
    """``INSERT`` ``rows`` into ``RunHistory`` by one ``executemany``: what ``bulk_create`` of the same rows
    writes (``tests/test_sql.py``), the outcome as JSON text by orjson."""
    if not rows:
        return
    from tsunagu.journeys.models import RunHistory

    vendor = connection.vendor
    qn = connection.ops.quote_name
    columns = ("run_id", "journey_id", "step", "action", "at", "outcome", "actor")
    marks = ", ".join(json_placeholder(vendor) if c == "outcome" else "%s" for c in columns)
    sql = f"INSERT INTO {_table(RunHistory)} ({', '.join(qn(c) for c in columns)}) VALUES ({marks})"  # noqa: S608
    at_memo: dict[dt.datetime, Any] = {}  # a turn writes its rows at one or two instants
    params = []
    for r in rows:
        at = at_memo.get(r.at)
        if at is None:
            at = at_memo[r.at] = datetime_param(r.at, vendor)
        # None is SQL NULL, as the ORM writes it to a nullable JSONField.
        outcome = None if r.outcome is None else json_param(r.outcome)
        params.append((r.run_id, r.journey_id, r.step, r.action, at, outcome, r.actor))
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def history_for_runs(*, journey_id: int, exclude: Sequence[str], action: str, at: Any, outcome: Any,
                     actor: str) -> int:
    """One ``RunHistory`` row per run of the journey whose status is not in ``exclude``, written by one
    ``INSERT … SELECT`` — what ``bulk_create`` of those rows writes, without reading a million runs into
    memory to pause a journey. Returns the rows written."""
    from tsunagu.journeys.models import Run, RunHistory

    conn = connections[DEFAULT_DB_ALIAS]
    qn = connection.ops.quote_name
    meta = RunHistory._meta
    values = [meta.get_field(name).get_db_prep_save(value, conn)  # type: ignore[union-attr]
              for name, value in (("action", action), ("at", at), ("outcome", outcome), ("actor", actor))]
    marks = ", ".join(["%s"] * len(exclude)) or "NULL"
    sql = (f"INSERT INTO {_table(RunHistory)} ({qn('run_id')}, {qn('journey_id')}, {qn('step')}, "  # noqa: S608
           f"{qn('action')}, {qn('at')}, {qn('outcome')}, {qn('actor')}) "
           f"SELECT {qn('id')}, {qn('journey_id')}, {qn('step')}, %s, %s, %s, %s FROM {_table(Run)} "
           f"WHERE {qn('journey_id')} = %s AND {qn('status')} NOT IN ({marks})")
    with conn.cursor() as cursor:
        cursor.execute(sql, [*values, journey_id, *exclude])
        return int(cursor.rowcount)


def awaits_read(*, customer_ids: list[int], names: list[str], journey_id: int | None = None
                ) -> list[tuple[int, int, str, str, int]]:
    """(run, customer, event, step, version) of the runs of ``customer_ids`` awaiting one of ``names`` (of
    ``journey_id`` only, when given), by the partial ``(customer, awaits)`` index: what the ORM's filter
    returns (``tests/test_sql.py``), with the ids as one parameter."""
    from tsunagu.journeys.models import Run

    if not customer_ids or not names:
        return []
    vendor = connection.vendor
    cond, ids = ids_in("customer_id", customer_ids, vendor)
    marks = ", ".join(["%s"] * len(names))
    params: list[Any] = [ids, *names]
    # ``awaits > ''`` (the index's condition: awaiting something) spelled out: SQLite uses a partial index
    # only for a query that repeats its condition.
    sql = (f"SELECT id, customer_id, awaits, step, version_id FROM {_table(Run)} "  # noqa: S608
           f"WHERE {cond} AND awaits IN ({marks}) AND awaits > ''")
    if journey_id is not None:
        sql += " AND journey_id = %s"
        params.append(journey_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(r) for r in cursor.fetchall()]
