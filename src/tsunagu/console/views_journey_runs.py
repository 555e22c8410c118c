"""The console's view of a journey at work: monitoring (the funnel per step, conversion, split results,
evaluations; filtered by segment and entry dates), its runs, and one customer's path through it with the
run's pause, resume and cancel buttons (agents and up)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from tsunagu.console.journey_svg import duration, flow_svg, type_label
from tsunagu.console.views import workspace_page
from tsunagu.console.views_journeys import _journey, journeys_page, status_label
from tsunagu.console.views_messaging import can
from tsunagu.core.errors import NotFound, TsunaguError, ValidationError
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.permissions import Perm
from tsunagu.customers.selectors import customer_search
from tsunagu.journeys.selectors import RUN_STATUSES, journey_version, run_evaluations, run_get, run_histories
from tsunagu.journeys.selectors_console import run_awaiting, runs_page
from tsunagu.journeys.services import run_cancel, run_pause, run_resume
from tsunagu.journeys.stats import journey_stats
from tsunagu.segments.selectors import segment_get, segment_list

RUN_PERM = Perm.JOURNEY_RUNS
RUNS_PER_PAGE = 50
RUN_STATUS_LABELS = {
    "active": gettext_lazy("Active"),
    "waiting": gettext_lazy("Waiting"),
    "paused": gettext_lazy("Paused"),
    "completed": gettext_lazy("Completed"),
    "exited": gettext_lazy("Exited"),
    "cancelled": gettext_lazy("Cancelled"),
    "failed": gettext_lazy("Failed"),
}
# The actions of a run's history (journeys.engine, reactions, services).
ACTION_LABELS = {
    "entered": gettext_lazy("Entered"),
    "step": gettext_lazy("Step executed"),
    "wait": gettext_lazy("Waiting"),
    "done": gettext_lazy("Wait over"),
    "event": gettext_lazy("Awaited event came"),
    "goal": gettext_lazy("Goal reached"),
    "paused": gettext_lazy("Pause"),
    "resumed": gettext_lazy("Resume"),
    "cancelled": gettext_lazy("Cancelled"),
    "migrated": gettext_lazy("Moved to another version"),
    "completed": gettext_lazy("Completed"),
    "exited": gettext_lazy("Exited"),
    "failed": gettext_lazy("Failed"),
    "notified": gettext_lazy("Notified"),
    "response": gettext_lazy("Webhook answered"),
    "merged": gettext_lazy("Followed a merged profile"),
}
RUN_ACTIONS = {"pause": run_pause, "resume": run_resume, "cancel": run_cancel}


def run_status_label(status: str) -> str:
    return str(RUN_STATUS_LABELS.get(status, status))


def _date(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(_("must be a date as YYYY-MM-DD"), field=field) from None


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


@workspace_page
def journey_monitor(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """The journey's figures, over the runs entered between ``since`` and ``until`` of ``segment``'s
    members (each optional). A filter that is not one answers 400 naming it, with the form kept."""
    journey = _journey(workspace, key)
    filters = {k: request.GET.get(k, "").strip() for k in ("segment", "since", "until")}
    error, status = None, 200
    try:
        since, until = _date(filters["since"], "since"), _date(filters["until"], "until")
        if since and until and since > until:
            raise ValidationError(_("must not be after until"), field="since")
        segment = None
        if filters["segment"]:
            try:
                segment = segment_get(workspace=workspace, key=filters["segment"])
            except NotFound as exc:
                raise ValidationError(exc.message, field="segment") from None
        stats = journey_stats(journey=journey, segment=segment, since=since, until=until)
    except ValidationError as exc:
        error, status = (exc.field or "", exc.message), 400
        stats = journey_stats(journey=journey)
    top = max([stats["entries"]] + [s["reached"] for s in stats["steps"]])
    funnel = [{
        **s, "label": type_label(s["type"] or ""),
        "reached_pct": _pct(s["reached"], top), "completed_pct": _pct(s["completed"], top),
        "now_pct": _pct(s["now"], top), "dropoff_pct": round(100 * s["dropoff_rate"], 1),
        "median": duration(s["median_seconds"]) if s["median_seconds"] is not None else "—",
        "p90": duration(s["p90_seconds"]) if s["p90_seconds"] is not None else "—",
    } for s in stats["steps"]]
    splits = [{"step": sp["step"], "paths": [{
        **p, "rate_pct": round(100 * p["conversion_rate"], 1),
        "low": round(100 * p["ci95"][0], 1), "high": round(100 * p["ci95"][1], 1)} for p in sp["paths"]]}
        for sp in stats["splits"]]
    version = journey_version(journey=journey)
    notes = {s["id"]: str(s["now"]) for s in stats["steps"] if s["now"]}
    response = journeys_page(
        request, workspace, "monitor.html", "monitor", journey=journey, stats=stats, funnel=funnel,
        splits=splits, filters=filters, error=error, segments=list(segment_list(workspace=workspace)),
        status=status_label(journey.status),
        conversion_pct=round(100 * stats["conversion_rate"], 1),
        ci_low=round(100 * stats["conversion_ci95"][0], 1), ci_high=round(100 * stats["conversion_ci95"][1], 1),
        svg=flow_svg(version.definition, notes=notes, title=_("The journey as a flow")) if version else "",
    )
    response.status_code = status
    return response


def _customer_ids(workspace: Any, q: str) -> list[int] | None:
    """The customers the runs' search names: an id, or whatever the customer search finds (name, kana,
    email, phone, userId); None when there is no search."""
    if not q:
        return None
    if q.isdigit():
        return [int(q)]
    return list(customer_search(workspace=workspace, q=q).values_list("pk", flat=True)[:500])


@workspace_page
def journey_runs(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """The journey's runs, the newest first, by status and customer (50 a page)."""
    journey = _journey(workspace, key)
    filters = {k: request.GET.get(k, "").strip() for k in ("status", "customer")}
    try:
        before = int(request.GET["before"]) if request.GET.get("before") else None
    except ValueError:
        before = None
    error, status, rows = None, 200, []
    try:
        rows = runs_page(journey=journey, status=filters["status"] or None, before=before,
                         customer_ids=_customer_ids(workspace, filters["customer"]), limit=RUNS_PER_PAGE + 1)
    except ValidationError as exc:
        error, status = (exc.field or "", exc.message), 400
    more = len(rows) > RUNS_PER_PAGE
    rows = rows[:RUNS_PER_PAGE]
    response = journeys_page(
        request, workspace, "runs.html", "runs", journey=journey, filters=filters, error=error,
        rows=[{"r": r, "status": run_status_label(r.status)} for r in rows],
        statuses=[(s, run_status_label(s)) for s in RUN_STATUSES], status=status_label(journey.status),
        next_before=rows[-1].pk if more and rows else None,
    )
    response.status_code = status
    return response


def _run(workspace: Any, key: str, run_id: int) -> Any:
    try:
        run = run_get(workspace=workspace, run_id=run_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    if run.journey.key != key:
        raise Http404("the run is of another journey")
    return run


def _why(run: Any, awaiting: dict[str, Any] | None, history: list[Any]) -> list[str]:
    """Where the run is and why, in sentences: the status's reason, what it awaits, when it is due."""
    reasons = []
    if run.status == "paused":
        by = next((h.actor for h in reversed(history) if h.action == "paused"), "")
        reasons.append(_("Paused by %(actor)s: no step runs until it is resumed.") % {"actor": by or "—"}
                       if by else _("Paused: no step runs until it is resumed."))
    elif run.held:
        reasons.append(_("The journey is paused: the run goes on when the journey is resumed."))
    if awaiting is not None:
        reasons.append(_("Awaits the event “%(event)s” at step %(step)s.") % awaiting)
    if run.status == "active" and run.step_state == "":
        reasons.append(_("The step %(step)s is next; a worker runs it when it is due.") % {"step": run.step})
    if run.status in ("completed", "exited", "cancelled", "failed"):
        last = history[-1] if history else None
        reason = (last.outcome or {}).get("reason") if last is not None and isinstance(last.outcome, dict) else None
        reasons.append(_("Ended (%(status)s) at step %(step)s.") % {"status": run_status_label(run.status),
                                                                     "step": run.step}
                       + (f" {reason}" if reason else ""))
    return reasons


@workspace_page
def journey_run(request: HttpRequest, workspace: Any, key: str, run_id: int) -> HttpResponse:
    """One customer's path: where the run is now and why, every step it took, evaluations and context."""
    run = _run(workspace, key, run_id)
    history = run_histories(runs=[run])[run.pk]
    awaiting = run_awaiting(run=run)
    return journeys_page(
        request, workspace, "run.html", "runs", journey=run.journey, run=run, status=status_label(run.journey.status),
        run_status=run_status_label(run.status), awaiting=awaiting, why=_why(run, awaiting, history),
        history=[{"h": h, "action": str(ACTION_LABELS.get(h.action, h.action)),
                  "outcome": json.dumps(h.outcome, ensure_ascii=False) if h.outcome is not None else ""}
                 for h in history],
        evaluations=run_evaluations(run=run), context_json=json.dumps(run.context, ensure_ascii=False, indent=2),
        can_run=can(request, workspace, RUN_PERM),
        can_pause=run.status in ("active", "waiting"), can_resume=run.status == "paused",
        can_cancel=run.status in ("active", "waiting", "paused"),
        svg=flow_svg(run.version.definition, current=run.step, title=_("The journey as a flow")),
    )


@workspace_page
@require_POST
def journey_run_action(request: HttpRequest, workspace: Any, key: str, run_id: int, action: str) -> HttpResponse:
    """Pause, resume or cancel one run (agents and up); a state that refuses it is a message."""
    if action not in RUN_ACTIONS:
        raise Http404("no such action")
    run = _run(workspace, key, run_id)
    if not can(request, workspace, RUN_PERM):
        raise PermissionDenied
    try:
        RUN_ACTIONS[action](run=run, actor=request.user)
    except ServicePermissionDenied as exc:
        raise PermissionDenied(exc.message) from exc
    except TsunaguError as exc:
        messages.error(request, exc.message)
    else:
        done = {"pause": _("Run paused."), "resume": _("Run resumed."), "cancel": _("Run cancelled.")}
        messages.success(request, done[action])
    return redirect("console:journey_run", slug=workspace.slug, key=key, run_id=run_id)
