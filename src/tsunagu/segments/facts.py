"""What the Python evaluator reads of one customer, from the database (``rule.pyeval.Facts``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
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
    def __init__(self, customer: Customer, catalog: Catalog) -> None:
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
        row = ComputedValue.objects.filter(trait_id=trait_id, customer_id=self.customer.pk).values_list(
            "value", flat=True).first()
        if row is None:
            exists = ComputedValue.objects.filter(trait_id=trait_id, customer_id=self.customer.pk).exists()
            if not exists and aggregate in ZERO_DEFAULT and not path:
                return 0
            return None
        return path_get(row, path) if path else row

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
