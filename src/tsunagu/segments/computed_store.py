"""Where computed traits meet the database: a trait's matching events read from the event store, its values
read and written in bulk. Every read and write here is one statement per trait per chunk of customers, never
one per customer: the applier runs this for every chunk it applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import F

from tsunagu.core.models import Workspace
from tsunagu.events.models import Event
from tsunagu.segments import computed_filter as rules
from tsunagu.segments.computed_fold import Fold
from tsunagu.segments.models import ComputedTrait, ComputedValue
from tsunagu.segments.rule import Prop, Window
from tsunagu.segments.sql import values_read, values_upsert

CHUNK = 500  # customer ids in one IN list: well under SQLite's and PostgreSQL's parameter limits
STREAM = 2000  # rows fetched at a time when streaming a trait's whole history


@dataclass(frozen=True, slots=True)
class Plan:
    """A trait, read once: its fold, its parsed filter and window."""

    trait: ComputedTrait
    fold: Fold
    conds: tuple[Prop, ...]
    window: Window | None

    @property
    def key(self) -> str:
        return self.trait.key

    @property
    def rfm(self) -> bool:
        return self.trait.aggregate == "rfm"

    def names(self, event_type: str, event: str, name: str) -> bool:
        """Whether an event of this type, track name and page/screen name is one the trait counts."""
        if event_type != self.trait.event_type:
            return False
        return (event if event_type == "track" else name) == self.trait.event


def plan_of(trait: ComputedTrait) -> Plan:
    return Plan(
        trait=trait,
        fold=Fold(trait.aggregate, trait.property),
        conds=rules.where_parse(trait.where or None),
        window=rules.within_parse(trait.within),
    )


def chunks(ids: Iterable[int], size: int = CHUNK) -> Iterator[list[int]]:
    batch: list[int] = []
    for i in ids:
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _events(plan: Plan, workspace: Workspace, ctx: Any) -> Any:
    trait = plan.trait
    qs = Event.objects.filter(workspace=workspace, type=trait.event_type)
    # Track events by ``event`` (the name-and-time index), pages and screens by their ``name``.
    qs = qs.filter(event=trait.event) if trait.event_type == "track" else qs.filter(name=trait.event)
    if plan.window is not None:
        start, end = rules.window_bounds(plan.window, ctx)
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lte=end)
    return qs


def fold_rows(
    plan: Plan, rows: Iterable[tuple[int, dt.datetime, Any]], ctx: Any
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(customer, state) for each customer of ``rows`` — ordered by customer, then time and id — whose
    events contributed."""
    current: int | None = None
    state: dict[str, Any] = {}
    conds, fold = plan.conds, plan.fold
    for customer_id, ts, properties in rows:
        if customer_id != current:
            if current is not None and state:
                yield current, state
            current, state = customer_id, {}
        if conds and not rules.where_holds(conds, properties, ctx):
            continue
        fold.add(state, properties, ts)
    if current is not None and state:
        yield current, state


_ORDER = ("customer_id", "timestamp", "id")
_COLUMNS = ("customer_id", "timestamp", "properties")


def states_of(plan: Plan, workspace: Workspace, customer_ids: list[int], ctx: Any) -> dict[int, dict[str, Any]]:
    """The states of these customers folded from the store, over the trait's window at ``ctx.now``: one query
    per chunk of customers. Customers without a contributing event are absent."""
    out: dict[int, dict[str, Any]] = {}
    for batch in chunks(sorted(set(customer_ids))):
        qs = _events(plan, workspace, ctx).filter(customer_id__in=batch)
        out.update(fold_rows(plan, qs.order_by(*_ORDER).values_list(*_COLUMNS), ctx))
    return out


def states_all(plan: Plan, workspace: Workspace, ctx: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every customer's state folded from the store (the backfill), streamed in customer order."""
    # By ``customer_id + 0``: ordering by the bare column makes SQLite walk event_timeline_idx over every event
    # of the workspace (10M rows to find 1.2M orders); the expression leaves it the name's range and a sort.
    whole = (F("customer_id") + 0, "timestamp", "id")
    qs = _events(plan, workspace, ctx).filter(customer__isnull=False).order_by(*whole).values_list(*_COLUMNS)
    return fold_rows(plan, qs.iterator(chunk_size=STREAM), ctx)


def customers_between(
    plan: Plan, workspace: Workspace, low: dt.datetime, high: dt.datetime, *, low_open: bool
) -> set[int]:
    """Customers with an event of the trait's name at a time in [low, high) (``low_open``: (low, high])."""
    trait = plan.trait
    qs = Event.objects.filter(workspace=workspace, type=trait.event_type, customer__isnull=False)
    qs = qs.filter(event=trait.event) if trait.event_type == "track" else qs.filter(name=trait.event)
    if low_open:
        qs = qs.filter(timestamp__gt=low, timestamp__lte=high)
    else:
        qs = qs.filter(timestamp__gte=low, timestamp__lt=high)
    return set(qs.values_list("customer_id", flat=True).distinct())


def values_of(trait: ComputedTrait, customer_ids: Iterable[int]) -> dict[int, tuple[Any, dict[str, Any]]]:
    """{customer: (value, state)} of the customers that have a row, one query per chunk (``segments.sql``)."""
    out: dict[int, tuple[Any, dict[str, Any]]] = {}
    for batch in chunks(sorted(set(customer_ids))):
        out.update(values_read(trait_id=trait.pk, customer_ids=batch))
    return out


def values_write(trait: ComputedTrait, rows: dict[int, tuple[Any, dict[str, Any]]], now: dt.datetime) -> None:
    """Insert or replace these customers' rows: one upsert run with executemany (``segments.sql``)."""
    values_upsert(workspace_id=trait.workspace_id, trait_id=trait.pk, rows=rows, now=now)


def values_delete(trait: ComputedTrait, customer_ids: Iterable[int]) -> None:
    for batch in chunks(sorted(set(customer_ids))):
        ComputedValue.objects.filter(trait=trait, customer_id__in=batch).delete()


def values_delete_customers(workspace: Workspace, customer_ids: Iterable[int]) -> None:
    """Every trait's rows of these customers (profiles merged away)."""
    for batch in chunks(sorted(set(customer_ids))):
        ComputedValue.objects.filter(workspace=workspace, customer_id__in=batch).delete()


def values_delete_trait(trait: ComputedTrait) -> None:
    ComputedValue.objects.filter(trait=trait).delete()


def values_of_trait(trait: ComputedTrait) -> list[int]:
    """The customers that have a row of ``trait``."""
    return list(ComputedValue.objects.filter(trait=trait).values_list("customer_id", flat=True))


def states_all_ids(plan: Plan, workspace: Workspace, ctx: Any) -> set[int]:
    """Customers with an event of the trait's name in its window (whatever the filter says)."""
    qs = _events(plan, workspace, ctx).filter(customer__isnull=False)
    return set(qs.values_list("customer_id", flat=True).distinct())
