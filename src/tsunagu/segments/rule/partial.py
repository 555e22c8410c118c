"""The rule language decided in Python where it can be, for the applier's chunk: ``True``, ``False`` or
``None`` (undecided) per customer. The applier's reaction asks this first and sends only the undecided
customers to the rule's SQL (``rule.sql`` with ``restrict``), so a rule over traits, profile fields,
computed traits and other segments costs no query at all.

What is known without a query: the profile, its computed values and memberships (the chunk reads them once
for all its customers, ``segments.facts.ChunkFacts``) — and a *lower bound* on an event condition's count:
the chunk's own events of the customer that meet the condition. Those are stored already (the reaction runs
after the event store, in the same transaction), so "at least N" and "fewer than N" can sometimes be told
from them; the exact count cannot. Consent is left to SQL. ``And``/``Or``/``Not`` combine the three values
as Kleene's logic does, so a decided answer is the answer ``pyeval.evaluate`` and the SQL give (the
property-based agreement test holds all three to that).

A rule is compiled to closures once per chunk (its windows are resolved against the chunk's clock), not
walked node by node per customer: the walk costs more than most conditions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tsunagu.segments.rule.nodes import (
    And,
    Cmp,
    Computed,
    Consent,
    EventCond,
    InSegment,
    Node,
    Not,
    Or,
    Trait,
)
from tsunagu.segments.rule.pyeval import where_holds, window_bounds
from tsunagu.segments.rule.values import Context, cmp_holds

Verdict = bool | None
Decide = Callable[["ChunkView"], Verdict]


class ChunkView(Protocol):
    """What the partial evaluator reads of one customer of the chunk."""

    def trait(self, path: tuple[str, ...]) -> Any: ...
    def field(self, name: str) -> Any: ...
    def computed(self, key: str, path: tuple[str, ...]) -> Any: ...
    def in_segment(self, key: str) -> bool: ...
    def chunk_events(self) -> Iterable[Any]:
        """The customer's events applied in this chunk (``events.apply.AppliedEvent``), all stored."""
        ...


def rule_decider(node: Node, ctx: Context) -> Decide:
    """``node`` as a function of one customer's view: True / False where the chunk's facts decide it, None
    where only the event store can (the caller asks the SQL then)."""
    if isinstance(node, And):
        return _kleene([rule_decider(c, ctx) for c in node.children], dominant=False)
    if isinstance(node, Or):
        return _kleene([rule_decider(c, ctx) for c in node.children], dominant=True)
    if isinstance(node, Not):
        inner = rule_decider(node.child, ctx)

        def negated(view: ChunkView) -> Verdict:
            v = inner(view)
            return None if v is None else not v
        return negated
    if isinstance(node, Trait):
        cmp, path, name = node.cmp, node.path, node.field
        if name:
            return lambda view: cmp_holds(view.field(name), cmp, ctx)
        return lambda view: cmp_holds(view.trait(path), cmp, ctx)
    if isinstance(node, Computed):
        key, path, cmp = node.key, node.path, node.cmp
        return lambda view: cmp_holds(view.computed(key, path), cmp, ctx)
    if isinstance(node, InSegment):
        key = node.key
        return lambda view: view.in_segment(key)
    if isinstance(node, Consent):
        return lambda view: None
    assert isinstance(node, EventCond)
    return _event(node, ctx)


def _kleene(kids: list[Decide], dominant: bool) -> Decide:
    """``all`` (dominant False) or ``any`` (dominant True) in Kleene's logic: one child with the dominant
    value decides; otherwise any undecided child leaves the whole undecided."""
    def decide(view: ChunkView) -> Verdict:
        out: Verdict = not dominant
        for kid in kids:
            v = kid(view)
            if v is None:
                out = None
            elif bool(v) is dominant:
                return dominant
        return out
    return decide


def count_verdict(at_least: int, cmp: Cmp) -> Verdict:
    """What ``count cmp`` is when all that is known is ``count >= at_least``: decided only where every
    count from ``at_least`` up gives the same answer."""
    op, v = cmp.op, cmp.value
    if op == "between":
        return False if at_least > v[1] else None
    if op == "gte":
        return True if at_least >= v else None
    if op == "gt":
        return True if at_least > v else None
    if op == "neq":
        return True if at_least > v else None
    if op == "lt":
        return False if at_least >= v else None
    return False if at_least > v else None  # eq, lte


def _event(node: EventCond, ctx: Context) -> Decide:
    start, end = window_bounds(node.within, ctx)
    track = node.type == "track"

    def meets(e: Any) -> bool:
        if track:
            if e.event != node.name:
                return False
        elif e.type != node.type or e.name != node.name:
            return False
        if node.channel is not None and e.channel != node.channel:
            return False
        ts: dt.datetime = e.timestamp
        if (start is not None and ts < start) or (end is not None and ts > end):
            return False
        return where_holds(node.where, e.properties, ctx)

    def decide(view: ChunkView) -> Verdict:
        return count_verdict(sum(1 for e in view.chunk_events() if meets(e)), node.count)
    return decide
