"""Keeping segment membership true: evaluate a segment for some customers (or all), write who entered and who
left, and — inside the applier's transaction — work out which segments an applied chunk can have changed.

Every function here runs inside the caller's transaction (the applier's, or a service's): membership, its
history and the outbox rows commit with the events or changes that caused them, or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F

from tsunagu.core import clock
from tsunagu.core.models import Workspace
from tsunagu.segments import sql
from tsunagu.segments.facts import ChunkFacts
from tsunagu.segments.models import ChangeReason, Membership, MembershipChange, Segment
from tsunagu.segments.rule import Parsed, rule_parse
from tsunagu.segments.rule.partial import Decide, rule_decider
from tsunagu.segments.rule.sql import Catalog
from tsunagu.segments.rule.values import Context
from tsunagu.segments.selectors import catalog, rule_member_ids

_CHUNK = 5000
# Reasons whose changes reach the timeline as events (and the segment's webhook); a segment's first
# population and a rule edit are history only — thousands of "entered" events nobody's action caused
# would start journeys for everyone at once.
_PUBLISHED = {ChangeReason.EVENT, ChangeReason.REFRESH, ChangeReason.CONSENT}
_parsed_cache: dict[tuple[int, str], Parsed] = {}


def parsed_rule(segment: Segment) -> Parsed:
    """The segment's parsed rule, cached per (segment, updated_at): the applier parses each rule once."""
    key = (segment.pk, segment.updated_at.isoformat())
    found = _parsed_cache.get(key)
    if found is None:
        if len(_parsed_cache) > 2000:
            _parsed_cache.clear()
        found = _parsed_cache[key] = rule_parse(segment.rule)
    return found


@dataclass
class Sync:
    entered: set[int] = field(default_factory=set)
    exited: set[int] = field(default_factory=set)
    # The history rows written, (id, customer, entered), when the caller turns them into events itself
    # (``derive``); all of one segment, time and reason.
    changes: list[tuple[int, int, bool]] = field(default_factory=list)
    segment: Segment | None = None
    at: dt.datetime | None = None
    reason: str = ""


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def membership_sync(
    *, segment: Segment, candidates: list[int] | None, reason: str, ctx: Context, cat: Catalog,
    now: dt.datetime | None = None, derive: bool = False, current: dict[int, set[int]] | None = None,
    facts: ChunkFacts | None = None,
) -> Sync:
    """Evaluate ``segment`` for ``candidates`` (every customer of the workspace when None) and record who
    entered and who left, with ``reason``. In the caller's transaction. With ``derive`` the changes are
    returned in ``Sync.changes`` and marked published: the caller (the applier's reaction) stores their
    events in the same transaction instead of the outbox. ``current``: the candidates' memberships of every
    segment, read once for a chunk (``sql.members_read``), instead of a read per segment. ``facts``: the
    chunk's customers read once (``ChunkFacts``); the rule is then decided in Python for each candidate where
    it can be (``rule.partial``) and only the undecided ones are asked of the SQL."""
    now = now or clock.now()
    parsed = parsed_rule(segment)
    workspace = segment.workspace
    sync = Sync(segment=segment, at=now, reason=reason)
    if candidates is None:
        matched = set(rule_member_ids(workspace=workspace, rule=parsed, ctx=ctx, cat=cat))
        members = set(Membership.objects.filter(segment=segment).values_list("customer_id", flat=True))
        sync.entered, sync.exited = matched - members, members - matched
    else:
        decide = rule_decider(parsed.node, ctx) if facts is not None else None
        for part in _chunks(sorted(set(candidates))):
            if decide is None:
                matched = set(rule_member_ids(workspace=workspace, rule=parsed, ctx=ctx, cat=cat, restrict=part))
            else:
                assert facts is not None
                matched, undecided = _decided(facts, decide, part)
                if undecided:
                    matched |= set(rule_member_ids(workspace=workspace, rule=parsed, ctx=ctx, cat=cat,
                                                   restrict=undecided))
            if current is None:
                now_in = sql.members_read(customer_ids=part, segment_id=segment.pk).get(segment.pk, set())
            else:
                now_in = current.get(segment.pk, set()).intersection(part)
            sync.entered |= matched - now_in
            sync.exited |= now_in - matched
    _write(segment, sync, reason, now, derive)
    return sync


def _decided(facts: ChunkFacts, decide: Decide, part: list[int]) -> tuple[set[int], list[int]]:
    """The members among ``part`` by the chunk's facts, and the customers they leave undecided."""
    matched: set[int] = set()
    undecided: list[int] = []
    facts.prepare(part)
    for cid in part:
        view = facts.view(cid)
        verdict = False if view is None else decide(view)
        if verdict is None:
            undecided.append(cid)
        elif verdict:
            matched.add(cid)
    return matched, undecided


def _write(segment: Segment, sync: Sync, reason: str, now: dt.datetime, derive: bool) -> None:
    if not sync.entered and not sync.exited:
        return
    ws = segment.workspace_id
    sql.members_insert(workspace_id=ws, segment_id=segment.pk, customer_ids=sorted(sync.entered), at=now)
    sql.members_delete(segment_id=segment.pk, customer_ids=sorted(sync.exited))
    published = reason in _PUBLISHED
    pending = published and not derive
    rows = [(c, entered) for entered, ids in ((True, sync.entered), (False, sync.exited)) for c in sorted(ids)]
    ids = sql.changes_insert(workspace_id=ws, segment_id=segment.pk, rows=rows, at=now, reason=reason,
                             published_at=None if pending else now,
                             webhook_pending=published and bool(segment.webhook_url))
    if derive and published:
        sync.changes = [(pk, c, entered) for pk, (c, entered) in zip(ids, rows, strict=True)]
    Segment.objects.filter(pk=segment.pk).update(member_count=F("member_count") + len(sync.entered) - len(sync.exited))


def ordered(segments: list[Segment]) -> list[Segment]:
    """Segments with every segment a rule refers to before the rule's own (``{"segment": "vip"}``), so
    one pass sees this chunk's changes of the segments it reads. Cycles are refused when saved."""
    by_key = {s.key: s for s in segments}
    out: list[Segment] = []
    state: dict[str, int] = {}

    def visit(seg: Segment) -> None:
        if state.get(seg.key) == 2:
            return
        state[seg.key] = 1
        for ref in seg.deps.get("segments", []):
            if ref in by_key and state.get(ref) != 1:
                visit(by_key[ref])
        state[seg.key] = 2
        out.append(seg)

    for seg in segments:
        visit(seg)
    return out


@dataclass
class Touched:
    """What one applied chunk changed, per customer: the inputs of ``candidates``."""

    any_event: set[int] = field(default_factory=set)
    identified: set[int] = field(default_factory=set)
    events: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    computed: dict[str, set[int]] = field(default_factory=dict)
    merged_into: set[int] = field(default_factory=set)


def touched_from(events: Iterable[Any], merges: list[tuple[int, int]], computed: dict[str, set[int]],
                 derived: bool = False) -> Touched:
    """``derived``: the events are tsunagu's own (``Segment Entered``), which change no profile field."""
    t = Touched(computed=computed)
    for e in events:
        cid = e.customer_id
        if cid is None:
            continue
        if not derived:
            t.any_event.add(cid)
        if e.type == "identify":
            t.identified.add(cid)
        elif e.type == "track":
            t.events.setdefault(("track", e.event), set()).add(cid)
        elif e.type in ("page", "screen"):
            t.events.setdefault((e.type, e.name), set()).add(cid)
    t.merged_into = {into for into, _ in merges}
    return t


def candidates(segment: Segment, touched: Touched, changed: dict[str, set[int]]) -> set[int]:
    """The customers whose membership of ``segment`` the chunk can have changed."""
    deps = segment.deps
    out = set(touched.merged_into)
    if deps.get("fields"):
        out |= touched.any_event  # $last_seen, $event_count… move with every event
    if deps.get("traits") or deps.get("consent"):
        out |= touched.identified
    for type_, name in deps.get("events", []):
        out |= touched.events.get((type_, name), set())
    for key in deps.get("computed", []):
        out |= touched.computed.get(key, set())
    for key in deps.get("segments", []):
        out |= changed.get(key, set())
    return out


def memberships_apply(*, workspace: Workspace, events: list[Any], merges: list[tuple[int, int]],
                      computed: dict[str, set[int]], derived: bool = False,
                      segments: list[Segment] | None = None) -> dict[str, Sync]:
    """The applier's part: re-evaluate each segment for the customers the chunk touched (in the applier's
    transaction); each ``Sync.changes`` holds the published changes, whose events the caller stores. A
    profile merged away leaves its segments silently (its events now belong to the profile it was merged
    into, which is re-evaluated). ``derived``: the events are the segment events of an earlier pass."""
    if segments is None:
        segments = list(Segment.objects.filter(workspace=workspace).select_related("workspace"))
    if not segments:
        return {}
    now = clock.now()
    gone = [other for _, other in merges]
    if gone:
        _leave_merged(workspace, gone, now)
    touched = touched_from(events, merges, computed, derived)
    cat = catalog(workspace)
    ctx = Context(now=now, tz=workspace.timezone or "Asia/Tokyo")
    changed: dict[str, set[int]] = {}
    results: dict[str, Sync] = {}
    # Every segment's members among the chunk's customers in one read; a segment's own sync is the only
    # writer of its rows here, so the read stays true for it however many segments move before it.
    reach = touched.any_event | touched.identified | touched.merged_into
    for group in (touched.events, touched.computed):
        for ids in group.values():
            reach |= ids
    current = sql.members_read(customer_ids=sorted(reach))
    # The chunk's events count towards an event condition only where they belong to the customer they name:
    # a merge in the chunk moves events between profiles, so then the SQL decides event conditions.
    facts = ChunkFacts(catalog=cat, current=current, events=[] if merges else events)
    for segment in ordered(segments):
        cands = candidates(segment, touched, changed)
        if not cands:
            continue
        sync = membership_sync(segment=segment, candidates=list(cands), reason=ChangeReason.EVENT, ctx=ctx, cat=cat,
                               now=now, derive=True, current=current, facts=facts)
        results[segment.key] = sync
        changed[segment.key] = sync.entered | sync.exited
        # Later segments that read this one ({"segment": …}) see its moves, as the SQL would.
        members = current.setdefault(segment.pk, set())
        members |= sync.entered
        members -= sync.exited
    return results


def _leave_merged(workspace: Workspace, gone: list[int], now: dt.datetime) -> None:
    rows = list(Membership.objects.filter(workspace=workspace, customer_id__in=gone)
                .values_list("segment_id", "customer_id"))
    if not rows:
        return
    MembershipChange.objects.bulk_create([
        MembershipChange(workspace=workspace, segment_id=s, customer_id=c, entered=False, at=now,
                         reason=ChangeReason.MERGE, published_at=now) for s, c in rows
    ])
    Membership.objects.filter(workspace=workspace, customer_id__in=gone).delete()
    counts: dict[int, int] = {}
    for s, _ in rows:
        counts[s] = counts.get(s, 0) + 1
    for s, n in counts.items():
        Segment.objects.filter(pk=s).update(member_count=F("member_count") - n)
