"""Computed traits: declared aggregates over a customer's events (docs/computed-traits.md), kept up to date by
the applier, by the scheduled refresh for windows, and backfilled from history when declared.

How a value stays right:
- the applier's reaction calls ``computed_apply`` with each applied chunk, in its transaction. A trait
  without a window folds the chunk's events into each customer's stored ``state`` (no rescan of history); a
  windowed trait folds the touched customers again from the event store over the window; a merge folds the
  surviving profile again from the store (its events were moved to it before the reactions run) and drops
  the merged-away profile's rows.
- ``computed_backfill`` folds the whole history in one transaction holding the ingest lock, so no chunk is
  applied between what it read and what it wrote: every event is counted by exactly one of the two.
- ``computed_refresh`` folds again the customers whose windowed value time alone has changed (those with an
  event that has left or entered the window since the last refresh) and scores RFM again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from tsunagu.core import clock
from tsunagu.core.errors import Conflict, NotFound, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, authorize
from tsunagu.core.services import audit_record
from tsunagu.events.services import ingest_lock
from tsunagu.segments import computed_filter as rules
from tsunagu.segments import computed_store as store
from tsunagu.segments.computed_fold import NEEDS_PROPERTY, TIMESTAMP, ZERO_WHEN_EMPTY, same
from tsunagu.segments.computed_rfm import rfm_score, rfm_values
from tsunagu.segments.models import Aggregate, ComputedTrait, Segment

EVENT_TYPES = ("track", "page", "screen")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_TRAITS = 200  # per workspace: each one is work in every applied chunk
PERM = Perm.SEGMENTS  # who may declare and delete computed traits


def _text(value: Any, field: str, *, required: bool = True, limit: int = 200) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field=field)
    value = value.strip()
    if "\x00" in value:
        raise ValidationError("must not contain the NUL character", field=field)
    if required and not value:
        raise ValidationError("must not be empty", field=field)
    if len(value) > limit:
        raise ValidationError(f"must be at most {limit} characters", field=field)
    return value


def _clean(
    *, key: Any, aggregate: Any, event: Any, event_type: Any, property: Any, where: Any, within: Any, name: Any
) -> dict[str, Any]:
    key = _text(key, "key", limit=100)
    if not _KEY.match(key):
        raise ValidationError("lower-case letters, digits, _ and - (starting with a letter or digit)", field="key")
    if aggregate not in Aggregate.values:
        raise ValidationError(f"must be one of {', '.join(Aggregate.values)}", field="aggregate")
    event_type = event_type if event_type is not None else "track"
    if event_type not in EVENT_TYPES:
        raise ValidationError(f"must be one of {', '.join(EVENT_TYPES)}", field="event_type")
    event = _text(event, "event")
    prop = _text(property, "property", required=False)
    if aggregate in NEEDS_PROPERTY and not prop:
        what = "the amount property" if aggregate == "rfm" else f"the property to {aggregate}"
        raise ValidationError(f"{aggregate} needs {what}", field="property")
    if aggregate == "count" and prop:
        raise ValidationError("count counts events and takes no property (narrow them with where)", field="property")
    if aggregate in ("sum", "avg", "rfm") and prop == TIMESTAMP:
        raise ValidationError(f"{aggregate} needs a numeric property, not the event time", field="property")
    rules.where_parse(where, "where")
    rules.within_parse(within, "within")
    return {
        "key": key, "aggregate": aggregate, "event": event, "event_type": event_type, "property": prop,
        "where": where or [], "within": within, "name": _text(name, "name", required=False),
    }


def computed_trait_create(
    *,
    workspace: Workspace,
    key: str,
    aggregate: str,
    event: str,
    actor: Any,
    property: str = "",  # noqa: A002 (the API's field name)
    where: Any = None,
    within: Any = None,
    event_type: str = "track",
    name: str = "",
) -> ComputedTrait:
    """Declare a computed trait and backfill it from the workspace's history, in one transaction holding the
    ingest lock (operators and up). Bad input raises ``ValidationError`` naming the field (``within.days``);
    a key in use raises ``Conflict``. Audited in the same transaction."""
    authorize(actor=actor, workspace=workspace, perm=PERM)
    fields = _clean(
        key=key, aggregate=aggregate, event=event, event_type=event_type, property=property, where=where,
        within=within, name=name,
    )
    try:
        with transaction.atomic():
            ingest_lock(workspace)
            if ComputedTrait.objects.filter(workspace=workspace).count() >= MAX_TRAITS:
                raise ValidationError(f"a workspace has at most {MAX_TRAITS} computed traits", field="key")
            trait = ComputedTrait.objects.create(workspace=workspace, **fields)
            _backfill(trait, clock.now())
            audit_record(workspace=workspace, actor=actor, action="computed_trait.created", target=trait.key,
                         data={k: v for k, v in fields.items() if k != "key"})
    except IntegrityError:
        raise Conflict(f"a computed trait {fields['key']!r} exists in the workspace", field="key") from None
    return trait


def segments_using(*, workspace: Workspace, key: str) -> list[str]:
    """Keys of the segments whose rule reads computed trait ``key`` (``Segment.deps["computed"]``)."""
    using = []
    for seg_key, deps in Segment.objects.filter(workspace=workspace).values_list("key", "deps"):
        if isinstance(deps, dict) and key in (deps.get("computed") or []):
            using.append(seg_key)
    return sorted(using)


def computed_trait_delete(*, trait: ComputedTrait, actor: Any) -> None:
    """Delete a computed trait and its values (operators and up). Refused with ``Conflict`` while a segment's
    rule reads it. Audited in the same transaction."""
    workspace = trait.workspace
    authorize(actor=actor, workspace=workspace, perm=PERM)
    with transaction.atomic():
        using = segments_using(workspace=workspace, key=trait.key)
        if using:
            raise Conflict(
                f"computed trait {trait.key!r} is used by segment(s) {', '.join(using)}: change them first",
                field="key", details={"segments": using},
            )
        audit_record(workspace=workspace, actor=actor, action="computed_trait.deleted", target=trait.key)
        trait.delete()


def computed_backfill(*, trait: ComputedTrait, now: dt.datetime | None = None) -> int:
    """Fold the trait again from the whole history (its rows replaced), in one transaction holding the ingest
    lock: the applier waits, so each event is counted once. Returns the customers with a value."""
    with transaction.atomic():
        ingest_lock(trait.workspace)
        return _backfill(trait, now or clock.now())


def _backfill(trait: ComputedTrait, now: dt.datetime) -> int:
    plan = store.plan_of(trait)
    ctx = rules.context(trait.workspace, now)
    store.values_delete_trait(trait)
    batch: dict[int, tuple[Any, dict[str, Any]]] = {}
    total = 0
    states: dict[int, dict[str, Any]] = {}
    for customer_id, state in store.states_all(plan, trait.workspace, ctx):
        total += 1
        if plan.rfm:
            states[customer_id] = state  # scored once the whole population is known
            continue
        batch[customer_id] = (plan.fold.value(state), state)
        if len(batch) >= store.CHUNK:
            store.values_write(trait, batch, now)
            batch = {}
    if plan.rfm:
        scores = rfm_values(states)
        batch = {cid: (scores[cid], state) for cid, state in states.items()}
    store.values_write(trait, batch, now)
    trait.backfilled_at = now
    trait.save(update_fields=["backfilled_at"])
    return total


def _effective(plan: store.Plan, row: tuple[Any, dict[str, Any]] | None) -> Any:
    if row is not None:
        return row[0]
    return 0 if plan.trait.aggregate in ZERO_WHEN_EMPTY else None


def _resolver(merges: Iterable[tuple[int, int]]) -> tuple[dict[int, int], set[int]]:
    into_of = {other: into for into, other in merges}

    def final(cid: int) -> int:
        hops = 0
        while cid in into_of and hops < 100:
            cid, hops = into_of[cid], hops + 1
        return cid

    return {other: final(other) for other in into_of}, set(into_of)


def computed_apply(*, workspace: Workspace, events: list[Any], merges: list[tuple[int, int]]) -> dict[str, set[int]]:
    """Bring the workspace's computed traits up to date with one applied chunk, inside the applier's
    transaction (``events``: ``tsunagu.events.apply.AppliedEvent`` in log order, already stored; ``merges``:
    (into, other), other's events already moved). Returns {trait key: customers whose value changed}. A
    failure propagates and rolls the chunk back, to be applied again."""
    traits = list(ComputedTrait.objects.filter(workspace=workspace).order_by("pk"))
    if not traits:
        return {}
    moved, others = _resolver(merges)
    refold = {moved.get(into, into) for into, _ in merges} - others
    now = clock.now()
    ctx = rules.context(workspace, now)
    changed: dict[str, set[int]] = {}
    for trait in traits:
        plan = store.plan_of(trait)
        bounds = rules.window_bounds(plan.window, ctx) if plan.window is not None else (None, None)
        matched: dict[int, list[Any]] = {}
        for e in events:
            if e.customer_id is None or not plan.names(e.type, e.event, e.name):
                continue
            start, end = bounds
            if (start is not None and e.timestamp < start) or (end is not None and e.timestamp > end):
                continue
            if plan.conds and not rules.where_holds(plan.conds, e.properties, ctx):
                continue
            matched.setdefault(moved.get(e.customer_id, e.customer_id), []).append(e)
        if plan.window is not None:
            refold_here, fold_here = refold | set(matched), set()
        else:
            refold_here, fold_here = refold, set(matched) - refold
        hits = _fold_in(plan, matched, fold_here, now) | _refold(plan, workspace, refold_here, ctx)
        if hits:
            changed[trait.key] = hits
    if others:
        store.values_delete_customers(workspace, others)
    return changed


def _fold_in(plan: store.Plan, matched: dict[int, list[Any]], customers: set[int], now: dt.datetime) -> set[int]:
    """Fold the chunk's events into the stored states of ``customers``."""
    if not customers:
        return set()
    trait, fold = plan.trait, plan.fold
    existing = store.values_of(trait, customers)
    writes: dict[int, tuple[Any, dict[str, Any]]] = {}
    hits: set[int] = set()
    for cid in customers:
        row = existing.get(cid)
        state: dict[str, Any] = dict(row[1]) if row is not None else {}
        before = repr(state)
        for e in matched[cid]:
            fold.add(state, e.properties, e.timestamp)
        if not state or repr(state) == before:
            continue
        # RFM scores wait for the refresh (they need the whole population): only the figures move now.
        value = row[0] if plan.rfm and row is not None else (None if plan.rfm else fold.value(state))
        writes[cid] = (value, state)
        if not same(value, _effective(plan, row)):
            hits.add(cid)
    store.values_write(trait, writes, now)
    return hits


def _refold(plan: store.Plan, workspace: Workspace, customers: set[int], ctx: Any) -> set[int]:
    """Fold ``customers`` again from the event store over the window; rows without a contributing event go."""
    if not customers:
        return set()
    trait = plan.trait
    states = store.states_of(plan, workspace, list(customers), ctx)
    existing = store.values_of(trait, customers)
    writes: dict[int, tuple[Any, dict[str, Any]]] = {}
    hits: set[int] = set()
    for cid, state in states.items():
        row = existing.get(cid)
        if row is not None and row[1] == state:
            continue
        value = (row[0] if row is not None else None) if plan.rfm else plan.fold.value(state)
        writes[cid] = (value, state)
        if not same(value, _effective(plan, row)):
            hits.add(cid)
    gone = set(existing) - set(states)
    for cid in gone:
        if not same(_effective(plan, None), existing[cid][0]):
            hits.add(cid)
    store.values_write(trait, writes, ctx.now)
    store.values_delete(trait, gone)
    return hits


def _time_moved(plan: store.Plan, workspace: Workspace, since: dt.datetime | None, ctx: Any) -> set[int] | None:
    """Customers whose windowed value may have changed with time alone since ``since``: those with an
    event of the trait's name that has left or entered the window. None: everyone (no earlier time)."""
    if since is None:
        return None
    before = rules.window_bounds(plan.window, rules.context(workspace, since))
    after = rules.window_bounds(plan.window, ctx)
    out: set[int] = set()
    if before[0] is not None and after[0] is not None and before[0] != after[0]:
        low, high = sorted((before[0], after[0]))
        out |= store.customers_between(plan, workspace, low, high, low_open=False)
    if before[1] is not None and after[1] is not None and before[1] != after[1]:
        low, high = sorted((before[1], after[1]))
        out |= store.customers_between(plan, workspace, low, high, low_open=True)
    return out


def computed_refresh(*, workspace: Workspace, now: dt.datetime | None = None) -> dict[str, set[int]]:
    """What time alone changes, at ``now``: windowed traits folded again for the customers with an event
    that left or entered the window since the last refresh, RFM scored again over all purchasers. One
    transaction per trait. Returns {trait key: customers whose value changed}."""
    now = now or clock.now()
    ctx = rules.context(workspace, now)
    changed: dict[str, set[int]] = {}
    for trait in ComputedTrait.objects.filter(workspace=workspace).order_by("pk"):
        plan = store.plan_of(trait)
        if plan.window is None and not plan.rfm:
            continue
        with transaction.atomic():
            hits: set[int] = set()
            if plan.window is not None:
                marks = [t for t in (trait.refreshed_at, trait.backfilled_at) if t is not None]
                candidates = _time_moved(plan, workspace, max(marks) if marks else None, ctx)
                if candidates is None:
                    candidates = set(store.values_of_trait(trait)) | set(store.states_all_ids(plan, workspace, ctx))
                hits |= _refold(plan, workspace, candidates, ctx)
            if plan.rfm:
                hits |= rfm_score(trait, now)
            trait.refreshed_at = now
            trait.save(update_fields=["refreshed_at"])
        if hits:
            changed[trait.key] = hits
    return changed


def computed_trait_get(*, workspace: Workspace, key: str) -> ComputedTrait:
    trait = ComputedTrait.objects.filter(workspace=workspace, key=key).first()
    if trait is None:
        raise NotFound(f"computed trait {key!r} not found", field="key")
    return trait
