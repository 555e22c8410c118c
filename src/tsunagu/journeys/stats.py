"""Monitoring a journey: entries, customers at each step now, each step's completions and drop-off, the time
between steps (median, p90), conversion to the goal, results per split path with a confidence interval, and
evaluations per step — over all runs, or those entered in a date range, or those of a segment's members.

All of it is read from the runs and their history (``RunHistory``): what the engine wrote as it went, so the
figures and a customer's path can never disagree.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from typing import Any

from django.db.models import Count

from tsunagu.journeys.models import Evaluation, Journey, Run, RunHistory
from tsunagu.journeys.plans import plan_of
from tsunagu.journeys.selectors import journey_entered_between, journey_version

LIVE = (Run.Status.ACTIVE, Run.Status.WAITING, Run.Status.PAUSED)
ARRIVALS = frozenset({"entered", "wait", "step", "migrated"})
COMPLETIONS = frozenset({"step", "done"})


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): sound at small counts and at 0 or 100 %,
    where the normal approximation is not."""
    if total == 0:
        return 0.0, 0.0
    p = successes / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    denom = 1 + z * z / total
    return max(0.0, (centre - margin) / denom), min(1.0, (centre + margin) / denom)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def journey_stats(*, journey: Journey, segment: Any = None, since: dt.date | None = None,
                  until: dt.date | None = None) -> dict[str, Any]:
    """The journey's monitoring figures (docs/journeys.md, "Monitoring"). ``segment`` (a Segment) keeps the
    runs of its current members."""
    runs = journey_entered_between(journey=journey, since=since, until=until)
    if segment is not None:
        from tsunagu.segments.selectors import segment_member_ids

        runs = runs.filter(customer_id__in=segment_member_ids(segment=segment))
    rows = list(runs.values_list("pk", "status", "step", "goal_at"))
    entries = len(rows)
    converted = {pk for pk, _, _, goal in rows if goal is not None}
    by_status: dict[str, int] = defaultdict(int)
    now_at: dict[str, int] = defaultdict(int)
    for _, status, step, _ in rows:
        by_status[status] += 1
        if status in LIVE:
            now_at[step] += 1
    reached: dict[str, set[int]] = defaultdict(set)
    completed: dict[str, set[int]] = defaultdict(set)
    between: dict[str, list[float]] = defaultdict(list)
    paths: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    last: dict[int, dt.datetime] = {}
    ids = [pk for pk, *_ in rows]
    filtered = since is not None or until is not None or segment is not None
    history = RunHistory.objects.filter(journey=journey).order_by("run_id", "id")
    if filtered:
        history = history.filter(run_id__in=runs.values("pk"))
    for run_id, step, action, at, outcome in history.values_list("run_id", "step", "action", "at", "outcome"):
        if action == "entered":
            last[run_id] = at
        if action in ARRIVALS and step:
            reached[step].add(run_id)
        if action in COMPLETIONS and step:
            completed[step].add(run_id)
            if run_id in last:
                between[step].append((at - last[run_id]).total_seconds())
            last[run_id] = at
            label = (outcome or {}).get("outcome") if action == "step" else None
            if isinstance((outcome or {}).get("next"), str) and label is not None:
                paths[step][str(label)].add(run_id)
    version = journey_version(journey=journey)
    plan = plan_of(version) if version is not None else None
    order = list(plan.steps) if plan is not None else []
    for step in list(reached) + list(now_at):
        if step not in order:
            order.append(step)
    split_steps = {sid for sid, s in plan.steps.items() if s.type == "split"} if plan is not None else set()
    steps = []
    for sid in order:
        got, done = len(reached.get(sid, ())), len(completed.get(sid, ()))
        durations = between.get(sid, [])
        steps.append({
            "id": sid, "type": plan.steps[sid].type if plan is not None and sid in plan.steps else None,
            "now": now_at.get(sid, 0), "reached": got, "completed": done,
            "dropped": max(0, got - done - now_at.get(sid, 0)),
            "dropoff_rate": round((got - done - now_at.get(sid, 0)) / got, 4) if got else 0.0,
            "median_seconds": statistics.median(durations) if durations else None,
            "p90_seconds": _percentile(durations, 0.9),
        })
    splits = []
    for sid in sorted(split_steps):
        results = []
        for label, members in sorted(paths.get(sid, {}).items()):
            wins = len(members & converted)
            low, high = wilson(wins, len(members))
            results.append({"path": label, "runs": len(members), "converted": wins,
                            "conversion_rate": round(wins / len(members), 4) if members else 0.0,
                            "ci95": [round(low, 4), round(high, 4)]})
        splits.append({"step": sid, "paths": results})
    evaluations = [
        {"step": step, "name": name, "count": count, "mean": round(statistics.fmean(values), 3) if values else None}
        for (step, name), (count, values) in _evaluations(journey, ids if filtered else None).items()
    ]
    low, high = wilson(len(converted), entries)
    return {
        "journey": journey.key, "name": journey.name, "status": journey.status, "version": journey.current_version,
        "entries": entries, "by_status": dict(by_status),
        "converted": len(converted), "conversion_rate": round(len(converted) / entries, 4) if entries else 0.0,
        "conversion_ci95": [round(low, 4), round(high, 4)],
        "steps": steps, "splits": splits, "evaluations": evaluations,
    }


def _evaluations(journey: Journey, ids: list[int] | None) -> dict[tuple[str, str], tuple[int, list[float]]]:
    rows = Evaluation.objects.filter(journey=journey)
    if ids is not None:
        rows = rows.filter(run_id__in=ids)
    found: dict[tuple[str, str], tuple[int, list[float]]] = {}
    counts = dict(((s, n), c) for s, n, c in rows.values_list("step", "name").annotate(c=Count("id")))
    for step, name, value in rows.values_list("step", "name", "value"):
        found.setdefault((step, name), (counts[(step, name)], []))
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[(step, name)][1].append(float(value))
    return found
