"""Reads the console's journeys pages need beyond ``selectors``: the list's figures for every journey in one
query, a page of runs with their customers, and what a waiting run awaits."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from tsunagu.core.errors import ValidationError
from tsunagu.core.models import Workspace
from tsunagu.journeys.models import Journey, Run
from tsunagu.journeys.plans import plan_of
from tsunagu.journeys.selectors import RUN_STATUSES

LIVE = (Run.Status.ACTIVE, Run.Status.WAITING, Run.Status.PAUSED)


def journey_figures(*, workspace: Workspace) -> dict[int, dict[str, Any]]:
    """Per journey id: entries, customers in progress (distinct, live runs) and the conversion rate — one
    grouped query over the runs, so the list costs the same with ten journeys or a hundred."""
    rows = (Run.objects.filter(workspace=workspace).values("journey_id")
            .annotate(entries=Count("id"),
                      in_progress=Count("customer_id", filter=Q(status__in=LIVE), distinct=True),
                      converted=Count("id", filter=Q(goal_at__isnull=False))))
    return {r["journey_id"]: {"entries": r["entries"], "in_progress": r["in_progress"],
                              "conversion_rate": r["converted"] / r["entries"] if r["entries"] else 0.0}
            for r in rows}


def runs_page(*, journey: Journey, status: str | None = None, customer_ids: list[int] | None = None,
              before: int | None = None, limit: int = 50) -> list[Run]:
    """The journey's runs, the newest first (``before`` a run id, for the next page), with their customers;
    ``customer_ids`` (the customers a search found) and ``status`` narrow it."""
    if status is not None and status not in RUN_STATUSES:
        raise ValidationError(f"must be one of {', '.join(RUN_STATUSES)}", field="status")
    runs = Run.objects.filter(journey=journey).select_related("version", "customer")
    if status is not None:
        runs = runs.filter(status=status)
    if customer_ids is not None:
        runs = runs.filter(customer_id__in=customer_ids)
    if before is not None:
        runs = runs.filter(pk__lt=before)
    return list(runs.order_by("-pk")[:limit])


def run_awaiting(*, run: Run) -> dict[str, Any] | None:
    """The event a waiting run awaits (name, step, property filter), or None."""
    if not run.awaits:
        return None
    step = plan_of(run.version).steps.get(run.step)
    return {"event": run.awaits, "step": run.step, "where": step.raw.get("where", []) if step is not None else []}
