"""The console's broadcasts: the list with each one's progress, a form for a new one (a communication and
a CSV, a list of user ids or a segment), and one broadcast's summary with its pause, resume and cancel buttons."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from tsunagu.console.views import _page, workspace_page
from tsunagu.console.views_messaging import can, channel_label
from tsunagu.core import clock
from tsunagu.core.errors import NotFound, TsunaguError
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.messaging.broadcasts import (
    PERM,
    broadcast_cancel,
    broadcast_create,
    broadcast_get,
    broadcast_list,
    broadcast_pause,
    broadcast_resume,
    broadcast_summary,
)
from tsunagu.messaging.selectors import communication_list
from tsunagu.segments.selectors import segment_list

STATUS_LABELS = {
    "scheduled": gettext_lazy("Scheduled"),
    "running": gettext_lazy("Running"),
    "paused": gettext_lazy("Paused"),
    "cancelled": gettext_lazy("Cancelled"),
    "done": gettext_lazy("Done"),
}
# The skip reasons of docs/failover.md, and the two of broadcasts (recipients that became no send).
REASON_LABELS = {
    "no_address": gettext_lazy("No address"),
    "no_consent": gettext_lazy("No consent"),
    "unsubscribed": gettext_lazy("Unsubscribed"),
    "suppressed": gettext_lazy("Suppressed"),
    "capped": gettext_lazy("Frequency cap"),
    "quiet_hours": gettext_lazy("Quiet hours"),
    "holiday": gettext_lazy("Holiday"),
    "unknown_recipient": gettext_lazy("Not a known customer"),
    "duplicate": gettext_lazy("Listed twice"),
}
ACTIONS = {"pause": broadcast_pause, "resume": broadcast_resume, "cancel": broadcast_cancel}


def _row(b: Any) -> dict[str, Any]:
    pct = round(100 * b.cursor / b.total, 1) if b.total else 100.0
    return {"b": b, "status": str(STATUS_LABELS.get(b.status, b.status)), "pct": pct}


def _audience(kind: str, text: str, segment: str) -> dict[str, Any]:
    if kind == "segment":
        return {"segment": segment}
    if kind == "user_ids":
        return {"user_ids": [line.strip() for line in text.splitlines() if line.strip()]}
    return {"csv": text}


@workspace_page
@require_http_methods(["GET", "POST"])
def broadcasts(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The workspace's broadcasts, newest first, and (for operators and up) the form for a new one."""
    can_run = can(request, workspace, PERM)
    form = {"communication": "", "kind": "csv", "audience": "", "name": "", "segment": ""}
    error, error_field, status = "", "", 200
    if request.method == "POST":
        if not can_run:
            raise PermissionDenied
        form = {k: request.POST.get(k, "").strip() if k != "audience" else request.POST.get(k, "") for k in form}
        try:
            b = broadcast_create(
                workspace=workspace, communication=form["communication"], name=form["name"],
                audience=_audience(form["kind"], form["audience"], form["segment"]), actor=request.user,
            )
        except ServicePermissionDenied as exc:
            raise PermissionDenied(exc.message) from exc
        except TsunaguError as exc:
            error, error_field, status = exc.message, exc.field or "", 400
        else:
            messages.success(request, _("The broadcast is scheduled: a worker sends it now."))
            return redirect("console:broadcast", slug=workspace.slug, broadcast_id=b.pk)
    response = _page(
        request, workspace, "broadcasts/list.html", "messaging", sub="broadcasts",
        rows=[_row(b) for b in broadcast_list(workspace=workspace)],
        can_run=can_run, form=form, error=error, error_field=error_field,
        communications=list(communication_list(workspace=workspace)) if can_run else [],
        segments=list(segment_list(workspace=workspace)) if can_run else [],
    )
    response.status_code = status
    return response


@workspace_page
def broadcast(request: HttpRequest, workspace: Any, broadcast_id: int) -> HttpResponse:
    """One broadcast: its progress and what happened to its recipients."""
    try:
        b = broadcast_get(workspace=workspace, broadcast_id=broadcast_id)
    except NotFound as exc:
        from django.http import Http404

        raise Http404(exc.message) from exc
    summary = broadcast_summary(b)
    skipped = [(str(REASON_LABELS.get(k, k)), n) for k, n in summary["skipped"].items()]
    by_channel = [(channel_label(k), n) for k, n in summary["by_channel"].items()]
    return _page(
        request, workspace, "broadcasts/detail.html", "messaging", sub="broadcasts",
        row=_row(b), summary=summary, skipped=skipped, by_channel=by_channel,
        can_run=can(request, workspace, PERM),
        # Refreshed while it moves; not a broadcast scheduled for later (or the buttons would jump).
        live=b.status == "running" or (b.status == "scheduled" and b.send_at <= clock.now()),
    )


@workspace_page
@require_POST
def broadcast_action(request: HttpRequest, workspace: Any, broadcast_id: int, action: str) -> HttpResponse:
    """Pause, resume or cancel (operators and up); an action the broadcast's state refuses is a message."""
    if action not in ACTIONS:
        from django.http import Http404

        raise Http404("no such action")
    try:
        b = broadcast_get(workspace=workspace, broadcast_id=broadcast_id)
        ACTIONS[action](broadcast=b, actor=request.user)
    except NotFound as exc:
        from django.http import Http404

        raise Http404(exc.message) from exc
    except ServicePermissionDenied as exc:
        raise PermissionDenied(exc.message) from exc
    except TsunaguError as exc:
        messages.error(request, exc.message)
    else:
        done = {"pause": _("Paused."), "resume": _("Resumed."), "cancel": _("Cancelled.")}
        messages.success(request, done[action])
    return redirect("console:broadcast", slug=workspace.slug, broadcast_id=broadcast_id)
