"""Writes of the events app: sources, and the entry of events into tsunagu.

``events_append`` is the one way in: the tracking API, the demo loader, imports and (later) channel webhooks
all call it. It stores validated events in the ingest log (``tsunagu.events.log``) and returns once they
are durable; the applier (``tsunagu.events.applier``) then dedups them, resolves identities, updates
profiles and the timeline and runs the reactions, in order, behind. See docs/ingestion.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from tsunagu.core import clock
from tsunagu.core.errors import TsunaguError, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.events import codec
from tsunagu.events.apply import AppliedEvent, Derived, derived_store
from tsunagu.events.log import get_log
from tsunagu.events.models import Channel, Source
from tsunagu.events.selectors import ingestion_pending
from tsunagu.events.timing import CHANNELS
from tsunagu.events.validation import FieldError, ParsedEvent

log = logging.getLogger(__name__)


class Backlogged(TsunaguError):
    """The workspace's applier is too far behind: the client should retry later (HTTP 429)."""

    http_status = 429
    exit_code = 1

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, field=None)
        self.retry_after = retry_after


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


def system_source(*, workspace: Workspace, name: str, channel: str = Channel.BACKOFFICE) -> Source:
    """The workspace's source named ``name`` for tsunagu's own events (messaging's, segments'), created on
    first use by the system."""
    from tsunagu.core.permissions import SYSTEM

    source = Source.objects.filter(workspace=workspace, name=name).order_by("pk").first()
    return source or source_create(workspace=workspace, name=name, channel=channel, actor=SYSTEM)


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


# How long a process trusts its last look at a workspace's backlog (TSUNAGU_INGEST_BACKLOG_TTL seconds):
# counting it on every request would cost more than the append it guards.
_backlog: dict[int, tuple[float, int]] = {}
_backlog_lock = threading.Lock()


def _check_backlog(workspace_id: int) -> None:
    limit = int(settings.TSUNAGU_INGEST_MAX_PENDING)
    if limit <= 0:
        return
    now = time.monotonic()
    seen = _backlog.get(workspace_id)
    if seen is None or now - seen[0] >= float(settings.TSUNAGU_INGEST_BACKLOG_TTL):
        pending = ingestion_pending(workspace_id=workspace_id)[0]
        with _backlog_lock:
            _backlog[workspace_id] = (now, pending)
    else:
        pending = seen[1]
    if pending >= limit:
        raise Backlogged(
            f"the workspace has {pending} events waiting to be applied (limit {limit}); retry later",
            retry_after=int(settings.TSUNAGU_INGEST_RETRY_AFTER),
        )


def system_events_append(*, name: str, payloads: dict[int, list[dict[str, Any]]]) -> int:
    """Append tsunagu's own events — Segment-spec payloads an outbox built, {workspace id: payloads} — to
    the ingest log under each workspace's system source ``name``, without the backlog check (an outbox
    drains behind the applier, it does not compete with customers' traffic). Built from our own rows, a
    payload that fails validation is a bug: logged and skipped, never a reason to stop the outbox. Not in a
    transaction on SQLite (the log is another store). Returns how many were appended."""
    from tsunagu.events.validation import Invalid, parse_event

    workspaces = Workspace.objects.in_bulk(list(payloads))
    appended = 0
    for workspace_id, items in payloads.items():
        parsed = []
        for payload in items:
            try:
                parsed.append(parse_event(payload, type_=None, where="", max_bytes=32 * 1024))
            except Invalid as exc:
                log.warning("%s event %s not appended: %s", name, payload.get("messageId"), exc.errors[:1])
        if parsed and workspace_id in workspaces:
            events_append(source=system_source(workspace=workspaces[workspace_id], name=name), events=parsed,
                          check_backlog=False)
            appended += len(parsed)
    return appended


def events_derive(*, source: Source, events: list[Derived]) -> list[AppliedEvent]:
    """Store events that a reaction derives about customers it already knows (a segment's entries and
    exits), inside the applier's transaction, and return them as reactions see events: the applier's
    later reactions (journeys) take them in the same transaction, so a ``Segment Entered`` starts its run in
    the commit of the event that caused it. Nothing goes through the ingest log: no dedup (their messageIds
    are unique by construction), no identity resolution, no profile change. Must run in a transaction; an
    error propagates and rolls the caller's chunk back."""
    return derived_store(source, events)


def events_append(
    *,
    source: Source,
    events: list[ParsedEvent] | codec.Encoded,
    received_at: dt.datetime | None = None,
    check_backlog: bool = True,
) -> int:
    """Append validated events of one source to the ingest log; return the log record's id once it is
    durable (fsync'd on SQLite, committed on PostgreSQL). Nothing else is written: no profile is read.
    ``events`` may come already encoded for the log (``codec.Encoded``, the tracking API's fast path).

    Raises ``Backlogged`` (nothing stored) when the workspace's backlog is past
    ``TSUNAGU_INGEST_MAX_PENDING``; bulk loaders that drain the applier themselves pass
    ``check_backlog=False``. Not for use inside a transaction on SQLite: the log is another database."""
    if isinstance(events, codec.Encoded):
        count, body = events.count, events.body
    else:
        count, body = len(events), codec.encode(events)
    if not count:
        return 0
    if check_backlog:
        _check_backlog(source.workspace_id)
    return get_log().append(
        workspace_id=source.workspace_id,
        source_id=source.pk,
        received_at=received_at or clock.now(),
        count=count,
        body=body,
    )


@dataclass(slots=True)
class ImportResult:
    appended: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, message)


def events_import(
    *, source: Source, lines: Iterable[bytes | str], batch_size: int = 500, on_wait: Any = None
) -> ImportResult:
    """Bulk path for history (``tsunagu import``): one Segment event per line (NDJSON), validated exactly
    as ``/v1/batch`` validates, appended to the ingest log in batches — the applier then applies them like
    any other events. Invalid lines are skipped and reported with their line number; the valid ones are
    kept. When the workspace's backlog is past its bound, waits ``Retry-After`` seconds and retries (calling
    ``on_wait(seconds)`` first), so an import never drops an event and never floods the log."""
    from tsunagu.events.validation import NUL_MESSAGE, Invalid, nul_path, parse_event

    result = ImportResult()
    pending: list[ParsedEvent] = []

    def flush() -> None:
        while pending:
            try:
                events_append(source=source, events=pending)
            except Backlogged as exc:
                if on_wait is not None:
                    on_wait(exc.retry_after)  # may make room itself (``tsunagu import --apply``)
                if ingestion_pending(workspace_id=source.workspace_id)[0] >= int(settings.TSUNAGU_INGEST_MAX_PENDING):
                    time.sleep(exc.retry_after)
                _backlog.pop(source.workspace_id, None)  # look again rather than trust the cached count
                continue
            result.appended += len(pending)
            pending.clear()

    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            result.rejected.append((number, "line", f"not valid JSON: {exc}"))
            continue
        try:
            if not isinstance(payload, dict):
                raise Invalid([FieldError("line", "must be a JSON object (one event)")])
            if (where := nul_path(payload, "")) is not None:
                raise Invalid([FieldError(where, NUL_MESSAGE)])
            pending.append(parse_event(payload, type_=None, where="", max_bytes=settings.TSUNAGU_MAX_EVENT_BYTES))
        except Invalid as inv:
            first = inv.errors[0]
            result.rejected.append((number, first.field, first.message))
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return result


def ingest_lock(workspace: Workspace) -> None:
    """Keep the workspace's applier out until the current transaction ends: what a job that must see all
    applied events and none half-applied takes (a computed trait's backfill). On PostgreSQL the advisory
    lock the applier takes itself; on SQLite the transaction is already the one writer (immediate mode)."""
    from django.db import connection

    from tsunagu.events.apply import _INGEST_LOCK_CLASS

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_INGEST_LOCK_CLASS, workspace.pk])
