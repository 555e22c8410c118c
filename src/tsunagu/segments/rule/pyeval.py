"""The rule language evaluated in Python for one customer: what real-time checks use (a journey's branch,
``POST /api/v1/rules/evaluate`` with a customer). ``sql`` compiles the same tree for a whole workspace; the
property-based tests hold the two to the same answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from tsunagu.segments.rule.nodes import (
    And,
    Computed,
    Consent,
    EventCond,
    InSegment,
    Node,
    Not,
    Or,
    Prop,
    Trait,
    Window,
)
from tsunagu.segments.rule.values import Context, cmp_holds, count_holds, path_get


class Facts(Protocol):
    """What the evaluator reads of one customer."""

    def trait(self, path: tuple[str, ...]) -> Any: ...
    def field(self, name: str) -> Any: ...
    def computed(self, key: str, path: tuple[str, ...]) -> Any: ...
    def in_segment(self, key: str) -> bool: ...
    def consent(self, channel: str, topic: str) -> bool: ...
    def event_properties(
        self, cond: EventCond, start: dt.datetime | None, end: dt.datetime | None
    ) -> Iterable[dict[str, Any]]:
        """The properties of the customer's events of ``cond``'s name, type and channel within [start, end]."""
        ...


def window_bounds(window: Window | None, ctx: Context) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start, end] of a window, both included: the last N × 24 hours up to now, since a date, or between two."""
    if window is None:
        return None, None
    if window.days is not None:
        return ctx.now - dt.timedelta(days=window.days), ctx.now
    assert window.since is not None
    start = ctx.resolve(window.since)
    return start, (ctx.resolve(window.until) if window.until is not None else None)


def where_holds(where: tuple[Prop, ...], properties: dict[str, Any], ctx: Context) -> bool:
    """Every condition of a ``where`` list holds for the event's properties (AND)."""
    return all(cmp_holds(path_get(properties, p.path), p.cmp, ctx) for p in where)


def evaluate(node: Node, facts: Facts, ctx: Context) -> bool:
    if isinstance(node, And):
        return all(evaluate(c, facts, ctx) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, facts, ctx) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, facts, ctx)
    if isinstance(node, Trait):
        value = facts.field(node.field) if node.field else facts.trait(node.path)
        return cmp_holds(value, node.cmp, ctx)
    if isinstance(node, Computed):
        return cmp_holds(facts.computed(node.key, node.path), node.cmp, ctx)
    if isinstance(node, InSegment):
        return facts.in_segment(node.key)
    if isinstance(node, Consent):
        return facts.consent(node.channel, node.topic)
    assert isinstance(node, EventCond)
    start, end = window_bounds(node.within, ctx)
    count = sum(1 for props in facts.event_properties(node, start, end) if where_holds(node.where, props, ctx))
    return count_holds(count, node.count)
