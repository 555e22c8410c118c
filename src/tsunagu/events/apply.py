"""The database half of ingestion, run by the applier inside its transaction: dedup by messageId over the
look-back window (``tsunagu.events.dedup``), identity resolution and merges (``customers.services.
ProfileBatch``), the event store and the timeline.

Raw SQL for the event rows: the ORM's bulk_create spent more time building model instances and adapting
their fields than SQLite spent storing them (docs/performance.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from tsunagu.core.dburl import datetime_param, json_param, json_placeholder
from tsunagu.core.models import Workspace
from tsunagu.customers.services import ProfileBatch, Touch, merge_note_events
from tsunagu.events.dedup import dedup_admit
from tsunagu.events.identities import identity_keys
from tsunagu.events.models import Event, Source
from tsunagu.events.timing import event_channel, event_timestamp
from tsunagu.events.validation import ParsedEvent

_EVENT_COLUMNS = (
    "workspace_id",
    "source_id",
    "message_id",
    "type",
    "event",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "customer_id",
    "channel",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "properties",
    "traits",
    "context",
)
_EVENT_JSON_COLUMNS = frozenset({"properties", "traits", "context"})
# messageIds of the events tsunagu writes about a customer that are not the customer's activity: segment
# entries and exits, whether stored by the reaction (``derived_store``) or appended by the outbox.
SEGMENT_CHANGE_PREFIX = "tsunagu:segment-change:"
_INGEST_LOCK_CLASS = 0x7453  # first key of PostgreSQL advisory locks taken by ingestion ("tS")


@dataclass(slots=True)
class AppliedEvent:
    """What a reaction sees of one applied event (``tsunagu.events.reactions``)."""

    message_id: str
    type: str
    event: str
    name: str
    customer_id: int | None
    source_id: int
    channel: str
    timestamp: dt.datetime
    received_at: dt.datetime
    properties: dict[str, Any]
    traits: dict[str, Any]


@dataclass(slots=True)
class ApplyResult:
    stored: int = 0
    duplicates: int = 0
    events: list[AppliedEvent] = field(default_factory=list)
    customer_ids: set[int] = field(default_factory=set)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (into, other)


@dataclass(slots=True)
class Prepared:
    event: ParsedEvent
    source_id: int
    touch: Touch
    timestamp: dt.datetime
    received_at: dt.datetime
    # The event's row without customer_id (known only once its profile is resolved): the columns before
    # it and the columns after it.
    head: tuple[Any, ...]
    tail: tuple[Any, ...]


def prepare(source: Source, events: list[ParsedEvent], received_at: dt.datetime) -> list[Prepared]:
    """Everything about the rows that does not need the database."""
    vendor = connection.vendor
    received = datetime_param(received_at, vendor)
    workspace_id, source_id = source.workspace_id, source.pk
    out = []
    for event in events:
        keys, lookup_only = identity_keys(event)
        channel = event_channel(source=source, context=event.context)
        ts = event_timestamp(event=event, received_at=received_at)
        touch = Touch(
            keys=keys,
            lookup_only=lookup_only,
            timestamp=ts,
            channel=channel,
            message_id=event.message_id,
            event_type=event.type,
            traits=event.traits if event.type == "identify" else None,
            activity=not event.message_id.startswith(SEGMENT_CHANGE_PREFIX),
        )
        head = (
            workspace_id,
            source_id,
            event.message_id,
            event.type,
            event.event,
            event.name,
            event.user_id or "",
            event.anonymous_id or "",
            event.group_id,
            event.previous_id,
        )
        tail = (
            channel,
            datetime_param(ts, vendor),
            datetime_param(event.original_timestamp, vendor),
            datetime_param(event.sent_at, vendor),
            received,
            json_param(event.properties),
            json_param(event.traits),
            json_param(event.context),
        )
        out.append(Prepared(event, source_id, touch, ts, received_at, head, tail))
    return out


def _insert_events(rows: list[tuple[Any, ...]], vendor: str) -> None:
    """One parameterised INSERT run with executemany (dedup already removed the duplicates)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    json_ph = json_placeholder(vendor)
    placeholders = ", ".join(json_ph if c in _EVENT_JSON_COLUMNS else "%s" for c in _EVENT_COLUMNS)
    sql = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(quote(c) for c in _EVENT_COLUMNS)}) "  # noqa: S608
        f"VALUES ({placeholders})"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def apply_prepared(workspace: Workspace, events: list[Prepared]) -> ApplyResult:
    """Dedup, resolve, store: inside the caller's transaction (the applier's). Events are taken in the
    given order, which is log order."""
    result = ApplyResult()
    if connection.vendor == "postgresql":
        # One applier per workspace holds the lease; this lock also keeps out anything else that resolves
        # identities of the workspace (an import, a test) until commit.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_INGEST_LOCK_CLASS, workspace.pk])
    admitted = dedup_admit(
        workspace_id=workspace.pk,
        message_ids=[e.event.message_id for e in events],
        received_at=[e.received_at for e in events],
    )
    fresh = [item for item, ok in zip(events, admitted, strict=True) if ok]
    result.duplicates = len(events) - len(fresh)

    profiles = ProfileBatch(workspace=workspace)
    all_keys: set[tuple[str, str]] = set()
    for item in fresh:
        all_keys.update(item.touch.keys)
        all_keys.update(item.touch.lookup_only)
    profiles.load(all_keys)
    owners = [profiles.resolve(item.touch) for item in fresh]
    merges = profiles.flush()
    for merge in merges:
        moved = Event.objects.filter(customer_id=merge.other_id).update(customer_id=merge.into_id)
        merge_note_events(merge=merge, events_moved=moved)
        result.merges.append((merge.into_id, merge.other_id))
        result.customer_ids.add(merge.into_id)

    rows = []
    for item, owner in zip(fresh, owners, strict=True):
        customer_id = profiles.customer_id_of(owner)
        rows.append((*item.head, customer_id, *item.tail))
        event = item.event
        result.events.append(
            AppliedEvent(
                message_id=event.message_id,
                type=event.type,
                event=event.event,
                name=event.name,
                customer_id=customer_id,
                source_id=item.source_id,
                channel=item.touch.channel,
                timestamp=item.timestamp,
                received_at=item.received_at,
                properties=event.properties,
                traits=event.traits,
            )
        )
        if customer_id is not None:
            result.customer_ids.add(customer_id)
    _insert_events(rows, connection.vendor)
    result.stored = len(rows)
    return result


@dataclass(slots=True)
class Derived:
    """An event tsunagu itself derives, in the applier's transaction, about a customer it already knows
    (``Segment Entered`` when an applied event moves a profile into a segment)."""

    message_id: str
    event: str
    customer_id: int
    user_id: str
    timestamp: dt.datetime
    properties: dict[str, Any]


def derived_store(source: Source, events: list[Derived]) -> list[AppliedEvent]:
    """Store derived track events on their customers' timelines with one executemany, and return them as
    reactions see events. Inside the caller's transaction. Their customers are known and their messageIds
    unique by construction, so there is no dedup and no identity resolution; and no profile changes,
    since nothing the customer did happened ($last_seen stays the customer's own)."""
    if not events:
        return []
    vendor = connection.vendor
    channel = source.channel
    context = json_param({"channel": channel})
    empty = json_param({})
    rows = []
    out = []
    for d in events:
        ts = datetime_param(d.timestamp, vendor)
        rows.append((source.workspace_id, source.pk, d.message_id, "track", d.event, "", d.user_id, "", "", "",
                     d.customer_id, channel, ts, None, None, ts, json_param(d.properties), empty, context))
        out.append(AppliedEvent(message_id=d.message_id, type="track", event=d.event, name="",
                                customer_id=d.customer_id, source_id=source.pk, channel=channel,
                                timestamp=d.timestamp, received_at=d.timestamp, properties=d.properties, traits={}))
    _insert_events(rows, vendor)
    return out
