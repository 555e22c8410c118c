"""Reads of journeys: definitions and versions, runs with their history, and what a definition may name."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.events.models import Event
from tsunagu.journeys.definition import Known
from tsunagu.journeys.models import Evaluation, Journey, JourneyVersion, Run, RunHistory, Task

RUN_STATUSES = [s.value for s in Run.Status]


def known_names(*, workspace: Workspace) -> Known:
    """The communications and segments of the workspace, and whether it has received an event of a name."""
    from tsunagu.messaging.selectors import communication_list
    from tsunagu.segments.selectors import segment_list

    def event_known(name: str) -> bool:
        return Event.objects.filter(workspace=workspace, event=name).exists()

    return Known(communications=frozenset(communication_list(workspace=workspace).values_list("key", flat=True)),
                 segments=frozenset(segment_list(workspace=workspace).values_list("key", flat=True)),
                 event_known=event_known)


def journey_list(*, workspace: Workspace) -> QuerySet[Journey]:
    return Journey.objects.filter(workspace=workspace).order_by("name", "key")


def journey_get(*, workspace: Workspace, key: str) -> Journey:
    journey = Journey.objects.filter(workspace=workspace, key=key).select_related("workspace").first()
    if journey is None:
        raise NotFound(f"no journey with key {key!r}", field="key")
    return journey


def journey_versions(*, journey: Journey) -> list[JourneyVersion]:
    return list(JourneyVersion.objects.filter(journey=journey).order_by("-number"))


def journey_version(*, journey: Journey, number: int | None = None) -> JourneyVersion | None:
    number = number or journey.current_version
    return JourneyVersion.objects.filter(journey=journey, number=number).first()


def run_get(*, workspace: Workspace, run_id: int) -> Run:
    run = (Run.objects.filter(workspace=workspace, pk=run_id)
           .select_related("journey", "version", "workspace", "customer").first())
    if run is None:
        raise NotFound(f"no journey run {run_id}", field="id")
    return run


def runs_list(*, journey: Journey, customer_id: int | None = None, status: str | None = None,
              after: int = 0, limit: int = 100) -> list[Run]:
    """The journey's runs by id, ``after`` a cursor, filtered by customer and status."""
    if status is not None and status not in RUN_STATUSES:
        raise ValidationError(f"must be one of {', '.join(RUN_STATUSES)}", field="status")
    runs = Run.objects.filter(journey=journey, pk__gt=after).select_related("version")
    if customer_id is not None:
        runs = runs.filter(customer_id=customer_id)
    if status is not None:
        runs = runs.filter(status=status)
    return list(runs.order_by("pk")[:limit])


def run_histories(*, runs: list[Run]) -> dict[int, list[RunHistory]]:
    """Each run's history in order, read in one query."""
    found: dict[int, list[RunHistory]] = {r.pk: [] for r in runs}
    for row in RunHistory.objects.filter(run_id__in=list(found)).order_by("run_id", "id"):
        found[row.run_id].append(row)
    return found


def run_evaluations(*, run: Run) -> list[Evaluation]:
    return list(Evaluation.objects.filter(run=run).order_by("id"))


def customer_runs(*, workspace: Workspace, customer_id: int, limit: int = 50) -> list[Run]:
    """One customer's runs, the newest first (the 360° page and the console's per-customer path)."""
    return list(Run.objects.filter(workspace=workspace, customer_id=customer_id)
                .select_related("journey", "version").order_by("-entered_at", "-pk")[:limit])


def tasks_open(*, workspace: Workspace, limit: int = 50) -> list[Task]:
    return list(Task.objects.filter(workspace=workspace, done_at__isnull=True).order_by("-created_at")[:limit])


def journey_entered_between(*, journey: Journey, since: dt.date | None, until: dt.date | None) -> QuerySet[Run]:
    runs = Run.objects.filter(journey=journey)
    if since is not None:
        runs = runs.filter(entered_at__date__gte=since)
    if until is not None:
        runs = runs.filter(entered_at__date__lte=until)
    return runs
