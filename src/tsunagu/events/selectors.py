"""Reads of sources and the event store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet, Sum

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.customers.models import Customer
from tsunagu.events.log import get_log
from tsunagu.events.models import ApplierState, Event, Source


def source_by_write_key(*, write_key: str) -> Source | None:
    """The source of a write key, with its workspace loaded. Runs on every tracking request, so it is one
    raw SELECT and ``from_db`` (~90 µs; the ORM's select_related query cost ~600 µs). Never cached: a
    rotated key stops working at once, in every process."""
    if not write_key or len(write_key) > 64 or "\x00" in write_key:  # no stored key can equal it
        return None
    with connection.cursor() as cursor:
        cursor.execute(_source_sql(), [write_key])
        row = cursor.fetchone()
    if row is None:
        return None
    source_values = row[: len(_SOURCE_FIELDS)]
    workspace_values = row[len(_SOURCE_FIELDS) :]
    workspace = _from_row(Workspace, workspace_values)
    source = _from_row(Source, source_values)
    Source.workspace.field.set_cached_value(source, workspace)
    return source


_SOURCE_FIELDS = list(Source._meta.concrete_fields)
_WORKSPACE_FIELDS = list(Workspace._meta.concrete_fields)
_source_sql_cache: dict[str, str] = {}


def _source_sql() -> str:
    vendor = connection.vendor
    sql = _source_sql_cache.get(vendor)
    if sql is None:
        quote = connection.ops.quote_name
        source_table = quote(Source._meta.db_table)
        workspace_table = quote(Workspace._meta.db_table)
        columns = [f"s.{quote(str(f.column))}" for f in _SOURCE_FIELDS]
        columns += [f"w.{quote(str(f.column))}" for f in _WORKSPACE_FIELDS]
        join = f"w.{quote(str(Workspace._meta.pk.column))} = s.{quote(str(Source.workspace.field.column))}"
        sql = (
            f"SELECT {', '.join(columns)} FROM {source_table} s "  # noqa: S608
            f"JOIN {workspace_table} w ON {join} "
            f"WHERE s.{quote(str(Source._meta.get_field('write_key').column))} = %s"
        )
        _source_sql_cache[vendor] = sql
    return sql


def _from_row(model: type[Any], values: tuple[Any, ...]) -> Any:
    """An instance as the ORM would load it. Datetimes (SQLite hands them back naive UTC) and JSON (the
    workspace's messaging rules, decoded by the field as the ORM does) are the columns of Source and
    Workspace that need converting; test_source_lookup compares every field with the ORM's."""
    converted = list(values)
    for index, field in _JSON_FIELDS[model]:
        converted[index] = field.from_db_value(converted[index], None, connection)  # type: ignore[attr-defined]
    for index in _DATETIME_INDEXES[model]:
        value = converted[index]
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        converted[index] = value
    return model.from_db(connection.alias, _ATTNAMES[model], converted)


_JSON_FIELDS = {
    model: [(i, f) for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"]
    for model, fields in ((Source, _SOURCE_FIELDS), (Workspace, _WORKSPACE_FIELDS))
}
_DATETIME_INDEXES = {
    model: [i for i, f in enumerate(fields) if f.get_internal_type() == "DateTimeField"]
    for model, fields in ((Source, _SOURCE_FIELDS), (Workspace, _WORKSPACE_FIELDS))
}
_ATTNAMES = {
    model: [f.attname for f in fields] for model, fields in ((Source, _SOURCE_FIELDS), (Workspace, _WORKSPACE_FIELDS))
}


def source_list(*, workspace: Workspace) -> QuerySet[Source]:
    return Source.objects.filter(workspace=workspace).order_by("name", "pk")


def source_get(*, workspace: Workspace, source_id: int) -> Source | None:
    return Source.objects.filter(workspace=workspace, pk=source_id).first()


# The Segment spec's event types, in the order the console offers them.
EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")


def customer_timeline(
    *, customer: Customer, channel: str | None = None, type_: str | None = None
) -> QuerySet[Event]:
    """The customer's events across every channel (or ``channel`` only, and of ``type_`` only), newest first.
    A channel or type that no event can have matches nothing: it is never sent to the database."""
    qs = Event.objects.filter(customer_id=customer.pk)
    if channel is not None:
        qs = qs.filter(channel=channel) if channel in channel_values() else qs.none()
    if type_ is not None:
        qs = qs.filter(type=type_) if type_ in EVENT_TYPES else qs.none()
    return qs.order_by("-timestamp", "-id")


def event_counts_since(*, workspace: Workspace, since: dt.datetime) -> dict[str, list[tuple[str, int]]]:
    """Events received since ``since``, by channel and by source name (for the dashboard)."""
    base = Event.objects.filter(workspace=workspace, received_at__gte=since)
    by_channel = [
        (row["channel"], row["n"])
        for row in base.values("channel").annotate(n=Count("id")).order_by("-n", "channel")
    ]
    by_source = [
        (row["source__name"], row["n"])
        for row in base.values("source__name").annotate(n=Count("id")).order_by("-n", "source__name")
    ]
    return {"channel": by_channel, "source": by_source}


def event_count(*, workspace: Workspace) -> int:
    return Event.objects.filter(workspace=workspace).count()


def channel_values() -> list[str]:
    """Every channel a source or an event may carry, in declaration order."""
    from tsunagu.events.models import Channel

    return list(Channel.values)


def customer_timeline_page(
    *,
    customer: Customer,
    limit: int = 50,
    cursor: str | None = None,
    channel: str | None = None,
    type_: str | None = None,
) -> tuple[list[Event], str | None]:
    """One page of the customer's timeline (filtered as ``customer_timeline``), newest first, and the cursor
    of the next (older) page. Each event comes with its source."""
    from tsunagu.core.pagination import page_by_time_desc

    qs = customer_timeline(customer=customer, channel=channel, type_=type_).select_related("source")
    return page_by_time_desc(qs, limit=limit, cursor=cursor)


# -- the ingestion pipeline ---------------------------------------------------------------------------


def applier_position(*, workspace_id: int) -> tuple[int, int, int]:
    """(position, applied, duplicates) of a workspace's applier; zeros before its first event."""
    state = ApplierState.objects.filter(pk=workspace_id).values_list("position", "applied", "duplicates").first()
    return state if state is not None else (0, 0, 0)


def ingestion_pending(*, workspace_id: int) -> tuple[int, dt.datetime | None]:
    """Events acknowledged but not yet applied in a workspace, and the receive time of the oldest."""
    position = applier_position(workspace_id=workspace_id)[0]
    return get_log().pending(workspace_id=workspace_id, after=position)


def ingestion_status(*, workspace_id: int) -> dict[str, Any]:
    """What ``GET /api/v1/ingestion`` answers: pending, applied (events stored, duplicates not counted),
    duplicates, and how long the oldest pending event has waited."""
    position = applier_position(workspace_id=workspace_id)[0]
    pending, oldest = get_log().pending(workspace_id=workspace_id, after=position)
    # The counters are read again, after the log: a chunk the applier commits between the two reads would
    # otherwise show as neither pending nor applied ("pending 0" with "applied" short). Read after, they
    # include every chunk whose records the log no longer counts.
    _position, applied, duplicates = applier_position(workspace_id=workspace_id)
    oldest_ms = None if oldest is None else max(0.0, round((clock.now() - oldest).total_seconds() * 1000, 1))
    return {"pending": pending, "applied": applied, "duplicates": duplicates, "oldest_pending_ms": oldest_ms}


def ingestion_overview() -> dict[str, Any]:
    """Every workspace's backlog added up (``/readyz``, ``/metrics``)."""
    log = get_log()
    states = {ws: (pos, applied, dups) for ws, pos, applied, dups in ApplierState.objects.values_list(
        "workspace_id", "position", "applied", "duplicates"
    )}
    pending_total, oldest_all = 0, None
    for workspace_id in set(log.workspaces()) | set(states):
        position = states.get(workspace_id, (0, 0, 0))[0]
        pending, oldest = log.pending(workspace_id=workspace_id, after=position)
        pending_total += pending
        if oldest is not None and (oldest_all is None or oldest < oldest_all):
            oldest_all = oldest
    oldest_ms = None if oldest_all is None else max(0.0, (clock.now() - oldest_all).total_seconds() * 1000)
    # Counters read after the log, as in ``ingestion_status``.
    totals = ApplierState.objects.aggregate(applied=Sum("applied"), duplicates=Sum("duplicates"))
    return {
        "pending": pending_total,
        "applied": totals["applied"] or 0,
        "duplicates": totals["duplicates"] or 0,
        "oldest_pending_ms": oldest_ms,
    }
