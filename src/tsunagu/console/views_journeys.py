"""The console's journeys: the list, and the builder (new and edit draft) that draws the definition as a
flow and validates it live; publish, pause and resume.

The definition is edited as JSON. Every change posts the form to ``journey_validate`` (htmx), which answers
the drawing and the validator's message naming its field, with the step at fault marked red. A POST to the
builder saves the draft (``action=save``) or saves and publishes it (``action=publish``) through the
services, as the signed-in user. Monitoring and runs are in ``views_journey_runs``."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from tsunagu.console.journey_svg import error_step, flow_svg
from tsunagu.console.views import _page, workspace_page
from tsunagu.console.views_messaging import can
from tsunagu.core.errors import NotFound, TsunaguError, ValidationError
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.permissions import Perm
from tsunagu.journeys.selectors import journey_get, journey_list, journey_version
from tsunagu.journeys.selectors_console import journey_figures
from tsunagu.journeys.services import (
    definition_check,
    journey_create,
    journey_pause,
    journey_publish,
    journey_resume,
    journey_update,
)

PERM = Perm.JOURNEYS
STATUS_LABELS = {
    "draft": gettext_lazy("Draft"),
    "active": gettext_lazy("Active"),
    "paused": gettext_lazy("Paused"),
}
# What a new journey starts from: valid as it stands in any workspace (an API entry, a wait, a branch on the
# entry's data), so the first drawing is a flow, not an error.
STARTER: dict[str, Any] = {
    "entry": {"api": True},
    "steps": [
        {"id": "wait_a_day", "type": "wait", "seconds": 86400},
        {"id": "check", "type": "branch", "rule": {"journey": "entry.data.plan", "op": "eq", "value": "gold"},
         "then": "thank", "else": "exit"},
        {"id": "thank", "type": "update_traits", "traits": {"welcomed": True}},
    ],
}
ACTIONS = {"pause": journey_pause, "resume": journey_resume}


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def _journey(workspace: Any, key: str) -> Any:
    try:
        return journey_get(workspace=workspace, key=key)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def journeys_page(request: HttpRequest, workspace: Any, template: str, sub: str, **context: Any) -> HttpResponse:
    context.setdefault("can_edit", can(request, workspace, PERM))
    return _page(request, workspace, f"journeys/{template}", "journeys", sub=sub, **context)


@workspace_page
def journeys(request: HttpRequest, workspace: Any) -> HttpResponse:
    """Every journey: name, key, status, version, entries, customers in progress, conversion."""
    figures = journey_figures(workspace=workspace)
    empty = {"entries": 0, "in_progress": 0, "conversion_rate": 0.0}
    rows = []
    for j in journey_list(workspace=workspace):
        figure = figures.get(j.pk, empty)
        rows.append({"j": j, "status": status_label(j.status), **figure,
                     "conversion_pct": round(100 * figure["conversion_rate"], 1)})
    return journeys_page(request, workspace, "list.html", "journeys", rows=rows)


# -- the builder ---------------------------------------------------------------------------------------------

def _parse(text: str) -> tuple[Any, tuple[str, str] | None]:
    """The posted definition, or a JSON error (its line and column) naming ``definition``."""
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, ("definition", _("The definition is not JSON: %(error)s") % {"error": exc})


def _check(workspace: Any, definition: Any) -> tuple[str, str] | None:
    try:
        definition_check(workspace=workspace, definition=definition)
    except ValidationError as exc:
        return exc.field or "definition", exc.message
    return None


def flow_context(workspace: Any, text: str, *, error: tuple[str, str] | None = None,
                 validate: bool = True) -> dict[str, Any]:
    """The drawing of the definition in ``text`` and its first error (``field``, message), marked on the
    step it names."""
    definition, json_error = _parse(text)
    if json_error is None and validate and error is None:
        error = _check(workspace, definition)
    error = json_error or error
    field = error[0] if error else None
    return {
        "svg": flow_svg(definition, error_field=field, title=_("The journey as a flow")),
        "error": error, "error_step": error_step(field, definition) if field else None,
    }


def _pretty(definition: Any) -> str:
    return json.dumps(definition, ensure_ascii=False, indent=2)


def _render_builder(request: HttpRequest, workspace: Any, journey: Any, form: dict[str, str],
                    error: tuple[str, str] | None = None, status: int = 200) -> HttpResponse:
    can_edit = can(request, workspace, PERM)
    field_error = error if error and not error[0].startswith("definition") else None
    flow = flow_context(workspace, form["definition"], error=None if field_error else error)
    version = journey_version(journey=journey) if journey is not None and journey.current_version else None
    response = journeys_page(
        request, workspace, "builder.html", "builder", journey=journey, form=form, can_edit=can_edit,
        field_error=field_error, status=status_label(journey.status) if journey else "", version=version,
        draft_differs=bool(version and journey.draft != version.definition), **flow,
    )
    response.status_code = status
    return response


def _builder(request: HttpRequest, workspace: Any, journey: Any) -> HttpResponse:
    can_edit = can(request, workspace, PERM)
    if request.method != "POST":
        draft = journey.draft if journey is not None and journey.draft is not None else STARTER
        form = {"key": journey.key if journey else "", "name": journey.name if journey else "",
                "definition": _pretty(draft)}
        return _render_builder(request, workspace, journey, form)
    if not can_edit:
        raise PermissionDenied
    post = request.POST
    form = {"key": post.get("key", "").strip() if journey is None else journey.key,
            "name": post.get("name", "").strip(), "definition": post.get("definition", "")}
    definition, error = _parse(form["definition"])
    if error is not None:
        return _render_builder(request, workspace, journey, form, error, status=400)
    action = post.get("action", "save")
    try:
        if journey is None:
            journey = journey_create(workspace=workspace, key=form["key"], name=form["name"],
                                     definition=definition, actor=request.user)
        else:
            journey = journey_update(journey=journey, definition=definition, name=form["name"], actor=request.user)
        if action == "publish":
            version = journey_publish(journey=journey, actor=request.user)
            messages.success(request, _("Published as version %(n)s.") % {"n": version.number})
        else:
            messages.success(request, _("Draft saved."))
    except ServicePermissionDenied as exc:
        raise PermissionDenied(exc.message) from exc
    except TsunaguError as exc:
        # A journey created before publish failed is kept; its page shows the draft and the error.
        return _render_builder(request, workspace, journey if journey and journey.pk else None, form,
                               (exc.field or "definition", exc.message), status=400)
    return redirect("console:journey", slug=workspace.slug, key=journey.key)


@workspace_page
@require_http_methods(["GET", "POST"])
def journey_new(request: HttpRequest, workspace: Any) -> HttpResponse:
    return _builder(request, workspace, None)


@workspace_page
@require_http_methods(["GET", "POST"])
def journey_edit(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    return _builder(request, workspace, _journey(workspace, key))


@workspace_page
@require_POST
def journey_validate(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The live check (an htmx fragment): the drawing of the posted definition and its error, if any."""
    if not can(request, workspace, PERM):
        raise PermissionDenied
    context = flow_context(workspace, request.POST.get("definition", ""))
    # 200 with the error drawn: htmx swaps 2xx answers only, and a definition being typed is often not one yet.
    return render(request, "console/journeys/_flow.html", {**context, "workspace": workspace})


@workspace_page
@require_POST
def journey_action(request: HttpRequest, workspace: Any, key: str, action: str) -> HttpResponse:
    """Pause or resume the whole journey (operators and up); a state that refuses it is a message."""
    if action not in ACTIONS:
        raise Http404("no such action")
    journey = _journey(workspace, key)
    if not can(request, workspace, PERM):
        raise PermissionDenied
    try:
        ACTIONS[action](journey=journey, actor=request.user)
    except ServicePermissionDenied as exc:
        raise PermissionDenied(exc.message) from exc
    except TsunaguError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Journey paused.") if action == "pause" else _("Journey resumed."))
    return redirect("console:journey", slug=workspace.slug, key=key)
