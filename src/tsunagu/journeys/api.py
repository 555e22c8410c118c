"""REST endpoints of journeys (docs/api.md, "Journeys"): definitions and versions, a journey's pause and
resume, dry runs and monitoring; runs — entering one customer, listing with their history, one run's pause,
resume and cancel, evaluations — and migrating waiting runs between versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from tsunagu.core.dburl import snapshot_read
from tsunagu.core.errors import NotFound, ValidationError
from tsunagu.core.pagination import check_limit, decode_cursor, encode_cursor
from tsunagu.journeys.dryrun import journey_dry_run
from tsunagu.journeys.schemas import (
    DryRunIn,
    EvaluationIn,
    JourneyIn,
    JourneyList,
    JourneyOut,
    JourneyPut,
    Migrated,
    MigrateIn,
    Published,
    RunIn,
    RunOut,
    RunPage,
    Secret,
)
from tsunagu.journeys.secrets import journey_webhook_secret
from tsunagu.journeys.selectors import (
    journey_get,
    journey_list,
    journey_version,
    journey_versions,
    run_evaluations,
    run_get,
    run_histories,
    runs_list,
)
from tsunagu.journeys.services import (
    definition_check,
    evaluation_add,
    journey_create,
    journey_pause,
    journey_publish,
    journey_resume,
    journey_update,
    run_cancel,
    run_pause,
    run_resume,
    run_start,
    runs_migrate,
)
from tsunagu.journeys.stats import journey_stats

router = Router(tags=["journeys"])


def _ws(request: HttpRequest) -> Any:
    return request.auth  # type: ignore[attr-defined]


def _actor(request: HttpRequest) -> Any:
    return request.api_key  # type: ignore[attr-defined]


def journey_out(journey: Any) -> dict[str, Any]:
    current = journey_version(journey=journey)
    return {"key": journey.key, "name": journey.name, "status": journey.status, "version": journey.current_version,
            "draft": journey.draft, "definition": current.definition if current else None,
            "versions": [{"number": v.number, "published_at": v.published_at, "published_by": v.published_by}
                         for v in journey_versions(journey=journey)],
            "created_at": journey.created_at, "updated_at": journey.updated_at}


def run_out(run: Any, history: list[Any], evaluations: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": run.pk, "journey": run.journey.key, "customer_id": run.customer_id, "status": run.status,
        "step": run.step, "version": run.version.number, "entry_key": run.entry_key, "due_at": run.due_at,
        "entered_at": run.entered_at, "ended_at": run.ended_at, "goal_at": run.goal_at, "context": run.context,
        "history": [{"step": h.step, "action": h.action, "at": h.at, "outcome": h.outcome, "actor": h.actor}
                    for h in history],
        "evaluations": [{"name": e.name, "value": e.value, "step": e.step, "at": e.at, "actor": e.actor}
                        for e in evaluations or []],
    }


def _one(run: Any) -> dict[str, Any]:
    # The run, its history and evaluations from one snapshot: read apart, a step committed in between
    # would show the run still waiting beside the history of its end.
    with snapshot_read():
        run = run_get(workspace=run.workspace, run_id=run.pk)
        return run_out(run, run_histories(runs=[run])[run.pk], run_evaluations(run=run))


@router.post("/journeys", response={201: JourneyOut}, summary="Create a journey; its definition is the draft")
def create_journey(request: HttpRequest, payload: JourneyIn) -> Status[Any]:
    journey = journey_create(workspace=_ws(request), key=payload.key, name=payload.name,
                             definition=payload.definition, actor=_actor(request))
    return Status(201, journey_out(journey))


@router.get("/journeys", response=JourneyList, summary="The workspace's journeys")
def list_journeys(request: HttpRequest) -> dict[str, Any]:
    return {"items": [{"key": j.key, "name": j.name, "status": j.status, "version": j.current_version,
                       "updated_at": j.updated_at} for j in journey_list(workspace=_ws(request))]}


@router.get("/journeys/{key}", response=JourneyOut, summary="One journey: its draft, versions and status")
def get_journey(request: HttpRequest, key: str) -> dict[str, Any]:
    return journey_out(journey_get(workspace=_ws(request), key=key))


@router.put("/journeys/{key}", response=JourneyOut, summary="Replace the draft (published versions stay)")
def put_journey(request: HttpRequest, key: str, payload: JourneyPut) -> dict[str, Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    return journey_out(journey_update(journey=journey, definition=payload.definition, name=payload.name,
                                      actor=_actor(request)))


@router.post("/journeys/{key}/publish", response=Published, summary="Publish the draft as the next version")
def publish_journey(request: HttpRequest, key: str) -> dict[str, Any]:
    version = journey_publish(journey=journey_get(workspace=_ws(request), key=key), actor=_actor(request))
    return {"version": version.number}


@router.post("/journeys/{key}/pause", response=JourneyOut, summary="Pause the journey: no step of any run runs")
def pause_journey(request: HttpRequest, key: str) -> dict[str, Any]:
    return journey_out(journey_pause(journey=journey_get(workspace=_ws(request), key=key), actor=_actor(request)))


@router.post("/journeys/{key}/resume", response=JourneyOut, summary="Resume the journey where every run stopped")
def resume_journey(request: HttpRequest, key: str) -> dict[str, Any]:
    return journey_out(journey_resume(journey=journey_get(workspace=_ws(request), key=key), actor=_actor(request)))


@router.post("/journeys/{key}/dry-run", response=dict[str, Any],
             summary="Play the draft against the last N days of events: nothing written, nothing sent")
def dry_run(request: HttpRequest, key: str, payload: DryRunIn) -> dict[str, Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    definition = payload.definition if payload.definition is not None else journey.draft
    plan = definition_check(workspace=journey.workspace, definition=definition)
    return journey_dry_run(journey=journey, plan=plan, days=payload.days)


def _date(value: str | None, field: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value).date()
    except ValueError:
        raise ValidationError("must be a date (YYYY-MM-DD) or an ISO time", field=field) from None


@router.get("/journeys/{key}/stats", response=dict[str, Any],
            summary="Entries, customers at each step, completions, drop-off, timings, conversion, split results")
def stats(request: HttpRequest, key: str, segment: str | None = None, since: str | None = None,
          until: str | None = None) -> dict[str, Any]:
    from tsunagu.segments.selectors import segment_get

    journey = journey_get(workspace=_ws(request), key=key)
    try:
        seg = segment_get(workspace=journey.workspace, key=segment) if segment else None
    except NotFound as exc:  # the query parameter at fault is ``segment``, not the journey's ``key``
        raise NotFound(exc.message, field="segment") from None
    return journey_stats(journey=journey, segment=seg, since=_date(since, "since"), until=_date(until, "until"))


@router.post("/journeys/{key}/runs", response={201: RunOut}, summary="Enter one customer (API entry)")
def start_run(request: HttpRequest, key: str, payload: RunIn) -> Status[Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    run = run_start(journey=journey, customer_id=payload.customer_id, user_id=payload.user_id, data=payload.data,
                    actor=_actor(request))
    return Status(201, _one(run_get(workspace=journey.workspace, run_id=run.pk)))


@router.get("/journeys/{key}/runs", response=RunPage, summary="The journey's runs with their history")
def list_runs(request: HttpRequest, key: str, customer_id: int | None = None, status: str | None = None,
              limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    check_limit(limit)
    after = 0
    if cursor:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise ValidationError("cursor is not valid", field="cursor")
    runs = runs_list(journey=journey, customer_id=customer_id, status=status, after=after, limit=limit + 1)
    page = runs[:limit]
    for run in page:
        run.journey = journey
    histories = run_histories(runs=page)
    return {"items": [run_out(r, histories[r.pk]) for r in page],
            "next": encode_cursor([page[-1].pk]) if len(runs) > limit else None}


@router.get("/journey-runs/{run_id}", response=RunOut, summary="One run: where it is, its path and evaluations")
def get_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    return _one(run_get(workspace=_ws(request), run_id=run_id))


@router.post("/journey-runs/{run_id}/pause", response=RunOut, summary="Pause one customer's run where it is")
def pause_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    run = run_pause(run=run_get(workspace=_ws(request), run_id=run_id), actor=_actor(request))
    return _one(run_get(workspace=_ws(request), run_id=run.pk))


@router.post("/journey-runs/{run_id}/resume", response=RunOut, summary="Resume a run at the step where it stopped")
def resume_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    run = run_resume(run=run_get(workspace=_ws(request), run_id=run_id), actor=_actor(request))
    return _one(run_get(workspace=_ws(request), run_id=run.pk))


@router.post("/journey-runs/{run_id}/cancel", response=RunOut, summary="Cancel one customer's run")
def cancel_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    run = run_cancel(run=run_get(workspace=_ws(request), run_id=run_id), actor=_actor(request))
    return _one(run_get(workspace=_ws(request), run_id=run.pk))


@router.post("/journey-runs/{run_id}/evaluations", response={201: RunOut},
             summary="Attach an evaluation from another system (CSAT, NPS) to a run")
def add_evaluation(request: HttpRequest, run_id: int, payload: EvaluationIn) -> Status[Any]:
    run = run_get(workspace=_ws(request), run_id=run_id)
    evaluation_add(run=run, name=payload.name, value=payload.value, step=payload.step, actor=_actor(request))
    return Status(201, _one(run))


@router.post("/journeys/{key}/migrate", response=Migrated,
             summary="Move waiting runs to another version by step id (refused, with the reason, where it lacks it)")
def migrate(request: HttpRequest, key: str, payload: MigrateIn) -> dict[str, Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    return runs_migrate(journey=journey, from_version=payload.from_version, to_version=payload.to_version,
                        actor=_actor(request))


@router.post("/journeys/{key}/webhook/rotate", response=Secret,
             summary="Rotate the secret that signs the journey's webhook and notify steps")
def rotate_secret(request: HttpRequest, key: str) -> dict[str, Any]:
    journey = journey_get(workspace=_ws(request), key=key)
    return {"secret": journey_webhook_secret(journey=journey, actor=_actor(request), rotate=True)}
