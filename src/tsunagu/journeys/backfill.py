"""Replaying a workspace's stored history through one journey, with the clock moved: what the journey would
have done had it been published at ``since`` (the demo's weeks of runs to monitor).

Nothing here decides what a run does: the engine executes the steps (``engine.runs_execute`` with the
turn's time and ``past=True``, so sends are recorded at that time, outside quiet hours), and the events
are matched by the applier's own matching (``journeys.matching``, scoped to the journey).
The backfill only orders the two in time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Min

from tsunagu.core import clock
from tsunagu.events.apply import AppliedEvent
from tsunagu.events.models import Event
from tsunagu.journeys.engine import lease, runs_execute
from tsunagu.journeys.matching import events_match, journey_event_names
from tsunagu.journeys.models import Journey, Run

WORKER_ID = "backfill"
_CLAIM = 500
_MAX_TURNS_AT = 1000  # turns at one time: a run the engine left due at once, forever, would loop otherwise


@dataclass
class Backfilled:
    events: int = 0  # stored events fed to the journey
    entered: int = 0  # runs created
    woken: int = 0  # awaiting runs an event resumed
    turns: int = 0  # engine turns (one per distinct due time)


def _next_due(journey: Journey) -> dt.datetime | None:
    return (Run.objects.filter(journey=journey, held=False, due_at__isnull=False,
                               status__in=(Run.Status.ACTIVE, Run.Status.WAITING))
            .aggregate(at=Min("due_at"))["at"])


def _turn(journey: Journey, at: dt.datetime) -> None:
    """Execute the journey's runs due by ``at``, at ``at``. The claim is the engine's, scoped to this journey:
    a replay must not run another journey's runs in the past. The lease is taken against the real clock, so
    a live worker does not take the runs mid-turn."""
    due = Run.objects.filter(journey=journey, held=False, due_at__lte=at,
                             status__in=(Run.Status.ACTIVE, Run.Status.WAITING)).order_by("due_at", "pk")
    ids = list(due.values_list("pk", flat=True)[:_CLAIM])
    if ids:
        Run.objects.filter(pk__in=ids).update(locked_by=WORKER_ID, lease_until=clock.now() + lease())
        runs_execute(ids=ids, worker_id=WORKER_ID, now=at, past=True)


def journey_backfill(*, journey: Journey, since: dt.datetime, until: dt.datetime) -> Backfilled:
    """Replay the workspace's stored track events with timestamps in [since, until) through ``journey``.

    The events (``events.Event``, read only, in timestamp order) that the journey reacts to — its entry,
    its waits' events, its goal — are walked one time ``t`` after another. Before the events of ``t`` are
    fed, every run due by then is executed at the time it fell due (a wait of an hour ends an hour after it
    began, not at the next event); then the events of ``t`` are matched at ``t``: awaiting runs resumed,
    goals reached, entries made under the re-entry policy. At the end the runs due by ``until`` are
    executed; the others are left waiting, as a live workspace would have them at ``until``.

    Transaction and failure: one transaction for the whole replay — it commits whole or not at all (an
    exception rolls back every run it made; the stored events are never written). A step that fails inside
    the engine fails its run (``failed``, the error in its history) as a live turn does, and the replay goes
    on. On SQLite the write lock is held throughout, so no worker interleaves; on PostgreSQL the runs are
    seen by workers only once committed.

    Side effects are what a live turn records — sends (at the turn's time; messaging delivers them after
    commit unless the caller settles them, as the demo does), trait updates, webhook jobs — so backfill a
    journey whose outward steps you mean, on a workspace whose history is being built. Only this journey's
    runs are entered, resumed, converted or executed. It must be published (a draft enters nobody)."""
    stats = Backfilled()
    with transaction.atomic():
        names = sorted(journey_event_names(journey))
        rows = (Event.objects.filter(workspace_id=journey.workspace_id, type="track", event__in=names,
                                     customer_id__isnull=False, timestamp__gte=since, timestamp__lt=until)
                .order_by("timestamp", "pk")
                .values_list("message_id", "event", "name", "customer_id", "source_id", "channel", "timestamp",
                             "received_at", "properties", "traits"))
        next_due = _next_due(journey)
        batch: list[AppliedEvent] = []
        batch_at: dt.datetime | None = None

        def catch_up(due: dt.datetime | None, at: dt.datetime) -> dt.datetime | None:
            """Turns at each time runs fell due, up to ``at``; the next due time after it."""
            last, repeats = None, 0
            while due is not None and due <= at:
                repeats = repeats + 1 if due == last else 0
                if repeats > _MAX_TURNS_AT:
                    raise RuntimeError(f"journey {journey.key}: runs still due at {due} after {repeats} turns")
                stats.turns += 1
                _turn(journey, due)
                last, due = due, _next_due(journey)
            return due

        def feed() -> None:
            nonlocal next_due
            assert batch_at is not None
            matched = events_match(workspace=journey.workspace, events=batch, now=batch_at, journey=journey,
                                   past=True)
            stats.events += len(batch)
            stats.woken, stats.entered = stats.woken + matched.woken, stats.entered + matched.entered
            if matched.woken or matched.entered:
                # What they did at once may have left them due again (or over the chunk's budget).
                next_due = _next_due(journey)
            batch.clear()

        for message_id, event, name, customer_id, source_id, channel, at, received_at, props, traits in rows.iterator(
                chunk_size=2000):
            if batch and at != batch_at:
                feed()
            if not batch:  # a new time: first what fell due before it, each at its own time
                next_due = catch_up(next_due, at)
            batch_at = at
            batch.append(AppliedEvent(message_id=message_id, type="track", event=event, name=name,
                                      customer_id=customer_id, source_id=source_id, channel=channel, timestamp=at,
                                      received_at=received_at, properties=props or {}, traits=traits or {}))
        if batch:
            feed()
        catch_up(next_due, until)
    return stats
