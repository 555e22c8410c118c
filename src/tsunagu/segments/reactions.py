"""Segments' reaction to applied events: computed traits first, then the membership of every segment the
chunk can have changed — in the applier's transaction, so an entry commits with the event that caused it."""

from __future__ import annotations

from django.db import transaction

from tsunagu.events.reactions import Applied, reaction
from tsunagu.segments.computed import computed_apply
from tsunagu.segments.membership import memberships_apply
from tsunagu.segments.services import segment_changes_publish


# A late stage: membership reads what the other reactions record in this transaction (consents from identify).
@reaction("segments", stage=10)
def segments_react(applied: Applied) -> None:
    changed = computed_apply(workspace=applied.workspace, events=applied.events, merges=applied.merges)
    results = memberships_apply(workspace=applied.workspace, events=applied.events, merges=applied.merges,
                                computed=changed)
    if any(s.entered or s.exited for s in results.values()):
        # Entries reach the timeline right after this commit, not at the worker's next pass.
        # robust: a failure here must not look like a failed chunk (it committed); the worker task retries.
        transaction.on_commit(lambda: segment_changes_publish(limit=10_000), robust=True)
