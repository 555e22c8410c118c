"""Applied events matched against journeys — what the applier's ``journeys`` reaction does in its
transaction, and what a replay of history does for one journey (``journeys.backfill``):

1. entries: the current versions of active and paused journeys whose entry the event meets — each new run
   then executed at once, so a later event of the same chunk (the purchase a moment after the checkout)
   finds it already waiting;
2. awaited events: the chunk's (customer, event) pairs looked up in the runs' ``awaits`` index — an index
   probe, however many runs wait — and each matching run gets the event in its context and goes on at once, in this
   transaction (a paused run keeps the event and takes it on resume);
3. goals: a run of the customer whose version's goal the event meets converts (and exits, unless the goal
   says ``"exit": false``);
4. delivery outcomes of the sends journeys made: the run's ``journey.steps.<id>.outcome`` and the channel
   that worked last.

A run takes only events that come after its entry. ``journey=`` scopes all of it to one journey: a replay
of old events must not resume or convert another journey's runs of today.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q

from tsunagu.events.apply import AppliedEvent
from tsunagu.journeys import engine, sql
from tsunagu.journeys.entries import Candidate, runs_enter
from tsunagu.journeys.models import Journey, JourneyVersion, Run, RunHistory, RunSend
from tsunagu.journeys.plans import event_context, iso, plan_of
from tsunagu.segments.rule.pyeval import where_holds
from tsunagu.segments.rule.values import Context, context

IN_CHUNK = 5000
INLINE_LIMIT = 1000  # runs one applier chunk executes itself; the engine takes the rest
OUTCOME_EVENTS = {"Message Sent": "sent", "Message Delivered": "delivered", "Message Failed": "failed",
                  "Message Bounced": "bounced", "Message Undeliverable": "undeliverable",
                  "Message Opened": "opened", "Message Clicked": "clicked", "Message Skipped": "skipped"}
WORKED = frozenset({"delivered", "opened", "clicked"})


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + IN_CHUNK] for i in range(0, len(items), IN_CHUNK)]


def _locked(ids: list[int]) -> list[Run]:
    """Runs by id, locked on PostgreSQL in id order (the engine locks in the same order: no deadlock), each
    with its version attached from one read of the few versions they share — not joined into every run's
    row, which decoded the version's whole definition once per run (a third of waking runs, profiled)."""
    runs = sql.runs_read(ids=sorted(ids), lock=True)
    versions = JourneyVersion.objects.in_bulk({r.version_id for r in runs})
    for run in runs:
        run.version = versions[run.version_id]
    return runs


class Inline:
    """How many runs one chunk may still execute inside the applier's transaction; the rest are left due for
    the engine (woken after commit), so a chunk entering thousands of customers does not stall ingestion."""

    def __init__(self, now: Any, limit: int = INLINE_LIMIT, past: bool = False) -> None:
        self.now, self.left, self.deferred, self.past = now, limit, False, past

    def run(self, runs: list[Run], history: dict[int, sql.HistoryRow] | None = None) -> list[Run]:
        """Execute what the budget allows now; return the runs left for the engine. ``history``: a row per
        run woken by an awaited event: those executed now have it written in their turn's insert, the others
        here."""
        ready = [r for r in runs if not r.held]
        now, later = ready[:self.left], ready[self.left:]
        self.left -= len(now)
        self.deferred = self.deferred or bool(later)
        history = history or {}
        engine.runs_step_now(runs=now, now=self.now, past=self.past,
                             history=[history[r.pk] for r in now if r.pk in history])
        left = later + [r for r in runs if r.held]
        sql.history_insert([history[r.pk] for r in left if r.pk in history])
        return left


@dataclass
class Matched:
    entered: int = 0
    woken: int = 0
    deferred: bool = False  # runs left due for the engine (over the chunk's budget): wake it after commit


def events_match(*, workspace: Any, events: list[AppliedEvent], now: dt.datetime, journey: Journey | None = None,
                 past: bool = False) -> Matched:
    """Match applied ``events`` (in log order) at ``now`` against the workspace's journeys, or ``journey``
    alone, in the caller's transaction; ``past`` replays history (sends recorded at ``now``)."""
    events = [e for e in events if e.customer_id is not None and e.type == "track"]
    if not events:
        return Matched()
    ctx = context(workspace, now=now)
    scope = Scope(journey)
    scope.read(workspace.pk)
    inline = Inline(now, past=past)
    entered = _entries(workspace.pk, events, ctx, now, scope)
    position = {e.message_id: i for i, e in enumerate(events)}
    since = {r.pk: position.get(r.context["entry"].get("event", {}).get("message_id"), -1) for r in entered}
    inline.run(entered)
    woken = _awaited(events, ctx, now, since, inline, scope)
    _goals(workspace.pk, events, ctx, now, since, scope)
    if journey is None:
        _outcomes(events)
    return Matched(entered=len(entered), woken=woken, deferred=inline.deferred)


class Scope:
    """All the workspace's journeys, or one."""

    def __init__(self, journey: Journey | None) -> None:
        self.journey = journey
        self.versions: list[JourneyVersion] = []
        self.awaited: set[str] = set()  # the events some step of a version waits for
        self.plans: dict[int, Any] = {}  # version id -> plan, as ``step`` needs them

    def read(self, workspace_id: int) -> None:
        """The published versions in scope, once per chunk (their plans are cached): an event no version
        waits for is never looked up."""
        self.versions = list(self.runs(JourneyVersion.objects.filter(journey__workspace_id=workspace_id))
                             .exclude(journey__status=Journey.Status.DRAFT))
        for version in self.versions:
            self.awaited |= {s.raw["event"] for s in plan_of(version).steps.values() if s.type == "wait_for_event"}

    def step(self, version_id: int, step_id: str) -> Any:
        """The parsed ``where`` of a version's ``wait_for_event`` step (``()`` if it has none; a version out
        of scope, as a run of a journey back in draft, read once)."""
        plans = self.plans
        if version_id not in plans:
            version = next((v for v in self.versions if v.pk == version_id), None)
            version = version or JourneyVersion.objects.get(pk=version_id)
            plans[version_id] = plan_of(version)
        found = plans[version_id].steps.get(step_id)
        return found.where if found is not None else ()

    def runs(self, rows: Any, path: str = "journey") -> Any:
        return rows if self.journey is None else rows.filter(**{path: self.journey})


def runs_merge(*, merges: list[tuple[int, int]], now: dt.datetime) -> int:
    """Profiles merged in the applier's chunk: the runs of the profile that no longer exists (``other``) go
    on as runs of the one it joined (``into``), what they await with them, so the events now resolved to
    ``into`` find them. Where ``into`` already has a run of the same version and entry key, the merged-away
    run is cancelled (one run per customer, version and entry key), with the reason in its history. In the
    caller's transaction; returns the runs moved."""
    moved = 0
    for into, other in merges:
        runs = list(Run.objects.filter(customer_id=other).exclude(status__in=Run.ENDED).order_by("pk"))
        if not runs:
            continue
        taken = set(Run.objects.filter(customer_id=into).values_list("version_id", "entry_key"))
        history = []
        for run in runs:
            if (run.version_id, run.entry_key) in taken:
                Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED, due_at=None, ended_at=now,
                                                     step_state="", held=False, updated_at=now, awaits="")
                history.append(RunHistory(run_id=run.pk, journey_id=run.journey_id, step=run.step,
                                          action="cancelled", at=now,
                                          outcome={"reason": f"merged into customer {into}, who has this run"}))
                continue
            Run.objects.filter(pk=run.pk).update(customer_id=into, updated_at=now)  # what it awaits goes along
            history.append(RunHistory(run_id=run.pk, journey_id=run.journey_id, step=run.step, action="merged",
                                      at=now, outcome={"from_customer": other, "into_customer": into}))
            taken.add((run.version_id, run.entry_key))
            moved += 1
        RunHistory.objects.bulk_create(history)
    return moved


def journey_event_names(journey: Journey) -> set[str]:
    """The event names a journey reacts to, in any of its versions: entries, awaited events, goals."""
    names: set[str] = set()
    for version in JourneyVersion.objects.filter(journey=journey):
        plan = plan_of(version)
        names |= {s.raw["event"] for s in plan.steps.values() if s.type == "wait_for_event"}
        if plan.goal is not None:
            names.add(plan.goal["event"])
        if plan.entry_event is not None:
            names.add(plan.entry_event)
    return names


def _awaited(events: list[AppliedEvent], ctx: Context, now: Any, since: dict[int, int], inline: Inline,
             scope: Scope) -> int:
    awaited = [e for e in events if e.event in scope.awaited]  # ``events`` stay whole: ``since`` counts in it
    if not awaited:
        return 0
    customers = sorted({e.customer_id for e in awaited if e.customer_id is not None})
    names = sorted({e.event for e in awaited})
    waiting: dict[tuple[int, str], list[tuple[int, str, Any]]] = {}
    journey_id = scope.journey.pk if scope.journey is not None else None
    for part in _chunks(customers):
        for run_id, customer_id, name, step, version_id in sql.awaits_read(customer_ids=part, names=names,
                                                                           journey_id=journey_id):
            waiting.setdefault((customer_id, name), []).append((run_id, step, scope.step(version_id, step)))
    if not waiting:
        return 0
    matched: dict[int, tuple[str, AppliedEvent]] = {}
    for i, event in enumerate(events):
        for run_id, step, where in waiting.get((event.customer_id, event.event), ()):  # type: ignore[arg-type]
            if run_id not in matched and i > since.get(run_id, -1) and _where_ok(where, event, ctx):
                matched[run_id] = (step, event)
    if not matched:
        return 0
    history: dict[int, sql.HistoryRow] = {}
    woken = []
    for run in _locked(list(matched)):
        step, event = matched[run.pk]
        if run.step != step or run.step_state != engine.WAITING:
            continue  # moved on meanwhile (its timeout fired in a turn that committed first)
        run.context.setdefault("steps", {}).setdefault(step, {})["event"] = event_context(event)
        run.due_at, run.updated_at = now, now
        outcome: dict[str, Any] = {"event": event.event, "message_id": event.message_id}
        if run.status == Run.Status.PAUSED:
            outcome["while_paused"] = True
        history[run.pk] = sql.HistoryRow(run.pk, run.journey_id, step, "event", now, outcome, "")
        # Every woken run awaits nothing more, a paused one too: the event is in its context, and a second
        # event must not wake it twice.
        run.awaits = ""
        woken.append(run)
    # The woken runs go on now, in this transaction (the event's commit is the run's); paused ones and those
    # over the chunk's budget keep the event and are due for the engine.
    later = inline.run(woken, history)
    sql.rows_update(Run, later, ("context", "due_at", "updated_at", "awaits"))
    if any(not r.held for r in later):
        inline.deferred = True
    return len(history)


def _goals(workspace_id: int, events: list[AppliedEvent], ctx: Context, now: Any, since: dict[int, int],
           scope: Scope) -> None:
    goal_names: dict[str, set[int]] = {}
    for version in scope.versions:
        plan = plan_of(version)
        if plan.goal is not None:
            goal_names.setdefault(plan.goal["event"], set()).add(version.pk)
    relevant = [e for e in events if e.event in goal_names]
    if not relevant:
        return
    version_ids = set().union(*(goal_names[e.event] for e in relevant))
    customers = sorted({e.customer_id for e in relevant if e.customer_id is not None})
    candidates: list[int] = []
    for part in _chunks(customers):
        candidates += (Run.objects.filter(customer_id__in=part, version_id__in=version_ids, goal_at__isnull=True)
                       .exclude(status=Run.Status.CANCELLED)
                       .filter(Q(goal_until__isnull=True) | Q(goal_until__gte=now))
                       .values_list("pk", flat=True))
    if not candidates:
        return
    runs = _locked(candidates)
    by_customer: dict[int, list[Run]] = {}
    for run in runs:
        by_customer.setdefault(run.customer_id, []).append(run)
    history, changed = [], []
    position = {e.message_id: i for i, e in enumerate(events)}
    for event in relevant:
        for run in by_customer.get(event.customer_id, []):  # type: ignore[arg-type]
            plan = plan_of(run.version)
            if run.goal_at is not None or plan.goal is None or plan.goal["event"] != event.event:
                continue
            if position[event.message_id] <= since.get(run.pk, -1):
                continue  # before (or is) the event the run entered with
            if not _where_ok(plan.goal_where, event, ctx):
                continue
            run.goal_at = now
            history.append(RunHistory(run=run, journey_id=run.journey_id, step=run.step, action="goal", at=now,
                                      outcome={"event": event.event, "message_id": event.message_id}))
            if plan.goal.get("exit", True) and run.status not in Run.ENDED:
                run.status, run.step_state, run.due_at, run.ended_at = Run.Status.EXITED, "", None, now
                run.awaits = ""
                history.append(RunHistory(run=run, journey_id=run.journey_id, step=run.step, action="exited",
                                          at=now, outcome={"reason": "goal"}))
            changed.append(run)
    Run.objects.bulk_update(changed, ["goal_at", "status", "step_state", "due_at", "ended_at", "awaits"],
                            batch_size=500)
    RunHistory.objects.bulk_create(history, batch_size=500)


def _where_ok(where: Any, event: AppliedEvent, ctx: Context) -> bool:
    return where_holds(where, event.properties, ctx)


def _entries(workspace_id: int, events: list[AppliedEvent], ctx: Context, now: Any, scope: Scope) -> list[Run]:
    live = (scope.runs(JourneyVersion.objects).filter(journey__workspace_id=workspace_id,
                                          journey__status__in=[Journey.Status.ACTIVE, Journey.Status.PAUSED],
                                          number=F("journey__current_version"))
            .select_related("journey"))
    created: list[Run] = []
    for version in live:
        plan = plan_of(version)
        name = plan.entry_event
        if name is None:
            continue
        segment = plan.entry.get("segment_entered")
        candidates = [
            Candidate(customer_id=e.customer_id, entry={"event": event_context(e)}, at=now)  # type: ignore[arg-type]
            for e in events
            if e.event == name and (e.properties.get("segment") == segment if segment is not None
                                    else _where_ok(plan.entry_where, e, ctx))
        ]
        if candidates:
            created += runs_enter(journey=version.journey, version=version, plan=plan, candidates=candidates,
                                  now=now)
    return created


def _outcomes(events: list[AppliedEvent]) -> None:
    outcomes = [(e, OUTCOME_EVENTS[e.event]) for e in events if e.event in OUTCOME_EVENTS
                and isinstance(e.properties.get("send_id"), int)]
    if not outcomes:
        return
    sends = dict(RunSend.objects.filter(send_id__in={e.properties["send_id"] for e, _ in outcomes})
                 .values_list("send_id", "run_id"))
    if not sends:
        return
    steps = dict(RunSend.objects.filter(send_id__in=sends).values_list("send_id", "step"))
    runs = {r.pk: r for r in _locked(sorted(set(sends.values())))}
    for event, outcome in outcomes:
        send_id = event.properties["send_id"]
        run = runs.get(sends.get(send_id, -1))
        if run is None:
            continue
        state = run.context.setdefault("steps", {}).setdefault(steps[send_id], {})
        if state.get("outcome") in WORKED and outcome not in WORKED:
            continue  # an open after a delivery stays the better news; a late "sent" does not undo it
        state["outcome"] = outcome
        channel = event.properties.get("channel")
        if channel:
            state["channel"] = channel
            if outcome in WORKED:
                run.context["last_channel"] = channel
        state["outcome_at"] = iso(event.timestamp)
    Run.objects.bulk_update(list(runs.values()), ["context"], batch_size=500)
