"""The reactions registry: what other apps do when events are applied.

Segments, journeys and messaging join here (``@reaction("segments")``). The applier calls every reaction,
in the order they registered, inside the transaction that applied the events, with the events of that
transaction in log order and the profiles they changed. So a reaction sees each applied event exactly once,
and what it writes commits with the events or not at all: a reaction that raises rolls the whole chunk
back, and the applier retries it later (with backoff) — a reaction must therefore be a pure function of the
database and the events, with no side effect outside the transaction (a send is *recorded* here and executed
by a worker after commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tsunagu.core.models import Workspace
from tsunagu.events.apply import AppliedEvent


@dataclass(slots=True)
class Applied:
    """One applier transaction's worth of applied events, as a reaction sees it. A reaction may append events
    it stored with ``events_derive`` (segments' ``Segment Entered``): the later stages see them too."""

    workspace: Workspace
    events: list[AppliedEvent]
    customer_ids: set[int] = field(default_factory=set)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (into, other): ``other`` no longer exists


Reaction = Callable[[Applied], Any]
_REACTIONS: dict[str, tuple[int, Reaction]] = {}


def reaction(name: str, *, stage: int = 0) -> Callable[[Reaction], Reaction]:
    """Register ``fn(applied)`` under ``name`` (registering a name again replaces it, keeping its place).
    Reactions run by ``stage``, then in the order they registered: a reaction that reads what others write
    in the same transaction (segments read the consents messaging records from ``identify``) takes a later
    stage."""

    def register(fn: Reaction) -> Reaction:
        _REACTIONS[name] = (stage, fn)
        return fn

    return register


def reaction_remove(name: str) -> None:
    _REACTIONS.pop(name, None)


def _in_order() -> list[tuple[str, Reaction]]:
    ranked = sorted(enumerate(_REACTIONS.items()), key=lambda item: (item[1][1][0], item[0]))
    return [(name, fn) for _, (name, (_stage, fn)) in ranked]


def registered() -> list[str]:
    return [name for name, _ in _in_order()]


def dispatch(applied: Applied) -> None:
    """Call every reaction; an exception propagates (the caller's transaction rolls back)."""
    if not applied.events and not applied.merges:
        return
    for _name, fn in _in_order():
        fn(applied)
