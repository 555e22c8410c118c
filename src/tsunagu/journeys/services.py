"""Writes of journeys: definitions (draft, publish), a whole journey's pause and resume, one run's start,
pause, resume and cancel, evaluations, and migrating waiting runs to another version.

Every function takes ``actor=`` and asks ``authorize`` first (docs/journeys.md, "Who may"); configuration
changes are audited in their transaction, and everything done to a run is in its history with who did it.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import IntegrityError, transaction

from tsunagu.core import clock
from tsunagu.core.errors import Conflict, NotFound, ValidationError
from tsunagu.core.models import Workspace
from tsunagu.core.permissions import Perm, actor_label, authorize
from tsunagu.core.services import audit_record
from tsunagu.customers.models import Customer
from tsunagu.journeys import engine, sql
from tsunagu.journeys.definition import Plan, definition_parse
from tsunagu.journeys.entries import Candidate, runs_enter
from tsunagu.journeys.models import Evaluation, Journey, JourneyVersion, Run, RunHistory
from tsunagu.journeys.plans import plan_of
from tsunagu.journeys.selectors import known_names

KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_DEFINITION_BYTES = 256 * 1024
MAX_DATA_BYTES = 16 * 1024


def _key(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 100 or any(c not in KEY_CHARS for c in value):
        raise ValidationError("must be 1–100 lower-case letters, digits, - or _", field="key")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValidationError("must be a non-empty string of at most 200 characters", field="name")
    return value.strip()


def definition_check(*, workspace: Workspace, definition: Any) -> Plan:
    """The plan of ``definition`` in ``workspace`` (its communications, segments and events), or
    ValidationError naming the step and field at fault. Reads only."""
    if isinstance(definition, dict):
        size = len(orjson.dumps(definition))
        if size > MAX_DEFINITION_BYTES:
            raise ValidationError(f"is {size} bytes, over the {MAX_DEFINITION_BYTES // 1024} KB limit",
                                  field="definition")
    try:
        return definition_parse(definition, known_names(workspace=workspace))
    except ValidationError as exc:
        field = f"definition.{exc.field}" if exc.field else "definition"
        raise ValidationError(exc.message, field=field) from None


def journey_create(*, workspace: Workspace, key: str, name: str, definition: Any, actor: Any) -> Journey:
    """Create a journey with ``definition`` as its draft (validated as a whole). One transaction, audited.
    Raises ValidationError (naming ``definition.steps[<id>].<field>``), Conflict (the key is taken)."""
    authorize(actor=actor, workspace=workspace, perm=Perm.JOURNEYS)
    key, name = _key(key), _name(name)
    definition_check(workspace=workspace, definition=definition)
    now = clock.now()
    try:
        with transaction.atomic():
            journey = Journey.objects.create(workspace=workspace, key=key, name=name, draft=definition,
                                             created_at=now, updated_at=now)
            audit_record(workspace=workspace, actor=actor, action="journey.create", target=key,
                         data={"name": name, "definition": definition})
    except IntegrityError:
        raise Conflict(f"a journey with key {key!r} exists", field="key") from None
    return journey


def journey_update(*, journey: Journey, definition: Any, actor: Any, name: str | None = None) -> Journey:
    """Replace the draft (and the name). Published versions are untouched. One transaction, audited."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    definition_check(workspace=journey.workspace, definition=definition)
    with transaction.atomic():
        before = journey.draft
        journey.draft = definition
        if name is not None:
            journey.name = _name(name)
        journey.updated_at = clock.now()
        journey.save(update_fields=["draft", "name", "updated_at"])
        audit_record(workspace=journey.workspace, actor=actor, action="journey.update", target=journey.key,
                     data={"before": before, "after": definition})
    return journey


def journey_publish(*, journey: Journey, actor: Any) -> JourneyVersion:
    """Publish the draft as the next version: new entries go to it; runs under way stay on theirs. A draft
    publishes as a journey that is active at once (a paused journey stays paused). The draft is checked
    again (a communication may have been deleted since). One transaction, audited."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    if journey.draft is None:
        raise ValidationError("there is no draft to publish", field="definition")
    definition_check(workspace=journey.workspace, definition=journey.draft)
    with transaction.atomic():
        locked = Journey.objects.select_for_update().get(pk=journey.pk)
        number = locked.current_version + 1
        version = JourneyVersion.objects.create(journey=locked, number=number, definition=locked.draft,
                                                published_by=actor_label(actor)[:200])
        locked.current_version = number
        if locked.status == Journey.Status.DRAFT:
            locked.status = Journey.Status.ACTIVE
        locked.updated_at = clock.now()
        locked.save(update_fields=["current_version", "status", "updated_at"])
        _schedule_start(version)
        audit_record(workspace=journey.workspace, actor=actor, action="journey.publish", target=journey.key,
                     data={"version": number})
    journey.refresh_from_db()
    return version


def _schedule_start(version: JourneyVersion) -> None:
    from tsunagu.journeys.models import ScheduleTick

    if "schedule" in version.definition.get("entry", {}):
        # Ticks from now on: publishing does not enter the customers of ticks that passed before it.
        ScheduleTick.objects.update_or_create(version=version, defaults={"last_tick": clock.now()})


def _history(runs: list[Run], action: str, actor: Any, outcome: Any = None) -> None:
    now = clock.now()
    RunHistory.objects.bulk_create(
        [RunHistory(run=r, journey_id=r.journey_id, step=r.step, action=action, at=now, outcome=outcome,
                    actor=actor_label(actor)[:200]) for r in runs], batch_size=1000)


def journey_pause(*, journey: Journey, actor: Any) -> Journey:
    """Pause the whole journey: no step of any of its runs runs until it resumes; entries are still
    recorded (the runs wait). Every live run's history notes the pause with its actor. One transaction."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    if journey.status != Journey.Status.ACTIVE:
        raise Conflict(f"the journey is {journey.status}, not active", field="status")
    with transaction.atomic():
        journey.status, journey.updated_at = Journey.Status.PAUSED, clock.now()
        journey.save(update_fields=["status", "updated_at"])
        Run.objects.filter(journey=journey).exclude(status__in=Run.ENDED).update(held=True)
        sql.history_for_runs(journey_id=journey.pk, exclude=sorted(Run.ENDED), action="paused", at=clock.now(),
                             outcome={"scope": "journey"}, actor=actor_label(actor)[:200])
        audit_record(workspace=journey.workspace, actor=actor, action="journey.pause", target=journey.key)
    return journey


def journey_resume(*, journey: Journey, actor: Any) -> Journey:
    """Resume a paused journey: its runs go on where they stopped — timers that fell due run now, events
    that came while paused are taken. Runs paused one by one stay paused. One transaction."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    if journey.status != Journey.Status.PAUSED:
        raise Conflict(f"the journey is {journey.status}, not paused", field="status")
    with transaction.atomic():
        journey.status, journey.updated_at = Journey.Status.ACTIVE, clock.now()
        journey.save(update_fields=["status", "updated_at"])
        kept = sorted(Run.ENDED | {Run.Status.PAUSED})  # runs paused one by one stay paused
        Run.objects.filter(journey=journey).exclude(status__in=kept).update(held=False)
        sql.history_for_runs(journey_id=journey.pk, exclude=kept, action="resumed", at=clock.now(),
                             outcome={"scope": "journey"}, actor=actor_label(actor)[:200])
        audit_record(workspace=journey.workspace, actor=actor, action="journey.resume", target=journey.key)
    transaction.on_commit(engine.WAKE.set)
    return journey


def _customer(workspace: Workspace, customer_id: Any, user_id: Any) -> Customer:
    from tsunagu.customers.selectors import customer_find_by_identity
    from tsunagu.segments.selectors import live_customer

    if (customer_id is None) == (user_id is None):
        raise ValidationError("give exactly one of customer_id and user_id", field="customer_id")
    if customer_id is not None:
        if not isinstance(customer_id, int) or isinstance(customer_id, bool):
            raise ValidationError("must be a customer id", field="customer_id")
        return live_customer(workspace=workspace, customer_id=customer_id)
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationError("must be a non-empty string", field="user_id")
    found = customer_find_by_identity(workspace=workspace, type_="user_id", value=user_id.strip())
    if found is None:
        raise NotFound(f"no customer with user_id {user_id!r}", field="user_id")
    return live_customer(workspace=workspace, customer_id=found.pk)


def run_start(*, journey: Journey, actor: Any, customer_id: int | None = None, user_id: str | None = None,
              data: dict[str, Any] | None = None) -> Run:
    """Enter one customer through the API (the journey's entry must be ``{"api": true}``), with ``data``
    in the run's context (``journey.entry.data``). One transaction. Raises ValidationError, NotFound (the
    customer), Conflict (not published, not an API entry, or the re-entry policy refuses)."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEY_RUNS)
    if data is not None and not isinstance(data, dict):
        raise ValidationError("must be an object", field="data")
    if data and len(orjson.dumps(data)) > MAX_DATA_BYTES:
        raise ValidationError(f"is over the {MAX_DATA_BYTES // 1024} KB limit", field="data")
    customer = _customer(journey.workspace, customer_id, user_id)
    if journey.current_version == 0:
        raise Conflict("the journey has not been published", field="key")
    version = JourneyVersion.objects.get(journey=journey, number=journey.current_version)
    plan = plan_of(version)
    if not plan.entry.get("api"):
        raise Conflict("this journey's entry is not the API (entry: {\"api\": true})", field="key")
    now = clock.now()
    with transaction.atomic():
        runs = runs_enter(journey=journey, version=version, plan=plan, now=now, actor=actor_label(actor)[:200],
                          candidates=[Candidate(customer_id=customer.pk, entry={"data": data or {}}, at=now)])
    if not runs:
        raise Conflict(f"the re-entry policy ({plan.reentry['policy']}) does not let this customer in again",
                       field="customer_id")
    transaction.on_commit(engine.WAKE.set)
    return runs[0]


def _locked_run(run: Run) -> Run:
    # The run's row only: its journey and workspace rows stay free for the engine and the other runs.
    return Run.objects.select_for_update(of=("self",)).select_related("journey", "workspace").get(pk=run.pk)


def run_pause(*, run: Run, actor: Any) -> Run:
    """Pause one customer's run where it is: no step runs; a timer that falls due and an awaited event that
    comes are kept for the resume. One transaction; in the run's history with the actor."""
    authorize(actor=actor, workspace=run.workspace, perm=Perm.JOURNEY_RUNS)
    with transaction.atomic():
        run = _locked_run(run)
        if run.status not in (Run.Status.ACTIVE, Run.Status.WAITING):
            raise Conflict(f"the run is {run.status}: only an active or waiting run pauses", field="status")
        run.resume_status, run.status, run.held = run.status, Run.Status.PAUSED, True
        run.updated_at = clock.now()
        run.save(update_fields=["resume_status", "status", "held", "updated_at"])
        _history([run], "paused", actor, {"scope": "run"})
    return run


def run_resume(*, run: Run, actor: Any) -> Run:
    """Resume a paused run at the step where it stopped (never from the start): a wait that ended meanwhile
    goes on at once, an event that came meanwhile is taken. It stays held while its journey is paused."""
    authorize(actor=actor, workspace=run.workspace, perm=Perm.JOURNEY_RUNS)
    with transaction.atomic():
        run = _locked_run(run)
        if run.status != Run.Status.PAUSED:
            raise Conflict(f"the run is {run.status}, not paused", field="status")
        run.status, run.resume_status = run.resume_status or Run.Status.ACTIVE, ""
        run.held = run.journey.status != Journey.Status.ACTIVE
        run.updated_at = clock.now()
        run.save(update_fields=["resume_status", "status", "held", "updated_at"])
        due = run.due_at.isoformat() if run.due_at else None
        _history([run], "resumed", actor, {"scope": "run", "due_at": due})
    transaction.on_commit(engine.WAKE.set)
    return run


def run_cancel(*, run: Run, actor: Any) -> Run:
    """End one customer's run; nothing more runs for it. One transaction; in its history with the actor."""
    authorize(actor=actor, workspace=run.workspace, perm=Perm.JOURNEY_RUNS)
    with transaction.atomic():
        run = _locked_run(run)
        if run.status in Run.ENDED:
            raise Conflict(f"the run has already ended ({run.status})", field="status")
        now = clock.now()
        run.status, run.held, run.due_at, run.ended_at, run.updated_at = Run.Status.CANCELLED, False, None, now, now
        run.step_state, run.awaits = "", ""
        run.save(update_fields=["status", "held", "due_at", "ended_at", "updated_at", "step_state", "awaits"])
        _history([run], "cancelled", actor)
    return run


def evaluation_add(*, run: Run, name: Any, value: Any, actor: Any, step: Any = None) -> Evaluation:
    """Attach a score from another system (``csat`` 4, ``nps`` 9, a label) to a run, at the step it is at
    unless ``step`` names one of its version's steps. One transaction."""
    authorize(actor=actor, workspace=run.workspace, perm=Perm.JOURNEY_RUNS)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValidationError("must be a non-empty string of at most 100 characters", field="name")
    if isinstance(value, dict | list) or value is None or (isinstance(value, str) and len(value) > 1000):
        raise ValidationError("must be a number, a boolean or a string of at most 1000 characters", field="value")
    if step is not None and (not isinstance(step, str) or step not in plan_of(run.version).steps):
        raise ValidationError("names no step of the run's version", field="step")
    return Evaluation.objects.create(run=run, journey_id=run.journey_id, step=step or run.step, name=name.strip(),
                                     value=value, actor=actor_label(actor)[:200])


def runs_migrate(*, journey: Journey, from_version: Any, to_version: Any, actor: Any) -> dict[str, Any]:
    """Move the live runs of ``from_version`` to ``to_version``, each at the step with the same id. A run at
    a step the new version lacks (or a waiting run whose step is of another type there) stays, with the
    reason. One transaction, audited; each moved run's history notes it."""
    authorize(actor=actor, workspace=journey.workspace, perm=Perm.JOURNEYS)
    numbers = {}
    for field, value in (("from_version", from_version), ("to_version", to_version)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError("must be a version number", field=field)
        numbers[field] = value
    if numbers["from_version"] == numbers["to_version"]:
        raise ValidationError("must differ from from_version", field="to_version")
    versions = {v.number: v for v in JourneyVersion.objects.filter(journey=journey, number__in=numbers.values())}
    for field, number in numbers.items():
        if number not in versions:
            raise NotFound(f"the journey has no version {number}", field=field)
    source, target = versions[numbers["from_version"]], versions[numbers["to_version"]]
    plan = plan_of(target)
    moved: list[Run] = []
    refused: list[dict[str, Any]] = []
    with transaction.atomic():
        runs = list(Run.objects.select_for_update(of=("self",)).filter(version=source)
                    .exclude(status__in=Run.ENDED).select_related("version").order_by("pk"))
        for run in runs:
            new = plan.steps.get(run.step)
            old = plan_of(source).steps.get(run.step)
            if new is None:
                refused.append({"run_id": run.pk, "step": run.step,
                                "reason": f"version {target.number} has no step {run.step!r}"})
            elif run.step_state == engine.WAITING and old is not None and new.type != old.type:
                refused.append({"run_id": run.pk, "step": run.step,
                                "reason": f"step {run.step!r} is a {new.type} in version {target.number}, "
                                          f"not a {old.type}"})
            elif Run.objects.filter(version=target, customer_id=run.customer_id, entry_key=run.entry_key).exists():
                refused.append({"run_id": run.pk, "step": run.step,
                                "reason": "the customer already has a run on that version with this entry key"})
            else:
                moved.append(run)
        Run.objects.filter(pk__in=[r.pk for r in moved]).update(version=target)
        for run in moved:
            run.version = target
            new = plan.steps[run.step]
            if run.step_state == engine.WAITING and new.type == "wait_for_event":
                # What the run awaits is the new version's (its filter is read from the version it is on).
                Run.objects.filter(pk=run.pk).update(awaits=new.raw["event"])
        _history(moved, "migrated", actor, {"from_version": source.number, "to_version": target.number})
        audit_record(workspace=journey.workspace, actor=actor, action="journey.migrate", target=journey.key,
                     data={"from_version": source.number, "to_version": target.number, "moved": len(moved),
                           "refused": len(refused)})
    return {"moved": len(moved), "refused": refused}

