"""Journeys' reaction to applied events, in the applier's transaction, after segments (whose entries it reads
as the ``Segment Entered`` events segments add to the same chunk): entries, awaited events, goals and
delivery outcomes are matched by ``journeys.matching``; the runs an event entered or woke go on in this
transaction, and the engine is woken after commit only for those left over."""

from __future__ import annotations

from django.db import transaction

from tsunagu.core import clock
from tsunagu.events.reactions import Applied, reaction
from tsunagu.journeys import engine
from tsunagu.journeys.matching import events_match, runs_merge


@reaction("journeys", stage=20)
def journeys_react(applied: Applied) -> None:
    now = clock.now()
    if applied.merges:
        runs_merge(merges=applied.merges, now=now)  # first: the chunk's events resolve to the joined profile
    matched = events_match(workspace=applied.workspace, events=applied.events, now=now)
    if matched.deferred:
        transaction.on_commit(engine.WAKE.set)
