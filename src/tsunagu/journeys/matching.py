"""Applied events matched against ONE journey: its awaiting runs, its goals, its entry — what
``journeys.reactions`` does for every journey of a workspace in the applier's transaction, scoped to one
journey and at a given ``now``, for replaying history (``journeys.backfill``).

Scoped because a replay of one journey must not touch another journey's runs: an old event fed again
would otherwise resume another journey's run that is waiting today, or convert it on a purchase it has
already been judged on. The rules are the reaction's (an awaited event is put in the run's context and
makes it due, paused or not; a goal converts a run inside its window and exits it unless the goal says
``"exit": false``; an entry goes through ``runs_enter`` and its re-entry policy), so a replayed run ends
where a live one would have. If ``reactions`` changes its rules, this module follows.

One difference of order, within one instant only: ``match`` takes the events of one timestamp as awaits,
then goals, then entries, and the engine runs what they made due at that instant before the next one. The
applier enters first and executes the entered runs inline, so an event at the *same* millisecond as the
entry (after it in the chunk) can resume the new run live but not in a replay. Events an instant apart —
every real checkout and its purchase — behave the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import Q

from tsunagu.events.apply import AppliedEvent
from tsunagu.journeys.engine import WAITING
from tsunagu.journeys.entries import Candidate, runs_enter
from tsunagu.journeys.models import Await, Journey, JourneyVersion, Run, RunHistory
from tsunagu.journeys.plans import event_context, plan_of
from tsunagu.segments.rule.parse import where_parse
from tsunagu.segments.rule.pyeval import where_holds
from tsunagu.segments.rule.values import Context, context


def _locked(ids: list[int]) -> list[Run]:
    """Runs by id, locked on PostgreSQL in id order (the engine locks in the same order: no deadlock)."""
    runs = Run.objects.filter(pk__in=ids).select_related("version").order_by("pk")
    if connection.vendor == "postgresql":
        runs = runs.select_for_update(of=("self",))
    return list(runs)


class JourneyMatcher:
    """One journey's versions read once; ``match`` feeds it applied events at a time ``now``. Whoever runs
    the engine on the journey's runs between two ``match`` calls calls ``turned()`` (a run may then await an
    event it did not before); the matcher is meant for one replay, while nothing else changes the runs."""

    def __init__(self, journey: Journey) -> None:
        self.journey = journey
        self.versions = list(JourneyVersion.objects.filter(journey=journey).order_by("number"))
        self.current = next((v for v in self.versions if v.number == journey.current_version), None)
        goals: dict[str, set[int]] = {}
        awaited: set[str] = set()
        for version in self.versions:
            plan = plan_of(version)
            if plan.goal is not None:
                goals.setdefault(plan.goal["event"], set()).add(version.pk)
            awaited |= {s.raw["event"] for s in plan.steps.values() if s.type == "wait_for_event"}
        self.goals = goals
        self.awaited = frozenset(awaited)
        entry = plan_of(self.current).entry_event if self.current is not None else None
        self.entry_event = entry if journey.status in (Journey.Status.ACTIVE, Journey.Status.PAUSED) else None
        self._where: dict[str, Any] = {}
        # Customers with a run of this journey: only their events can resume a run or reach a goal, so the
        # others' are skipped without a query. A superset is harmless (a query that finds nothing); the
        # matcher adds the customers it enters, and nothing else makes runs while it is in use.
        self.customers = set(Run.objects.filter(journey=journey).values_list("customer_id", flat=True))
        self._awaiting: set[int] | None = None  # customers with an Await of this journey; None: read it again
        # Until when each customer's runs may still convert (None: no limit), for runs that have not: a goal
        # event after that cannot convert any of them, so it needs no query. Kept as a superset, like above.
        self._goal_open: dict[int, dt.datetime | None] = {}
        for customer_id, until in (Run.objects.filter(journey=journey, goal_at__isnull=True)
                                   .exclude(status=Run.Status.CANCELLED).values_list("customer_id", "goal_until")):
            self._open_goal(customer_id, until)

    def _open_goal(self, customer_id: int, until: dt.datetime | None) -> None:
        if customer_id in self._goal_open:
            known = self._goal_open[customer_id]
            until = None if known is None or until is None else max(known, until)
        self._goal_open[customer_id] = until

    def _may_convert(self, customer_id: int | None, now: dt.datetime) -> bool:
        if customer_id not in self._goal_open:
            return False
        until = self._goal_open[customer_id]
        return until is None or until >= now

    def turned(self) -> None:
        """Tell the matcher the engine ran some of the journey's runs: they may await other events now."""
        self._awaiting = None

    def _awaiting_customers(self) -> set[int]:
        if self._awaiting is None:
            self._awaiting = set(Await.objects.filter(run__journey=self.journey)
                                 .values_list("customer_id", flat=True))
        return self._awaiting

    @property
    def names(self) -> frozenset[str]:
        """The event names this journey reacts to (its entry, its waits' events, its goals)."""
        names = set(self.awaited) | set(self.goals)
        if self.entry_event is not None:
            names.add(self.entry_event)
        return frozenset(names)

    def match(self, events: list[AppliedEvent], *, now: dt.datetime) -> tuple[int, int]:
        """Feed ``events`` (track events of known customers) at ``now``: (runs woken, runs entered). In the
        caller's transaction."""
        events = [e for e in events if e.customer_id is not None and e.type == "track"]
        if not events:
            return 0, 0
        ctx = context(self.journey.workspace, now=now)
        theirs = [e for e in events if e.customer_id in self.customers]
        woke = self._awaited(theirs, ctx, now) if self.awaited and theirs else 0
        if self.goals and theirs:
            self._goals(theirs, ctx, now)
        entered = self._entries(events, ctx, now) if self.entry_event is not None else 0
        return woke, entered

    def _parsed(self, raw: Any) -> Any:
        key = repr(raw)
        if key not in self._where:
            self._where[key] = where_parse(raw or [])
        return self._where[key]

    def _awaited(self, events: list[AppliedEvent], ctx: Context, now: dt.datetime) -> int:
        relevant = [e for e in events if e.event in self.awaited]
        if relevant:
            awaiting = self._awaiting_customers()
            relevant = [e for e in relevant if e.customer_id in awaiting]
        if not relevant:
            return 0
        customers = sorted({e.customer_id for e in relevant if e.customer_id is not None})
        waiting: dict[tuple[int, str], list[tuple[int, str, Any]]] = {}
        rows = (Await.objects.filter(run__journey=self.journey, customer_id__in=customers,
                                     event__in=sorted({e.event for e in relevant}))
                .values_list("run_id", "customer_id", "event", "step", "where"))
        for run_id, customer_id, name, step, where in rows:
            waiting.setdefault((customer_id, name), []).append((run_id, step, where))
        matched: dict[int, tuple[str, AppliedEvent]] = {}
        for event in relevant:
            for run_id, step, where in waiting.get((event.customer_id, event.event), ()):  # type: ignore[arg-type]
                if run_id not in matched and where_holds(self._parsed(where), event.properties, ctx):
                    matched[run_id] = (step, event)
        if not matched:
            return 0
        history, woken = [], []
        for run in _locked(list(matched)):
            step, event = matched[run.pk]
            if run.step != step or run.step_state != WAITING:
                continue
            run.context.setdefault("steps", {}).setdefault(step, {})["event"] = event_context(event)
            run.due_at, run.updated_at = now, now
            outcome: dict[str, Any] = {"event": event.event, "message_id": event.message_id}
            if run.status == Run.Status.PAUSED:
                outcome["while_paused"] = True
            history.append(RunHistory(run=run, journey_id=run.journey_id, step=step, action="event", at=now,
                                      outcome=outcome))
            woken.append(run)
        Run.objects.bulk_update(woken, ["context", "due_at", "updated_at"], batch_size=500)
        Await.objects.filter(run_id__in=[r.pk for r in woken]).delete()
        RunHistory.objects.bulk_create(history, batch_size=500)
        return len(woken)

    def _goals(self, events: list[AppliedEvent], ctx: Context, now: dt.datetime) -> None:
        relevant = [e for e in events if e.event in self.goals and self._may_convert(e.customer_id, now)]
        if not relevant:
            return
        version_ids = set().union(*(self.goals[e.event] for e in relevant))
        customers = sorted({e.customer_id for e in relevant if e.customer_id is not None})
        candidates = list(Run.objects.filter(journey=self.journey, customer_id__in=customers,
                                             version_id__in=version_ids, goal_at__isnull=True)
                          .exclude(status=Run.Status.CANCELLED)
                          .filter(Q(goal_until__isnull=True) | Q(goal_until__gte=now))
                          .values_list("pk", flat=True))
        if not candidates:
            return
        by_customer: dict[int, list[Run]] = {}
        for run in _locked(candidates):
            by_customer.setdefault(run.customer_id, []).append(run)
        history, changed, ended_waiting = [], [], []
        for event in relevant:
            for run in by_customer.get(event.customer_id, []):  # type: ignore[arg-type]
                plan = plan_of(run.version)
                if run.goal_at is not None or plan.goal is None or plan.goal["event"] != event.event:
                    continue
                if not where_holds(plan.goal_where, event.properties, ctx):
                    continue
                run.goal_at = now
                history.append(RunHistory(run=run, journey_id=run.journey_id, step=run.step, action="goal",
                                          at=now, outcome={"event": event.event, "message_id": event.message_id}))
                if plan.goal.get("exit", True) and run.status not in Run.ENDED:
                    if run.step_state == WAITING:
                        ended_waiting.append(run.pk)
                    run.status, run.step_state, run.due_at, run.ended_at = Run.Status.EXITED, "", None, now
                    history.append(RunHistory(run=run, journey_id=run.journey_id, step=run.step, action="exited",
                                              at=now, outcome={"reason": "goal"}))
                changed.append(run)
        Run.objects.bulk_update(changed, ["goal_at", "status", "step_state", "due_at", "ended_at"], batch_size=500)
        Await.objects.filter(run_id__in=ended_waiting).delete()
        RunHistory.objects.bulk_create(history, batch_size=500)

    def _entries(self, events: list[AppliedEvent], ctx: Context, now: dt.datetime) -> int:
        version = self.current
        assert version is not None  # entry_event is None without a current version
        plan = plan_of(version)
        segment = plan.entry.get("segment_entered")
        candidates = [
            Candidate(customer_id=e.customer_id, entry={"event": event_context(e)}, at=now)  # type: ignore[arg-type]
            for e in events
            if e.event == self.entry_event and (e.properties.get("segment") == segment if segment is not None
                                                else where_holds(plan.entry_where, e.properties, ctx))
        ]
        if not candidates:
            return 0
        runs = runs_enter(journey=self.journey, version=version, plan=plan, candidates=candidates, now=now)
        for run in runs:
            self.customers.add(run.customer_id)
            self._open_goal(run.customer_id, run.goal_until)
        return len(runs)
