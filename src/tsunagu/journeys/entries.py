"""Entering customers into a journey's published version, under its re-entry policy: from applied events
(the applier's reaction), the API, and the schedule. One place decides who may enter, so the three agree.

- ``once`` (the default): one run per customer and journey, ever (whichever version);
- ``per_entry_key``: one run per value of ``entry_key`` (``event.properties.cart_id``: each cart);
- ``after``: again once the customer has no run under way and the last one entered ``days`` ago or more.

A run entered while its journey is paused is created held: it waits, and starts when the journey resumes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from tsunagu.journeys.definition import Plan
from tsunagu.journeys.models import Journey, JourneyVersion, Run, RunHistory
from tsunagu.journeys.plans import iso
from tsunagu.segments.rule.values import path_get

MAX_ENTRY_KEY = 200


@dataclass(slots=True)
class Candidate:
    customer_id: int
    entry: dict[str, Any]  # {"event": {...}} or {"data": {...}}, as the run's context keeps it
    at: dt.datetime


def entry_key_of(plan: Plan, entry: dict[str, Any], at: dt.datetime) -> str | None:
    """The entry key of a candidate under the plan's policy; None when the policy's path is missing."""
    policy = plan.reentry["policy"]
    if policy == "once":
        return ""
    if policy == "after":
        return iso(at)
    value = path_get(entry, tuple(plan.reentry["entry_key"].split(".")))
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:MAX_ENTRY_KEY]


def runs_enter(*, journey: Journey, version: JourneyVersion, plan: Plan, candidates: list[Candidate],
               now: dt.datetime, actor: str = "") -> list[Run]:
    """Create the runs of the candidates the re-entry policy lets in; return them. Runs in the caller's
    transaction (the applier's, or an API request's). A candidate refused by the policy is left out
    silently: that is the policy working, not an error."""
    wanted: dict[tuple[int, str], Candidate] = {}
    for cand in candidates:
        key = entry_key_of(plan, cand.entry, cand.at)
        if key is not None:
            wanted.setdefault((cand.customer_id, key), cand)
    if not wanted:
        return []
    customers = {c for c, _ in wanted}
    existing = list(Run.objects.filter(journey=journey, customer_id__in=customers)
                    .values_list("customer_id", "entry_key", "status", "entered_at"))
    policy = plan.reentry["policy"]
    taken = {(c, k) for c, k, _, _ in existing}
    entered_before = {c for c, _ in taken}
    busy = {c for c, _, status, _ in existing if status not in Run.ENDED}
    last: dict[int, dt.datetime] = {}
    for c, _, _, entered in existing:
        last[c] = max(last.get(c, entered), entered)
    goal_days = (plan.goal or {}).get("within", {}).get("days")
    runs: list[Run] = []
    seen: set[int] = set()
    for (customer_id, key), cand in wanted.items():
        if policy == "once" and customer_id in entered_before:
            continue
        if policy == "per_entry_key" and (customer_id, key) in taken:
            continue
        if policy == "after":
            if customer_id in busy or customer_id in seen:
                continue
            if customer_id in last and last[customer_id] > now - dt.timedelta(days=plan.reentry["days"]):
                continue
        seen.add(customer_id)
        runs.append(Run(
            workspace_id=journey.workspace_id, journey=journey, version=version, customer_id=customer_id,
            entry_key=key, status=Run.Status.ACTIVE, step=plan.first, due_at=now,
            held=journey.status != Journey.Status.ACTIVE, context={"entry": cand.entry, "steps": {}},
            entered_at=now, updated_at=now,
            goal_until=now + dt.timedelta(days=goal_days) if goal_days else None,
        ))
    if not runs:
        return []
    try:
        with transaction.atomic():
            Run.objects.bulk_create(runs)
    except IntegrityError:
        # Another transaction entered one of them meanwhile (the API twice at once): one by one, keeping
        # the ones that are new.
        kept = []
        for run in runs:
            try:
                with transaction.atomic():
                    run.save(force_insert=True)
                kept.append(run)
            except IntegrityError:
                continue
        runs = kept
    RunHistory.objects.bulk_create([
        RunHistory(run=run, journey=journey, step=run.step, action="entered", at=now,
                   outcome={"via": "event" if "event" in run.context["entry"] else "api",
                            **({"held": True} if run.held else {})}, actor=actor)
        for run in runs
    ])
    return runs
