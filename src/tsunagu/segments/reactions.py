"""Segments' reaction to applied events: computed traits first, then the membership of every segment the
chunk can have changed — in the applier's transaction, so an entry commits with the event that caused it.

Each entry and exit becomes a ``Segment Entered`` / ``Segment Exited`` event stored in the same transaction
and added to the chunk's events, so the later reactions (journeys, stage 20) see it at once. A rule that
reads those events (``{"event": "Segment Entered", …}``, or a computed trait over them) is evaluated again
on them, up to ``CASCADE_PASSES`` passes a chunk; a longer chain moves at its customers' next event.
"""

from __future__ import annotations

from tsunagu.events.reactions import Applied, reaction
from tsunagu.segments.computed import computed_apply
from tsunagu.segments.membership import memberships_apply
from tsunagu.segments.models import Segment
from tsunagu.segments.services import segment_changes_derive

CASCADE_PASSES = 3


# A late stage: membership reads what the other reactions record in this transaction (consents from identify).
@reaction("segments", stage=10)
def segments_react(applied: Applied) -> None:
    workspace = applied.workspace
    segments = list(Segment.objects.filter(workspace=workspace).select_related("workspace"))
    changed = computed_apply(workspace=workspace, events=applied.events, merges=applied.merges)
    results = memberships_apply(workspace=workspace, events=applied.events, merges=applied.merges, computed=changed,
                                segments=segments)
    derived = segment_changes_derive(workspace=workspace, syncs=results.values())
    passes = 1
    while derived:
        applied.events.extend(derived)
        applied.customer_ids.update(e.customer_id for e in derived if e.customer_id is not None)
        if passes >= CASCADE_PASSES:
            break
        passes += 1
        # Only what reads these events moves (their rules' events, computed traits over them, and the
        # segments that read those): derived events change no profile field.
        changed = computed_apply(workspace=workspace, events=derived, merges=[])
        results = memberships_apply(workspace=workspace, events=derived, merges=[], computed=changed, derived=True,
                                    segments=segments)
        derived = segment_changes_derive(workspace=workspace, syncs=results.values())
