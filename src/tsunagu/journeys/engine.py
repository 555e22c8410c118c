"""The engine: claim due runs with a lease, then execute their steps until each run waits or ends.

Exactly once. A claim (one short transaction) marks up to ``limit`` due runs with the worker's id and a
lease. The turn (a second transaction) re-reads only the runs still claimed by this worker — on PostgreSQL
locking them — executes their steps and writes everything a step did (the history, the run's new state,
the sends it recorded, the webhook jobs it queued) together. A worker that dies mid-turn commits nothing:
its runs are claimed again once the lease runs out and the steps are executed then, once. Nothing leaves
the process inside a turn: a send is a ``Send`` row (messaging delivers it after commit, its idempotency key
``journey-run:<run>:<step>:<visit>``), a webhook a job with the same key, a trait update an outbox row.

A run holds nothing in memory while it waits: a timer is its ``due_at``, an awaited event its ``awaits``
column (indexed with its customer: the applier finds the run and makes it go on when the event comes,
``journeys.matching``), a webhook's answer the job that makes it due.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from tsunagu.core import clock
from tsunagu.core.errors import TsunaguError
from tsunagu.core.jobs import job_enqueue
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import System
from tsunagu.journeys import sql
from tsunagu.journeys.definition import JOURNEY_HEAD, Plan, Step
from tsunagu.journeys.models import Journey, JourneyVersion, Run, RunSend, Task, TraitUpdate
from tsunagu.journeys.plans import JourneyFacts, iso, plan_of, split_bucket, split_path
from tsunagu.segments.rule.pyeval import evaluate
from tsunagu.segments.rule.values import DATE_RE, context, path_get
from tsunagu.segments.selectors import catalog, rule_holds

log = logging.getLogger(__name__)

WAITING = "waiting"
MAX_STEPS_PER_TURN = 250  # a run's steps in one turn: more than any path without a wait can have
# Woken by the applier when it made runs due, so an awaited event resumes its run at once, not at the next poll.
WAKE = threading.Event()
WEBHOOK_JOB = "journeys.webhook"
NOTIFY_EMAIL_JOB = "journeys.notify_email"


def lease() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "TSUNAGU_JOURNEY_LEASE", 60)))


def actor_of(journey: Journey) -> System:
    return System(f"journey {journey.key}")


# -- the claim -----------------------------------------------------------------------------------------------

def runs_claim(*, worker_id: str, limit: int = 500, now: dt.datetime | None = None) -> list[int]:
    """Mark up to ``limit`` due runs (not held, lease free or expired) as this worker's. One transaction: a
    conditional UPDATE under SQLite's write lock; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on
    several machines never take the same run or wait for each other. 500 by default: a turn's commit (an
    fsync) is shared by that many runs, and on a loaded disk it is what a turn costs most."""
    now = now or clock.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if connection.vendor != "postgresql" and not Run.objects.filter(free, held=False, due_at__lte=now).exists():
        # A read first: on SQLite every transaction here takes the database's write lock at BEGIN, and an
        # idle engine polling four times a second must not queue the applier behind it.
        return []
    with transaction.atomic():
        due = Run.objects.filter(free, held=False, due_at__lte=now).order_by("due_at")
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if ids:
            Run.objects.filter(pk__in=ids).update(locked_by=worker_id, lease_until=now + lease())
    return ids


# -- one turn ------------------------------------------------------------------------------------------------

@dataclass
class Turn:
    """What a turn writes, gathered and written together at its end."""

    now: dt.datetime
    history: list[sql.HistoryRow] = field(default_factory=list)
    run_sends: list[RunSend] = field(default_factory=list)
    traits: list[TraitUpdate] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    catalogs: dict[int, Any] = field(default_factory=dict)
    steps: int = 0
    # A dry run (``journeys.dryrun``): steps that would leave the process record what they would do instead.
    dry: bool = False
    # Replaying the past (the demo's weeks of history): sends are recorded at ``now``, outside quiet hours.
    past: bool = False
    runs: list[Run] = field(default_factory=list)

    _LISTS = ("history", "run_sends", "traits", "tasks")

    def marks(self) -> tuple[int, ...]:
        return tuple(len(getattr(self, name)) for name in self._LISTS)

    def rewind(self, marks: tuple[int, ...]) -> None:
        for name, mark in zip(self._LISTS, marks, strict=True):
            del getattr(self, name)[mark:]

    def with_customer(self, run: Run) -> Run:
        """``run`` with its customer loaded: on first need, the customers of every run of the turn in one
        query (most steps — waits, splits, journey conditions — never read the profile)."""
        if not Run.customer.is_cached(run):
            _customers(self.runs or [run])
        return run

    def note(self, run: Run, step: str, action: str, outcome: Any = None, actor: str = "") -> None:
        self.history.append(sql.HistoryRow(run.pk, run.journey_id, step, action, self.now, outcome, actor))


class Wait:
    """A step's answer when the run now waits on it."""


WAIT = Wait()


def runs_execute(*, ids: list[int], worker_id: str, now: dt.datetime | None = None, past: bool = False) -> int:
    """Execute the claimed runs ``ids`` that are still this worker's; return how many steps ran. One
    transaction for all of them; a run whose step raises unexpectedly is marked failed (with the error in
    its history) rather than failing the others."""
    now = now or clock.now()
    turn = Turn(now=now, past=past)
    with transaction.atomic():
        runs = turn.runs = _with_shared(sql.runs_read(ids=ids, locked_by=worker_id, lock=True))
        for run in runs:
            # Paused or ended since the claim, or no longer due: the applier may have run it meanwhile (an
            # awaited event came) and left it waiting on a later step.
            if run.due_at is not None and run.due_at <= now:
                _execute_one(run, turn)
        _flush(runs, turn)
    return turn.steps


def _execute_one(run: Run, turn: Turn) -> None:
    if run.held or run.status not in (Run.Status.ACTIVE, Run.Status.WAITING):
        return
    marks = turn.marks()
    # No savepoint per run: a step writes nothing itself but what the turn gathers (rewound below on
    # failure); the services it calls (a send, a job) keep their writes in savepoints of their own.
    try:
        _advance(run, plan_of(run.version), turn)
    except Exception as exc:  # noqa: BLE001 - one run's bug must not stop the batch
        log.exception("journey run %s failed at step %s", run.pk, run.step)
        turn.rewind(marks)  # what the failed step gathered was rolled back with its savepoint
        _end(run, turn, Run.Status.FAILED, reason=f"{type(exc).__name__}: {exc}"[:500])


def runs_step_now(*, runs: list[Run], now: dt.datetime, past: bool = False,
                  history: Sequence[sql.HistoryRow] = ()) -> int:
    """Execute ``runs`` at once in the caller's transaction — the applier's, for the runs an applied event
    entered or woke — so a run goes on in the commit that applied its event, not at the engine's next claim
    (on SQLite the engine would wait for the applier's write lock). The caller holds the runs' rows (locked
    on PostgreSQL; SQLite's write lock). Their lease, if a worker had claimed one, is cleared: that worker's
    turn no longer finds them its own. ``history``: rows the caller has for these runs, written first in the
    turn's one insert (the awaited event that woke them). Returns the steps executed."""
    if not runs:
        return 0
    turn = Turn(now=now, runs=runs, past=past, history=list(history))
    _with_shared(runs)
    for run in runs:
        _execute_one(run, turn)
    _flush(runs, turn)
    return turn.steps


FLUSHED = ("status", "step", "step_state", "visits", "due_at", "context", "locked_by", "lease_until", "updated_at",
           "ended_at", "awaits")


def _with_shared(runs: list[Run]) -> list[Run]:
    """Attach each run's journey, version and workspace, read once per turn: a turn's runs share a few of
    each, and joining them into every run's row cost more than the steps (profile of the bench)."""
    if not runs:
        return runs
    shared = ((Run.version.field, JourneyVersion, "version_id"), (Run.journey.field, Journey, "journey_id"),
              (Run.workspace.field, Workspace, "workspace_id"))
    for fk, model, attname in shared:
        # The related object put in the run's cache as the ORM's select_related does (the descriptor's
        # ``__set__`` checks per run were most of this, profiled); one already attached is kept.
        missing = {getattr(r, attname) for r in runs if not fk.is_cached(r)}
        found = model.objects.in_bulk(missing) if missing else {}
        for run in runs:
            if not fk.is_cached(run):
                fk.set_cached_value(run, found[getattr(run, attname)])
    return runs


def _customers(runs: list[Run]) -> None:
    from tsunagu.customers.models import Customer

    missing = {r.customer_id for r in runs if not Run.customer.is_cached(r)}
    found = Customer.objects.in_bulk(list(missing))
    for run in runs:
        if run.customer_id in found:
            run.customer = found[run.customer_id]


def _flush(runs: list[Run], turn: Turn) -> None:
    for run in runs:
        run.locked_by, run.lease_until, run.updated_at = "", None, turn.now
    # One executemany per table (``journeys.sql``): the ORM's bulk_update (a CASE per field and row) was most
    # of a turn's time.
    sql.rows_update(Run, runs, FLUSHED)
    sql.history_insert(turn.history)
    sql.rows_insert(RunSend, turn.run_sends)
    sql.rows_insert(Task, turn.tasks)
    if turn.traits:
        sql.rows_insert(TraitUpdate, turn.traits)
        from tsunagu.journeys.outbox import trait_updates_publish

        transaction.on_commit(lambda: trait_updates_publish(limit=10_000), robust=True)


def runs_run_due(*, worker_id: str, limit: int = 500, now: dt.datetime | None = None, past: bool = False) -> int:
    """Claim and execute due runs once; return how many runs were claimed. ``now`` and ``past`` replay
    history (the demo): the turn runs at ``now`` and its sends are recorded then."""
    ids = runs_claim(worker_id=worker_id, limit=limit, now=now)
    if ids:
        runs_execute(ids=ids, worker_id=worker_id, now=now, past=past)
    return len(ids)


# -- steps ---------------------------------------------------------------------------------------------------

def _steps(run: Run) -> dict[str, Any]:
    steps: dict[str, Any] = run.context.setdefault("steps", {})
    return steps


def _advance(run: Run, plan: Plan, turn: Turn) -> None:
    for _ in range(MAX_STEPS_PER_TURN):
        step = plan.steps.get(run.step)
        if step is None:
            _end(run, turn, Run.Status.FAILED, reason=f"the version has no step {run.step!r}")
            return
        if run.step_state == WAITING:
            target: Any = _wake(run, step, turn)
        else:
            if plan.exit_when is not None and _holds(run, plan.exit_when, turn):
                _end(run, turn, Run.Status.EXITED, reason="exit_when")
                return
            run.visits += 1
            turn.steps += 1
            target = _EXECUTE[step.type](run, step, turn)
            if target is WAIT:
                run.status, run.step_state = Run.Status.WAITING, WAITING
                return
        if target is None:
            _end(run, turn, Run.Status.COMPLETED)
            return
        if target == "exit":
            _end(run, turn, Run.Status.EXITED, reason=f"step {step.id}")
            return
        run.step, run.step_state, run.status = target, "", Run.Status.ACTIVE
    run.due_at = turn.now  # a very long path: the rest in the next turn


def _end(run: Run, turn: Turn, status: str, *, reason: str = "") -> None:
    run.awaits = ""  # an ended run awaits nothing (whatever step it ended on, a failed one included)
    run.status, run.step_state, run.due_at, run.ended_at = status, "", None, turn.now
    turn.note(run, run.step, status, {"reason": reason} if reason else None)


def _record(run: Run, step: Step, turn: Turn, outcome: Any, **more: Any) -> None:
    _steps(run)[step.id] = {"at": iso(turn.now), "outcome": outcome, **more}
    turn.note(run, step.id, "step", {"outcome": outcome, **more})


def _wake(run: Run, step: Step, turn: Turn) -> Any:
    """The run waited on ``step`` and is due: where it goes now."""
    state = _steps(run).setdefault(step.id, {})
    if step.type == "wait_for_event":
        run.awaits = ""
        matched = state.get("event")
        state["outcome"] = "event" if matched else "timeout"
        turn.note(run, step.id, "done", {"by": state["outcome"]})
        key = "on_event" if matched else "on_timeout"
        return step.raw.get(key, step.next)
    turn.note(run, step.id, "done", {"by": "response" if step.type == "webhook" else "timer"})
    if step.type == "wait":
        state["outcome"] = "waited"
    return step.next


def _customer_zone(run: Run) -> zoneinfo.ZoneInfo:
    for name in (path_get(run.customer.traits, ("timezone",)), run.workspace.timezone, "Asia/Tokyo"):
        if isinstance(name, str) and name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return zoneinfo.ZoneInfo("Asia/Tokyo")


def _hm(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def wait_until(run: Run, raw: dict[str, Any], now: dt.datetime) -> tuple[dt.datetime | None, str]:
    """When a wait step ends (None: at once) and why, in the customer's time zone (trait ``timezone``, else
    the workspace's)."""
    if "seconds" in raw:
        return now + dt.timedelta(seconds=raw["seconds"]), ""
    tz = _customer_zone(run)
    local = now.astimezone(tz)
    if "until_time" in raw:
        at = dt.datetime.combine(local.date(), _hm(raw["until_time"]), tz)
        return (at if at > local else at + dt.timedelta(days=1)).astimezone(dt.UTC), ""
    value = path_get(run.customer.traits, tuple(str(raw["until_trait"]).split(".")))
    match = DATE_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None, f"the trait {raw['until_trait']} is not a date"
    if match.group(4) is None:  # a date: its day at `at` (09:00), this year's anniversary when it has passed
        year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
        clock_time = _hm(raw.get("at", "09:00"))
        for candidate_year in (year, local.year, local.year + 1):
            try:
                at = dt.datetime.combine(dt.date(candidate_year, month, day), clock_time, tz)
            except ValueError:  # 29 February in a common year
                at = dt.datetime.combine(dt.date(candidate_year, 3, 1), clock_time, tz)
            if at > local:
                return at.astimezone(dt.UTC), ""
        return None, "the date has passed"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return (parsed if parsed > now else None), ("" if parsed > now else "the time has passed")


def _wait(run: Run, step: Step, turn: Turn) -> Any:
    if "seconds" not in step.raw:
        turn.with_customer(run)  # the customer's time zone, or the trait
    until, why = wait_until(run, step.raw, turn.now)
    if until is None or until <= turn.now:
        _record(run, step, turn, "skipped", reason=why or "the time has come")
        return step.next
    run.due_at = until
    _steps(run)[step.id] = {"at": iso(turn.now), "until": iso(until)}
    turn.note(run, step.id, "wait", {"until": iso(until)})
    return WAIT


def _wait_for_event(run: Run, step: Step, turn: Turn) -> Any:
    timeout = step.raw.get("timeout_seconds")
    run.due_at = turn.now + dt.timedelta(seconds=timeout) if timeout else None
    run.awaits = step.raw["event"]  # the step's ``where`` is in the run's version
    state = {"at": iso(turn.now), "waiting_for": step.raw["event"]}
    if run.due_at is not None:
        state["until"] = iso(run.due_at)
    _steps(run)[step.id] = state
    turn.note(run, step.id, "wait", {"event": step.raw["event"], "until": state.get("until")})
    return WAIT


def journey_view(run: Run) -> dict[str, Any]:
    """The run's context as rules and templates read it (``journey.*``)."""
    ctx = run.context
    return {"entry": ctx.get("entry", {}), "steps": ctx.get("steps", {}), "last_channel": ctx.get("last_channel"),
            "split": ctx.get("split", {}), "run_id": run.pk, "journey": run.journey.key,
            "version": run.version.number}


def side_effect_key(run: Run, step: Step) -> str:
    return f"journey-run:{run.pk}:{step.id}:{run.visits}"


def _send(run: Run, step: Step, turn: Turn) -> Any:
    from tsunagu.messaging.services import send_create

    raw = step.raw
    if turn.dry:
        _record(run, step, turn, "would send", communication=raw["communication"])
        return step.next
    entry_event = run.context.get("entry", {}).get("event")
    try:
        with transaction.atomic():
            send = send_create(
                workspace=run.workspace, communication=raw["communication"],
                customer=turn.with_customer(run).customer,
                actor=actor_of(run.journey), policy=raw.get("policy"),
                data={**raw.get("data", {}), "journey": journey_view(run)},
                event=entry_event, idempotency_key=side_effect_key(run, step), at=turn.now if turn.past else None,
            )
    except TsunaguError as exc:
        _record(run, step, turn, "failed", error=exc.message)
        return step.next
    turn.run_sends.append(RunSend(send_id=send.pk, run_id=run.pk, step=step.id))
    _record(run, step, turn, send.status, send_id=send.pk)
    return step.next


def _holds(run: Run, parsed: Any, turn: Turn) -> bool:
    view = journey_view(run)
    ctx = context(run.workspace, now=turn.now)
    deps = parsed.deps
    if deps.traits <= {JOURNEY_HEAD} and not (deps.fields or deps.events or deps.computed or deps.segments
                                              or deps.consent):
        return bool(evaluate(parsed.node, JourneyFacts(None, view), ctx))  # the context alone: no profile read
    cat = turn.catalogs.get(run.workspace_id)
    if cat is None:
        cat = turn.catalogs[run.workspace_id] = catalog(run.workspace)
    return rule_holds(parsed=parsed, customer=turn.with_customer(run).customer, cat=cat, ctx=ctx,
                      wrap=lambda facts: JourneyFacts(facts, view))


def _branch(run: Run, step: Step, turn: Turn) -> Any:
    took = _holds(run, step.rule, turn)
    target = step.raw["then"] if took else step.raw["else"]
    _record(run, step, turn, "then" if took else "else", next=target)
    return target


def _split(run: Run, step: Step, turn: Turn) -> Any:
    label, target = split_path(step.raw, split_bucket(run.journey_id, step.id, run.customer_id))
    run.context.setdefault("split", {})[step.id] = label
    _record(run, step, turn, label, next=target)
    return target


def _update_traits(run: Run, step: Step, turn: Turn) -> Any:
    if turn.dry:
        _record(run, step, turn, "would update", traits=sorted(step.raw["traits"]))
        return step.next
    turn.traits.append(TraitUpdate(workspace_id=run.workspace_id, customer_id=run.customer_id,
                                   message_id=f"tsunagu:{side_effect_key(run, step)}", traits=step.raw["traits"],
                                   created_at=turn.now))
    _record(run, step, turn, "recorded", traits=sorted(step.raw["traits"]))
    return step.next


def _notify(run: Run, step: Step, turn: Turn) -> Any:
    raw = step.raw
    if turn.dry:
        _record(run, step, turn, "would notify")
        return step.next
    if "task" in raw:
        turn.tasks.append(Task(workspace_id=run.workspace_id, run_id=run.pk, customer_id=run.customer_id,
                               title=raw["task"], assignee=raw.get("assignee", ""), created_at=turn.now))
        _record(run, step, turn, "task")
        return step.next
    kind = WEBHOOK_JOB if "webhook" in raw else NOTIFY_EMAIL_JOB
    job_enqueue(kind=kind, workspace=run.workspace, idempotency_key=side_effect_key(run, step), due_at=turn.now,
                payload={"run_id": run.pk, "step": step.id, "notify": True, "visit": run.visits})
    _record(run, step, turn, "queued")
    return step.next


def _webhook(run: Run, step: Step, turn: Turn) -> Any:
    if turn.dry:
        _record(run, step, turn, "would call", url=step.raw["url"])
        return step.next
    job_enqueue(kind=WEBHOOK_JOB, workspace=run.workspace, idempotency_key=side_effect_key(run, step),
                due_at=turn.now, payload={"run_id": run.pk, "step": step.id, "visit": run.visits})
    run.due_at = None
    _steps(run)[step.id] = {"at": iso(turn.now), "outcome": "sending"}
    turn.note(run, step.id, "wait", {"webhook": step.raw["url"]})
    return WAIT


def _exit(run: Run, step: Step, turn: Turn) -> Any:
    _record(run, step, turn, "exit")
    return "exit"


_EXECUTE = {
    "wait": _wait, "wait_for_event": _wait_for_event, "send": _send, "branch": _branch, "split": _split,
    "update_traits": _update_traits, "notify": _notify, "webhook": _webhook, "exit": _exit,
}
