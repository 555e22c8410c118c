"""The delivery engine's hot statements in raw SQL: the writes of a wave of messages, and the reading of
a claimed batch.

Through the ORM the same statements cost ~0.3 ms of Python each (queryset cloning, compiling, per-field
preparation), and a claimed batch of 200 cost ~0.6 ms a delivery to load (model instances through the
queryset machinery, a prefetch of identities building a queryset per customer) — each more than the SMTP
hand-over itself at the 500 emails/s a worker must reach (docs/performance.md).
``tests/test_delivery_sql.py`` proves each writes or reads what the ORM would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from django.db import connection
from django.db.models import Model
from django.db.models.base import ModelState

from tsunagu.core.dburl import datetime_param, json_param, json_placeholder
from tsunagu.segments.computed_selectors import computed_lazy

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


@functools.lru_cache(maxsize=256)
def _update_sql(vendor: str, names: tuple[str, ...], locked: bool) -> str:
    mark, json_mark = ("?", "?") if vendor == "sqlite" else ("%s", json_placeholder(vendor))
    sets = ", ".join(f"{n} = {json_mark if n in _JSON else mark}" for n in names)
    sql = f"UPDATE {_DELIVERY} SET {sets} WHERE id = {mark}"  # noqa: S608 - column names are checked
    return sql + f" AND locked_by = {mark}" if locked else sql


@contextlib.contextmanager
def _cursor() -> Iterator[Any]:
    """A cursor for the statements here. On SQLite the driver's own, with ``?`` placeholders: Django's
    wrapper rewrites every statement's ``%s`` and runs its hooks, a third of a small statement's cost.
    Errors come out as Django's, either way."""
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = connection.connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


def delivery_update(pk: int, changes: dict[str, Any], *, locked_by: str | None = None) -> int:
    """``UPDATE`` one delivery's ``changes`` (only while ``locked_by`` holds it, when given); returns rows."""
    vendor = connection.vendor
    names = tuple(sorted(changes))
    if not names or not _COLUMNS.issuperset(names):
        raise ValueError(f"not delivery columns: {sorted(set(names) - _COLUMNS)}")
    params = [_param(n, changes[n], vendor) for n in names]
    params.append(pk)
    if locked_by is not None:
        params.append(locked_by)
    with _cursor() as cursor:
        cursor.execute(_update_sql(vendor, names, locked_by is not None), params)
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
    mark, json_mark = ("?", "?") if vendor == "sqlite" else ("%s", json_placeholder(vendor))
    sql = (
        f"INSERT INTO {_EVENT} (delivery_id, workspace_id, status, at, reason, data, machine, logged) "  # noqa: S608
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {json_mark}, {mark}, {mark})"
    )
    with _cursor() as cursor:
        cursor.executemany(sql, params)


# -- reading a claimed batch -----------------------------------------------------------------------------


def _json(value: Any) -> Any:
    # SQLite hands back JSON as text; PostgreSQL's driver may have decoded it already.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _datetime(value: Any) -> dt.datetime | None:
    # SQLite hands back naive UTC text; PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class _Shape:
    """How rows of a model's columns become instances: as ``Model.from_db`` builds them (converters
    applied, the instance not ``adding``), without ``Model.__init__``'s per-field work; the models read
    here have no ``post_init`` receivers. Columns not read are deferred (loaded on access)."""

    def __init__(self, model: type[Model], skip: tuple[str, ...] = ()) -> None:
        fields = [f for f in model._meta.concrete_fields if f.attname not in skip]
        self.model = model
        self.attnames = [f.attname for f in fields]
        self.columns = [f.column for f in fields]
        kinds = [f.get_internal_type() for f in fields]
        self.json = [i for i, k in enumerate(kinds) if k == "JSONField"]
        self.datetimes = [i for i, k in enumerate(kinds) if k == "DateTimeField"]

    def select(self, alias: str) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{alias}.{quote(c)}" for c in self.columns)

    def build(self, row: tuple[Any, ...] | list[Any]) -> Any:
        values = list(row)
        for i in self.json:
            values[i] = _json(values[i])
        for i in self.datetimes:
            values[i] = _datetime(values[i])
        obj = self.model.__new__(self.model)
        obj.__dict__.update(zip(self.attnames, values, strict=True))
        state = ModelState()
        state.adding = False
        state.db = connection.alias
        obj._state = state
        return obj


_shapes: dict[str, _Shape] = {}


def _shape(name: str) -> _Shape:
    shape = _shapes.get(name)
    if shape is None:
        from tsunagu.messaging.models import Delivery, Send

        # A claimed delivery comes without ``raw`` (the .eml of an earlier attempt: never needed to send).
        shape = _shapes[name] = _Shape(Delivery, skip=("raw",)) if name == "delivery" else _Shape(Send)
    return shape


def claimed_load(ids: list[int], worker_id: str) -> list[Any]:
    """The deliveries ``ids`` still claimed by ``worker_id``, in id order, each with its send (``.send``
    set) and without ``raw`` loaded: what ``Delivery.objects.filter(pk__in=ids, locked_by=worker_id)
    .select_related("send").defer("raw").order_by("id")`` returns."""
    if not ids:
        return []
    delivery, send = _shape("delivery"), _shape("send")
    width = len(delivery.columns)
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        f"SELECT {delivery.select('d')}, {send.select('s')} FROM {_DELIVERY} AS d "  # noqa: S608 - names only
        f"JOIN messaging_send AS s ON s.id = d.send_id WHERE d.id IN ({marks}) AND d.locked_by = %s ORDER BY d.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ids, worker_id])
        rows = cursor.fetchall()
    out = []
    for row in rows:
        d = delivery.build(row[:width])
        d._state.fields_cache["send"] = send.build(row[width:])
        out.append(d)
    return out


_PROFILE = ("email", "phone", "user_id", "family_name", "given_name", "family_kana", "given_kana", "display_name")


def customer_contexts(ids: set[int]) -> dict[int, dict[str, Any]]:
    """``messaging.context.customer_context`` of each customer ``ids`` (those that exist), from two
    statements instead of model instances and a prefetch."""
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    identities: dict[int, dict[str, list[str]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT customer_id, type, value FROM customers_identity WHERE customer_id IN ({marks}) "  # noqa: S608
            "ORDER BY customer_id, id",
            list(ids),
        )
        for customer_id, type_, value in cursor.fetchall():
            identities.setdefault(customer_id, {}).setdefault(type_, []).append(value)
        cursor.execute(
            f"SELECT id, workspace_id, traits, {', '.join(_PROFILE)} FROM customers_customer WHERE id IN ({marks})",  # noqa: S608
            list(ids),
        )
        rows = cursor.fetchall()
    out: dict[int, dict[str, Any]] = {}
    computed = computed_lazy({row[0]: row[1] for row in rows})  # one read for the batch, if a template looks
    for pk, _, traits_value, *profile in rows:
        traits = dict(_json(traits_value) or {})
        context: dict[str, Any] = {k: v for k, v in traits.items() if isinstance(k, str)}
        context.update(zip(_PROFILE, profile, strict=True))
        context.update({"id": pk, "traits": traits, "identities": identities.get(pk, {})})
        context["computed"] = computed[pk]
        out[pk] = context
    return out


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
