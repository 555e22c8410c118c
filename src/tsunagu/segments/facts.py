"""What the Python evaluators read of customers: one customer from the database (``rule.pyeval.Facts``), or
the applier chunk's customers read at once (``ChunkFacts``, for ``rule.partial``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.segments.models import ComputedValue, Membership
from tsunagu.segments.rule.nodes import EventCond
from tsunagu.segments.rule.sql import ZERO_DEFAULT, Catalog
from tsunagu.segments.rule.values import path_get

# Consent lives in messaging, above segments: it registers the Python half here (the SQL half in rule.sql).
ConsentCheck = Callable[[int, str, str], bool]
_consent_check: list[ConsentCheck] = []


def consent_check_register(fn: ConsentCheck) -> None:
    """``fn(customer_id, channel, topic) -> bool``: whether the decision in force is a grant."""
    _consent_check[:] = [fn]


class CustomerFacts:
    def __init__(self, customer: Customer | _Profile, catalog: Catalog) -> None:
        self.customer = customer
        self.catalog = catalog

    def trait(self, path: tuple[str, ...]) -> Any:
        return path_get(self.customer.traits, path)

    def field(self, name: str) -> Any:
        c = self.customer
        if name == "$channels":
            return sorted(c.channels) if isinstance(c.channels, dict) and c.channels else None
        value = getattr(c, name[1:])
        return value if value != "" else None

    def computed(self, key: str, path: tuple[str, ...]) -> Any:
        found = self.catalog.computed.get(key)
        if found is None:
            return None
        trait_id, aggregate = found
        stored, row = self.computed_row(trait_id)
        if not stored:  # never computed for this customer: a count or sum of nothing is 0, as in SQL
            return 0 if aggregate in ZERO_DEFAULT and not path else None
        if row is None:
            return None
        return path_get(row, path) if path else row

    def computed_row(self, trait_id: int) -> tuple[bool, Any]:
        """(whether the customer has a row of the trait, its value)."""
        rows = list(ComputedValue.objects.filter(trait_id=trait_id, customer_id=self.customer.pk)
                    .values_list("value", flat=True)[:1])
        return (True, rows[0]) if rows else (False, None)

    def in_segment(self, key: str) -> bool:
        seg = self.catalog.segments.get(key)
        return seg is not None and Membership.objects.filter(segment_id=seg, customer_id=self.customer.pk).exists()

    def consent(self, channel: str, topic: str) -> bool:
        return bool(_consent_check) and _consent_check[0](self.customer.pk, channel, topic)

    def event_properties(
        self, cond: EventCond, start: dt.datetime | None, end: dt.datetime | None
    ) -> Iterable[dict[str, Any]]:
        qs = Event.objects.filter(customer_id=self.customer.pk, workspace_id=self.catalog.workspace_id)
        qs = qs.filter(event=cond.name) if cond.type == "track" else qs.filter(type=cond.type, name=cond.name)
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lte=end)
        if cond.channel is not None:
            qs = qs.filter(channel=cond.channel)
        return (p if isinstance(p, dict) else {} for p in qs.values_list("properties", flat=True).iterator())


class ChunkFacts:
    """What ``rule.partial`` reads of the applier chunk's customers, each read once however many segments ask
    (``prepare``, in parts, only for the customers some segment evaluates): their profiles, computed values,
    memberships (``current``, the reaction's own map, which it keeps up to date as each segment moves) and
    the chunk's events by customer. Used inside the applier's transaction, after the profiles, computed
    values and events of the chunk are written, so it reads what the SQL would."""

    def __init__(self, *, catalog: Catalog, current: dict[int, set[int]], events: Iterable[Any]) -> None:
        self.catalog = catalog
        self.current = current
        self.values: dict[tuple[int, int], Any] = {}
        self.by_customer: dict[int, list[Any]] = {}
        for e in events:
            if e.customer_id is not None:
                self.by_customer.setdefault(e.customer_id, []).append(e)
        self.views: dict[int, ChunkView | None] = {}
        self.traits = [trait_id for trait_id, _ in catalog.computed.values()]

    def prepare(self, customer_ids: Iterable[int]) -> None:
        """Read the customers of ``customer_ids`` not read yet (plain rows, not model instances)."""
        missing = [cid for cid in customer_ids if cid not in self.views]
        for i in range(0, len(missing), _IN):
            part = missing[i:i + _IN]
            for cid in part:
                self.views[cid] = None  # gone, unless read below
            for row in Customer.objects.filter(pk__in=part).values_list(*_PROFILE):
                profile = _Profile(*row)
                self.views[profile.pk] = None if profile.merged_into_id is not None else ChunkView(profile, self)
            if self.traits:
                rows = ComputedValue.objects.filter(customer_id__in=part, trait_id__in=self.traits)
                for trait_id, customer_id, value in rows.values_list("trait_id", "customer_id", "value"):
                    self.values[(trait_id, customer_id)] = value

    def view(self, customer_id: int) -> ChunkView | None:
        """The customer's view (``prepare`` first); None for a profile merged away or gone (a member of
        nothing, as in SQL)."""
        return self.views.get(customer_id)


_IN = 5000
_PROFILE = ("pk", "traits", "email", "phone", "first_seen", "last_seen", "event_count", "channels", "merged_into_id")
_NO_EVENTS: list[Any] = []


@dataclass(slots=True)
class _Profile:
    """The profile fields a rule reads (``CustomerFacts``), as a plain row."""

    pk: int
    traits: Any
    email: str
    phone: str
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    event_count: int
    channels: Any
    merged_into_id: int | None


class ChunkView(CustomerFacts):
    """One customer of a ``ChunkFacts``: traits and fields as ``CustomerFacts`` reads them, the rest from the
    chunk's reads instead of a query each."""

    def __init__(self, customer: _Profile, chunk: ChunkFacts) -> None:
        super().__init__(customer, chunk.catalog)
        self.chunk = chunk

    def computed_row(self, trait_id: int) -> tuple[bool, Any]:
        k = (trait_id, self.customer.pk)
        values = self.chunk.values
        return (True, values[k]) if k in values else (False, None)

    def in_segment(self, key: str) -> bool:
        seg = self.catalog.segments.get(key)
        return seg is not None and self.customer.pk in self.chunk.current.get(seg, ())

    def chunk_events(self) -> Iterable[Any]:
        return self.chunk.by_customer.get(self.customer.pk, _NO_EVENTS)
