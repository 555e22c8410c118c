"""Writes of the events app: sources and ingestion.

``events_ingest`` is the one path by which events enter tsunagu — the tracking API, the demo loader and
(later) channel webhooks all call it. A batch is stored and the profiles it touches are updated in one
transaction; on SQLite with synchronous=FULL the commit is fsync'd before the caller answers 200, so an
acknowledged event is never lost.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from tsunagu.core import clock
from tsunagu.core.dburl import datetime_param, json_param, json_placeholder
from tsunagu.core.errors import ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.customers.models import IdentityType
from tsunagu.customers.normalize import normalize_email, normalize_id, normalize_phone
from tsunagu.customers.services import ProfileBatch, Touch, merge_note_events
from tsunagu.events import group_commit
from tsunagu.events.models import Channel, Event, Source
from tsunagu.events.validation import ParsedEvent

# Segment's context.channel values and SDK library names, mapped to tsunagu channels.
_CONTEXT_CHANNELS = {"browser": Channel.WEB, "mobile": Channel.APP, "client": Channel.WEB}
_LIBRARY_CHANNELS = (
    ("analytics.js", Channel.WEB),
    ("analytics-next", Channel.WEB),
    ("rudder-js", Channel.WEB),
    ("analytics-ios", Channel.APP),
    ("analytics-android", Channel.APP),
    ("analytics-react-native", Channel.APP),
    ("analytics-flutter", Channel.APP),
    ("analytics-swift", Channel.APP),
    ("analytics-kotlin", Channel.APP),
)
CHANNELS = frozenset(Channel.values)


@dataclass(slots=True)
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    message_ids: list[str] = field(default_factory=list)


def _new_write_key() -> str:
    return secrets.token_urlsafe(24)


def source_create(*, workspace: Workspace, name: str, channel: str = Channel.WEB, actor: Any) -> Source:
    """Create a source with a fresh write key (owners and admins), audited in the same transaction."""
    authorize(actor=actor, workspace=workspace, perm=Perm.SOURCES)
    name = (name or "").strip()
    if not name:
        raise ValidationError("source name must not be empty", field="name")
    if len(name) > 200:
        raise ValidationError("source name is longer than 200 characters", field="name")
    if "\x00" in name:
        # PostgreSQL cannot store U+0000 in text: a 400 naming the field, not a database error.
        raise ValidationError("name: must not contain the NUL character (U+0000)", field="name")
    if channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(sorted(CHANNELS))}", field="channel")
    with transaction.atomic():
        source = Source.objects.create(workspace=workspace, name=name, channel=channel, write_key=_new_write_key())
        audit_record(
            workspace=workspace, actor=actor, action="source.created", target=name,
            data={"id": source.pk, "channel": channel},
        )
    return source


def source_rotate_key(*, source: Source, actor: Any) -> Source:
    """Give a source a new write key (owners and admins); the old one stops working at once. Audited in
    the same transaction."""
    authorize(actor=actor, workspace=source.workspace, perm=Perm.SOURCES)
    with transaction.atomic():
        source.write_key = _new_write_key()
        source.rotated_at = clock.now()
        source.save(update_fields=["write_key", "rotated_at"])
        audit_record(
            workspace=source.workspace, actor=actor, action="source.key_rotated", target=source.name,
            data={"id": source.pk},
        )
    return source


def event_channel(*, source: Source, context: dict[str, Any]) -> str:
    """The touchpoint of an event: ``context.channel`` when it names one, else what the SDK library
    implies, else the source's channel."""
    declared = context.get("channel")
    if isinstance(declared, str):
        folded = declared.strip().lower()
        if folded in CHANNELS:
            return folded
        if folded in _CONTEXT_CHANNELS:
            return _CONTEXT_CHANNELS[folded]
    library = context.get("library")
    if isinstance(library, dict) and isinstance(library.get("name"), str):
        lib = library["name"].lower()
        for prefix, channel in _LIBRARY_CHANNELS:
            if lib.startswith(prefix):
                return channel
    return source.channel


def event_timestamp(*, event: ParsedEvent, received_at: dt.datetime) -> dt.datetime:
    """Segment's clock-skew correction: timestamp = receivedAt − (sentAt − originalTimestamp)."""
    if event.original_timestamp is None:
        return received_at
    if event.sent_at is None:
        return event.original_timestamp
    try:
        return received_at - (event.sent_at - event.original_timestamp)
    except OverflowError:
        # A device clock off by millennia: the correction leaves the calendar; keep what the device said.
        return event.original_timestamp


def _identity_keys(event: ParsedEvent) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    keys: list[tuple[str, str]] = []
    lookup_only: list[tuple[str, str]] = []
    user_id = normalize_id(event.user_id)
    if user_id:
        keys.append((IdentityType.USER_ID, user_id))
    trait_sources = [event.traits] if event.type == "identify" else []
    ctx_traits = event.context.get("traits")
    if isinstance(ctx_traits, dict):
        trait_sources.append(ctx_traits)
    for traits in trait_sources:
        email = normalize_email(traits.get("email"))
        if email:
            keys.append((IdentityType.EMAIL, email))
        phone = normalize_phone(traits.get("phone"))
        if phone:
            keys.append((IdentityType.PHONE, phone))
    external = event.context.get("externalIds")
    if isinstance(external, list):
        for item in external[:20]:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                continue
            kind = item["type"].strip().lower()
            if kind == "email":
                value = normalize_email(item.get("id"))
            elif kind == "phone":
                value = normalize_phone(item.get("id"))
            elif kind in ("user_id", "userid"):
                kind, value = IdentityType.USER_ID, normalize_id(item.get("id"))
            else:
                value = normalize_id(item.get("id"))
                kind = IdentityType.EXTERNAL_PREFIX + kind[:50]
            if value:
                keys.append((kind, value))
    anonymous_id = normalize_id(event.anonymous_id)
    if anonymous_id:
        keys.append((IdentityType.ANONYMOUS_ID, anonymous_id))
    if event.type == "alias":
        previous = normalize_id(event.previous_id)
        if previous:
            keys.append((IdentityType.ANONYMOUS_ID, previous))
            lookup_only.append((IdentityType.USER_ID, previous))
    unique = list(dict.fromkeys(keys))
    unique.sort(key=lambda k: IdentityType.priority(k[0]))
    return unique, lookup_only


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
_INGEST_LOCK_CLASS = 0x7453  # first key of PostgreSQL advisory locks taken by ingestion ("tS")


def _insert_events(rows: list[tuple[Any, ...]], vendor: str) -> None:
    """One parameterised INSERT run with executemany: the ORM's bulk_create spent more time building model
    instances and adapting their fields than SQLite spent storing them.

    ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike): on PostgreSQL a concurrent request may store the
    same messageId between our duplicate check and this insert; the unique constraint keeps exactly one."""
    if not rows:
        return
    quote = connection.ops.quote_name
    json_ph = json_placeholder(vendor)
    placeholders = ", ".join(json_ph if c in _EVENT_JSON_COLUMNS else "%s" for c in _EVENT_COLUMNS)
    sql = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(quote(c) for c in _EVENT_COLUMNS)}) "  # noqa: S608
        f"VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def events_ingest(
    *, source: Source, events: list[ParsedEvent], received_at: dt.datetime | None = None
) -> IngestResult:
    """Store validated events and update the profiles they touch, in one transaction.

    A messageId already stored in the workspace (or repeated within the batch) is counted as a duplicate
    and not stored again, so SDK retries are harmless.

    On SQLite, concurrent calls share commits (``group_commit``): a call returns only once the transaction
    holding its events has committed — fsync'd, with synchronous=FULL — so an acknowledged event is on disk.
    """
    received = received_at or clock.now()
    if not events:
        return IngestResult()
    # Everything that does not depend on the database is done before taking the write lock, so that
    # requests of other processes prepare their batches while this one is written.
    prepared = _prepare(source, events, received)
    if group_commit.applies(connection):
        return group_commit.run(lambda: _apply(source, prepared))
    with transaction.atomic():
        return _apply(source, prepared)


@dataclass(slots=True)
class _Prepared:
    message_id: str
    touch: Touch
    # The event's row without customer_id (known only once its profile is resolved): the columns before
    # it and the columns after it.
    head: tuple[Any, ...]
    tail: tuple[Any, ...]


def _prepare(source: Source, events: list[ParsedEvent], received_at: dt.datetime) -> list[_Prepared]:
    vendor = connection.vendor
    received = datetime_param(received_at, vendor)
    workspace_id, source_id = source.workspace_id, source.pk
    out = []
    for event in events:
        keys, lookup_only = _identity_keys(event)
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
        out.append(_Prepared(event.message_id, touch, head, tail))
    return out


def _apply(source: Source, events: list[_Prepared]) -> IngestResult:
    """The database half of ``events_ingest``, inside the caller's transaction."""
    result = IngestResult()
    workspace = source.workspace
    if connection.vendor == "postgresql":
        # Resolution reads profiles and writes them back whole: two concurrent ingests into one workspace
        # would race (two profiles for one new userId, an event counted twice, lost counts). One at a time
        # per workspace — what SQLite's single writer gives — until commit releases the lock.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_INGEST_LOCK_CLASS, workspace.pk])
    wanted = list({e.message_id for e in events})
    existing: set[str] = set()
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            cursor.execute(
                f"SELECT message_id FROM {table} WHERE workspace_id = %s "  # noqa: S608
                f"AND message_id IN ({', '.join(['%s'] * len(chunk))})",
                [workspace.pk, *chunk],
            )
            existing.update(row[0] for row in cursor.fetchall())
    fresh: list[_Prepared] = []
    for event in events:
        if event.message_id in existing:
            result.duplicates += 1
            continue
        existing.add(event.message_id)
        fresh.append(event)

    profiles = ProfileBatch(workspace=workspace)
    all_keys: set[tuple[str, str]] = set()
    for event in fresh:
        all_keys.update(event.touch.keys)
        all_keys.update(event.touch.lookup_only)
    profiles.load(all_keys)
    owners = [profiles.resolve(event.touch) for event in fresh]
    merges = profiles.flush()
    for merge in merges:
        moved = Event.objects.filter(customer_id=merge.other_id).update(customer_id=merge.into_id)
        merge_note_events(merge=merge, events_moved=moved)

    rows = [
        (*event.head, profiles.customer_id_of(owner), *event.tail)
        for event, owner in zip(fresh, owners, strict=True)
    ]
    _insert_events(rows, connection.vendor)
    result.stored = len(rows)
    result.message_ids = [event.message_id for event in fresh]
    return result
