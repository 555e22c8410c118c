"""Writes of segments: create, change and delete a segment (its first population and re-evaluation included),
the scheduled refresh of rules that time alone can change, and publishing entries and exits to the timeline."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction

from tsunagu.core import clock
from tsunagu.core.errors import Conflict, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.customers.models import Customer
from tsunagu.customers.selectors import event_identities
from tsunagu.events.apply import SEGMENT_CHANGE_PREFIX, AppliedEvent, Derived
from tsunagu.events.services import events_derive, system_events_append, system_source
from tsunagu.segments.membership import Sync, membership_sync
from tsunagu.segments.models import ChangeReason, MembershipChange, Segment
from tsunagu.segments.rule import Parsed, rule_parse
from tsunagu.segments.rule.values import Context
from tsunagu.segments.selectors import catalog, rule_warnings

KEY_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
SOURCE_NAME = "tsunagu segments"
_INGEST_LOCK_CLASS = 0x7453  # the applier's advisory lock (events.apply): one writer of a workspace's profiles


def ingest_lock(workspace: Workspace) -> None:
    """Inside a transaction: keep the applier of ``workspace`` out until commit (PostgreSQL; on SQLite the
    IMMEDIATE transaction already holds the only write lock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_INGEST_LOCK_CLASS, workspace.pk])


def _clean(workspace: Workspace, *, key: str | None, name: str, rule: Any, description: str, webhook_url: str,
           own_key: str) -> Parsed:
    if key is not None and not (isinstance(key, str) and KEY_RE.fullmatch(key)):
        raise ValidationError("key: lower-case letters, digits, - and _, up to 100 characters", field="key")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
        raise ValidationError("name: 1 to 200 characters", field="name")
    if not isinstance(description, str) or len(description) > 5000 or "\x00" in description:
        raise ValidationError("description: at most 5000 characters", field="description")
    if webhook_url and not (isinstance(webhook_url, str) and re.fullmatch(r"https?://[^\s]{1,1990}", webhook_url)):
        raise ValidationError("webhook_url: an http or https URL", field="webhook_url")
    parsed = rule_parse(rule)
    _refuse_cycles(workspace, own_key, parsed)
    return parsed


def _refuse_cycles(workspace: Workspace, own_key: str, parsed: Parsed) -> None:
    """A rule may not reach its own segment through ``{"segment": …}``, directly or through others."""
    graph = {s.key: set(s.deps.get("segments", [])) for s in Segment.objects.filter(workspace=workspace)}
    graph[own_key] = set(parsed.deps.segments)
    stack, seen = list(graph[own_key]), set()
    while stack:
        key = stack.pop()
        if key == own_key:
            raise ValidationError(f"rule: segment “{own_key}” would refer to itself", field="rule")
        if key not in seen:
            seen.add(key)
            stack.extend(graph.get(key, ()))


def _populate(segment: Segment, reason: str) -> Sync:
    workspace = segment.workspace
    ctx = Context(now=clock.now(), tz=workspace.timezone or "Asia/Tokyo")
    sync = membership_sync(segment=segment, candidates=None, reason=reason, ctx=ctx, cat=catalog(workspace))
    Segment.objects.filter(pk=segment.pk).update(refreshed_at=ctx.now)
    segment.refresh_from_db(fields=["member_count", "refreshed_at"])
    return sync


def segment_create(
    *, workspace: Workspace, key: str, name: str, rule: Any, description: str = "", webhook_url: str = "",
    actor: Any,
) -> tuple[Segment, list[dict[str, Any]]]:
    """Create a segment and its first members (history reason ``created``, not published as events), with
    the rule's warnings. One transaction, holding the applier out (``ingest_lock``), audited. Raises
    ValidationError naming the field (``$.all[0].op`` for the rule), Conflict for a key in use."""
    authorize(actor=actor, workspace=workspace, perm=Perm.SEGMENTS)
    parsed = _clean(workspace, key=key, name=name, rule=rule, description=description, webhook_url=webhook_url,
                    own_key=key)
    warnings = rule_warnings(workspace=workspace, parsed=parsed)
    with transaction.atomic():
        ingest_lock(workspace)
        if Segment.objects.filter(workspace=workspace, key=key).exists():
            raise Conflict(f"a segment “{key}” exists", field="key")
        segment = Segment.objects.create(
            workspace=workspace, key=key, name=name.strip(), description=description, rule=rule,
            deps=parsed.deps.as_json(), time_dependent=parsed.time_dependent, webhook_url=webhook_url,
        )
        _populate(segment, ChangeReason.CREATED)
        audit_record(workspace=workspace, actor=actor, action="segment.created", target=key,
                     data={"rule": rule, "members": segment.member_count})
    return segment, warnings


def segment_update(
    *, segment: Segment, actor: Any, name: str | None = None, rule: Any = None, description: str | None = None,
    webhook_url: str | None = None,
) -> tuple[Segment, list[dict[str, Any]]]:
    """Change a segment; a new rule re-evaluates every customer (history reason ``edited``). One
    transaction holding the applier out, audited with the rule before and after."""
    workspace = segment.workspace
    authorize(actor=actor, workspace=workspace, perm=Perm.SEGMENTS)
    new_rule = segment.rule if rule is None else rule
    parsed = _clean(workspace, key=None, name=segment.name if name is None else name, rule=new_rule,
                    description=segment.description if description is None else description,
                    webhook_url=segment.webhook_url if webhook_url is None else webhook_url, own_key=segment.key)
    warnings = rule_warnings(workspace=workspace, parsed=parsed)
    with transaction.atomic():
        ingest_lock(workspace)
        before = segment.rule
        if name is not None:
            segment.name = name.strip()
        if description is not None:
            segment.description = description
        if webhook_url is not None:
            segment.webhook_url = webhook_url
        segment.rule, segment.deps, segment.time_dependent = new_rule, parsed.deps.as_json(), parsed.time_dependent
        segment.updated_at = clock.now()
        segment.save()
        if rule is not None and rule != before:
            _populate(segment, ChangeReason.EDITED)
        audit_record(workspace=workspace, actor=actor, action="segment.updated", target=segment.key,
                     data={"before": before, "after": new_rule})
    return segment, warnings


def segment_delete(*, segment: Segment, actor: Any) -> None:
    """Delete a segment with its members and history; refused (Conflict) while another segment's rule
    refers to it. Audited."""
    workspace = segment.workspace
    authorize(actor=actor, workspace=workspace, perm=Perm.SEGMENTS)
    users = [s.key for s in Segment.objects.filter(workspace=workspace).exclude(pk=segment.pk)
             if segment.key in s.deps.get("segments", [])]
    if users:
        raise Conflict(f"segment “{segment.key}” is used by {', '.join(sorted(users))}", field="key")
    with transaction.atomic():
        ingest_lock(workspace)
        audit_record(workspace=workspace, actor=actor, action="segment.deleted", target=segment.key,
                     data={"rule": segment.rule, "members": segment.member_count})
        segment.delete()


def segments_refresh(*, workspace: Workspace, now: dt.datetime | None = None, every: bool = False) -> dict[str, Sync]:
    """Re-evaluate, for every customer, the segments that time alone can change ("no order in the last
    90 days"; ``every`` for all segments), after the computed traits' own refresh; changes are published
    (reason ``refresh``). One transaction holding the applier out."""
    from tsunagu.segments.computed import computed_refresh

    now = now or clock.now()
    out: dict[str, Sync] = {}
    with transaction.atomic():
        ingest_lock(workspace)
        changed = computed_refresh(workspace=workspace, now=now)
        ctx = Context(now=now, tz=workspace.timezone or "Asia/Tokyo")
        cat = catalog(workspace)
        from tsunagu.segments.membership import ordered

        moved: dict[str, set[int]] = {}
        for segment in ordered(list(Segment.objects.filter(workspace=workspace).select_related("workspace"))):
            reads_changed = any(changed.get(k) for k in segment.deps.get("computed", [])) or any(
                moved.get(k) for k in segment.deps.get("segments", []))
            if not (every or segment.time_dependent or reads_changed):
                continue
            sync = membership_sync(segment=segment, candidates=None, reason=ChangeReason.REFRESH, ctx=ctx, cat=cat,
                                   now=now)
            Segment.objects.filter(pk=segment.pk).update(refreshed_at=now)
            out[segment.key] = sync
            moved[segment.key] = sync.entered | sync.exited
    return out


def segments_reevaluate(*, workspace: Workspace, customer_ids: list[int], reason: str = ChangeReason.CONSENT) -> None:
    """Re-evaluate, for some customers, the segments a change made outside the applier can move (a consent
    decision through the API: the segments whose rule asks for consent). In the caller's transaction (or
    one of its own), holding the applier out."""
    from tsunagu.segments.membership import ordered

    if not customer_ids:
        return
    if not Segment.objects.filter(workspace=workspace).exists():
        return
    with transaction.atomic():
        ingest_lock(workspace)
        ctx = Context(now=clock.now(), tz=workspace.timezone or "Asia/Tokyo")
        cat = catalog(workspace)
        segments = list(Segment.objects.filter(workspace=workspace).select_related("workspace"))
        wanted = {s.key for s in segments if s.deps.get("consent")}
        if not wanted:
            return
        moved: dict[str, set[int]] = {}
        for segment in ordered(segments):
            if segment.key not in wanted and not any(moved.get(k) for k in segment.deps.get("segments", [])):
                continue
            sync = membership_sync(segment=segment, candidates=customer_ids, reason=reason, ctx=ctx, cat=cat)
            moved[segment.key] = sync.entered | sync.exited


# -- the timeline -----------------------------------------------------------------------------------------

def _change_payload(change: tuple[Any, ...], who: dict[str, Any]) -> dict[str, Any]:
    pk, _ws, _customer, entered, at, reason, key, name = change
    who = dict(who)
    context = {"channel": "backoffice", **who.pop("context", {})}
    return {
        "type": "track",
        "event": "Segment Entered" if entered else "Segment Exited",
        "messageId": f"{SEGMENT_CHANGE_PREFIX}{pk}",
        "timestamp": at.isoformat(),
        "properties": {"segment": key, "segment_name": name, "reason": reason},
        "context": context,
        **who,
    }


def segment_changes_derive(*, workspace: Workspace, syncs: Iterable[Sync]) -> list[AppliedEvent]:
    """Store the ``Segment Entered`` / ``Segment Exited`` events of changes the applier's reaction just made
    (``Sync.changes``) on the customers' timelines, in the applier's transaction, and return them for the
    later reactions (journeys start from them in the same commit). The outbox round trip through the
    ingest log would apply each one as a whole new event. Raises what the insert raises (the chunk rolls
    back with the changes)."""
    syncs = [sync for sync in syncs if sync.changes]
    if not syncs:
        return []
    users = dict(Customer.objects.filter(pk__in={c for sync in syncs for _, c, _ in sync.changes})
                 .values_list("pk", "user_id"))
    derived = []
    for sync in syncs:
        assert sync.segment is not None and sync.at is not None  # set by membership_sync
        properties = {"segment": sync.segment.key, "segment_name": sync.segment.name, "reason": sync.reason}
        derived += [
            Derived(message_id=f"{SEGMENT_CHANGE_PREFIX}{pk}", event="Segment Entered" if entered else "Segment Exited",
                    customer_id=customer_id, user_id=users.get(customer_id, ""), timestamp=sync.at,
                    properties=dict(properties))
            for pk, customer_id, entered in sync.changes
        ]
    return events_derive(source=system_source(workspace=workspace, name=SOURCE_NAME), events=derived)


def segment_changes_publish(*, limit: int = 1000) -> int:
    """Append unpublished entries and exits to the ingest log as ``Segment Entered`` / ``Segment Exited``
    events (the applier puts them on the timeline, where journeys start from them), then mark them. Not in
    a transaction: the log is its own store on SQLite; a crash between append and mark appends again, and
    the applier drops the duplicate by its messageId. Returns how many were marked."""
    # Plain tuples, not model instances: a busy workspace turns thousands of changes a second into events.
    rows = list(MembershipChange.objects.filter(published_at__isnull=True).order_by("id").values_list(
        "pk", "workspace_id", "customer_id", "entered", "at", "reason", "segment__key", "segment__name")[:limit])
    if not rows:
        return 0
    who_of = event_identities(customer_ids=(r[2] for r in rows))
    payloads: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        who = who_of.get(row[2])
        if who:  # else the customer was deleted since: nobody to put the event on
            payloads.setdefault(row[1], []).append(_change_payload(row, who))
    system_events_append(name=SOURCE_NAME, payloads=payloads)
    done = MembershipChange.objects.filter(pk__in=[r[0] for r in rows]).update(published_at=clock.now())
    return done
