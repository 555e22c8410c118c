"""A dry run: a definition (the draft) played against the last N days of the workspace's real events, in
memory, with a simulated clock — writing nothing and sending nothing.

The events are replayed in time order. Before each one, the simulated runs whose time has come go on; then
the event is matched against what runs await, their goals, and the entry, as the applier would. Steps are
executed by the engine's own step code in a *dry* turn: a send, a webhook, a trait update or a notification
records what it would do and goes on (a webhook's answer is unknown, so a webhook step does not wait). Branch
rules read the customer's profile as it is now — a dry run sees today's traits, not those of the day replayed;
the run's context (``journey.*``) is the simulated one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.journeys import engine
from tsunagu.journeys.definition import Plan
from tsunagu.journeys.entries import entry_key_of
from tsunagu.journeys.models import Journey, JourneyVersion, Run
from tsunagu.journeys.plans import iso
from tsunagu.segments.rule.pyeval import where_holds
from tsunagu.segments.rule.values import context

MAX_DAYS = 90
MAX_EVENTS = 500_000


class _Event:
    """An Event row in the shape the plans' helpers read (``event_context``)."""

    __slots__ = ("event", "type", "properties", "timestamp", "message_id", "channel", "customer_id")

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.customer_id, self.event, self.type, self.properties, self.timestamp, self.message_id,
         self.channel) = row


def _event_context(e: _Event) -> dict[str, Any]:
    return {"event": e.event, "type": e.type, "properties": e.properties, "timestamp": iso(e.timestamp),
            "message_id": e.message_id, "channel": e.channel}


class _Sim:
    def __init__(self, journey: Journey, plan: Plan, workspace: Any) -> None:
        self.journey, self.plan, self.workspace = journey, plan, workspace
        self.version = JourneyVersion(journey=journey, number=journey.current_version + 1, definition=plan.definition)
        self.runs: list[Run] = []
        self.by_customer: dict[int, list[Run]] = defaultdict(list)
        self.customers: dict[int, Customer] = {}
        self.turn = engine.Turn(now=clock.now(), dry=True)
        self.goals: set[int] = set()

    def customer(self, customer_id: int) -> Customer | None:
        if customer_id not in self.customers:
            found = Customer.objects.filter(pk=customer_id, workspace=self.workspace).first()
            if found is None:
                return None
            self.customers[customer_id] = found
        return self.customers[customer_id]

    def go(self, run: Run, now: dt.datetime) -> None:
        self.turn.now = now
        engine._advance(run, self.plan, self.turn)  # noqa: SLF001 - the engine's own step code, dry

    def catch_up(self, until: dt.datetime) -> None:
        """Every run due by ``until`` goes on, in due order (a run may fall due again, as a timer chain)."""
        while True:
            due = [r for r in self.runs if r.due_at is not None and r.due_at <= until
                   and r.status in (Run.Status.ACTIVE, Run.Status.WAITING)]
            if not due:
                return
            run = min(due, key=lambda r: r.due_at)  # type: ignore[arg-type, return-value]
            at = run.due_at
            run.due_at = None
            self.go(run, at)  # type: ignore[arg-type]

    def event(self, e: _Event, ctx: Any) -> None:
        for run in self.by_customer.get(e.customer_id, []):
            step = self.plan.steps.get(run.step)
            if (run.step_state == engine.WAITING and step is not None and step.type == "wait_for_event"
                    and step.raw["event"] == e.event and where_holds(step.where, e.properties, ctx)):
                run.context["steps"].setdefault(step.id, {})["event"] = _event_context(e)
                self.go(run, e.timestamp)
            goal = self.plan.goal
            if (goal is not None and id(run) not in self.goals and goal["event"] == e.event
                    and (run.goal_until is None or e.timestamp <= run.goal_until)
                    and where_holds(self.plan.goal_where, e.properties, ctx)):
                self.goals.add(id(run))
                if goal.get("exit", True) and run.status not in Run.ENDED:
                    run.status, run.due_at = Run.Status.EXITED, None
        self.enter(e)

    def enter(self, e: _Event) -> None:
        plan = self.plan
        name = plan.entry_event
        if name is None or e.event != name:
            return
        segment = plan.entry.get("segment_entered")
        ctx = context(self.workspace, now=e.timestamp)
        if segment is not None and e.properties.get("segment") != segment:
            return
        if segment is None and not where_holds(plan.entry_where, e.properties, ctx):
            return
        entry = {"event": _event_context(e)}
        key = entry_key_of(plan, entry, e.timestamp)
        mine = self.by_customer.get(e.customer_id, [])
        policy = plan.reentry["policy"]
        if key is None or (policy == "once" and mine) or (policy == "per_entry_key"
                                                           and any(r.entry_key == key for r in mine)):
            return
        if policy == "after" and mine and (any(r.status not in Run.ENDED for r in mine) or max(
                r.entered_at for r in mine) > e.timestamp - dt.timedelta(days=plan.reentry["days"])):
            return
        customer = self.customer(e.customer_id)
        if customer is None:
            return
        days = (plan.goal or {}).get("within", {}).get("days")
        run = Run(workspace=self.workspace, journey=self.journey, version=self.version, customer=customer,
                  entry_key=key, step=plan.first, status=Run.Status.ACTIVE, context={"entry": entry, "steps": {}},
                  entered_at=e.timestamp, goal_until=e.timestamp + dt.timedelta(days=days) if days else None)
        self.runs.append(run)
        self.by_customer[e.customer_id].append(run)
        self.go(run, e.timestamp)


def journey_dry_run(*, journey: Journey, plan: Plan, days: Any) -> dict[str, Any]:
    """What ``plan`` would have done over the last ``days`` days of real events (docs/journeys.md, "Dry
    run"). Reads only. Raises ValidationError for ``days`` out of 1..90 or an entry that is not an event."""
    if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= MAX_DAYS:
        raise ValidationError(f"must be a whole number of days from 1 to {MAX_DAYS}", field="days")
    if plan.entry_event is None:
        raise ValidationError("a dry run replays events: the entry must be an event or a segment entry",
                              field="definition.entry")
    now = clock.now()
    since = now - dt.timedelta(days=days)
    workspace = journey.workspace
    sim = _Sim(journey, plan, workspace)
    names = {plan.entry_event} | {s.raw["event"] for s in plan.steps.values() if s.type == "wait_for_event"}
    if plan.goal is not None:
        names.add(plan.goal["event"])
    rows = (Event.objects.filter(workspace=workspace, event__in=names, type="track", timestamp__gte=since,
                                 timestamp__lte=now, customer__isnull=False)
            .order_by("timestamp", "id")
            .values_list("customer_id", "event", "type", "properties", "timestamp", "message_id", "channel"))
    replayed = 0
    ctx = context(workspace, now=now)
    for row in rows[:MAX_EVENTS]:
        e = _Event(row)
        sim.catch_up(e.timestamp)
        sim.event(e, ctx)
        replayed += 1
    sim.catch_up(now)
    return _report(sim, days=days, replayed=replayed, truncated=replayed >= MAX_EVENTS)


def _report(sim: _Sim, *, days: int, replayed: int, truncated: bool) -> dict[str, Any]:
    reached: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    sends: Counter[str] = Counter()
    for row in sim.turn.history:
        if row.action in ("step", "wait") and row.step:
            reached[row.step] += 1
        if row.action in ("step", "done") and row.step:
            completed[row.step] += 1
            outcome = (row.outcome or {}).get("outcome") if row.action == "step" else (row.outcome or {}).get("by")
            if outcome is not None:
                outcomes[row.step][str(outcome)] += 1
            if (row.outcome or {}).get("communication"):
                sends[str((row.outcome or {})["communication"])] += 1
    statuses = Counter(str(r.status) for r in sim.runs)
    customers = {r.customer_id for r in sim.runs}
    return {
        "days": days, "events_replayed": replayed, "truncated": truncated,
        "entered": len(sim.runs), "customers": len(customers), "by_status": dict(statuses),
        "converted": len(sim.goals),
        "steps": [{"id": sid, "type": step.type, "reached": reached[sid], "completed": completed[sid],
                   "outcomes": dict(outcomes.get(sid, {})), "waiting_at_end": sum(
                       1 for r in sim.runs if r.step == sid and r.status not in Run.ENDED)}
                  for sid, step in sim.plan.steps.items()],
        "sends": dict(sends),
    }
