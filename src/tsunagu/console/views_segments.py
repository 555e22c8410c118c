"""The console's segments: the list, the builder (new and edit) with its live count, and one segment's page —
count, members, history, the rule in words, delete.

The builder's form is ``rule_form``'s. A POST to the builder either saves (``action=save``) or applies one of
the editor's buttons and draws the page again (the editor alone for htmx); ``segment_preview`` answers the
live count, a sample of members, the rule's errors and warnings for the form as it stands."""

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

from tsunagu.console import rule_form
from tsunagu.console.views import _page, workspace_page
from tsunagu.console.views_messaging import can
from tsunagu.core.errors import NotFound, TsunaguError, ValidationError
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.permissions import Perm
from tsunagu.customers.selectors import customer_get
from tsunagu.segments.rule import rule_parse
from tsunagu.segments.selectors import (
    catalog,
    customer_computed,
    customer_segments,
    event_names,
    rule_count,
    rule_sample,
    rule_warnings,
    segment_get,
    segment_history,
    segment_list,
    segment_members,
    trait_names,
)
from tsunagu.segments.services import segment_create, segment_delete, segment_update

PERM = Perm.SEGMENTS
MEMBERS_PER_PAGE = 50
SAMPLE = 8
DEFAULT_RULE: dict[str, Any] = {"all": [{"trait": "", "op": "eq"}]}
REASON_LABELS = {
    "event": gettext_lazy("an event"),
    "refresh": gettext_lazy("the scheduled refresh"),
    "created": gettext_lazy("the segment was created"),
    "edited": gettext_lazy("the rule was edited"),
    "merge": gettext_lazy("profiles were merged"),
    "consent": gettext_lazy("a consent decision"),
}


def _segment(workspace: Any, key: str) -> Any:
    try:
        return segment_get(workspace=workspace, key=key)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def segments_page(request: HttpRequest, workspace: Any, template: str, sub: str, **context: Any) -> HttpResponse:
    return _page(request, workspace, f"segments/{template}", "segments", sub=sub, **context)


@workspace_page
def segments(request: HttpRequest, workspace: Any) -> HttpResponse:
    """Every segment: name, key, members now, whether time alone moves it, when it was last evaluated."""
    return segments_page(request, workspace, "list.html", "segments", rows=list(segment_list(workspace=workspace)),
                         can_edit=can(request, workspace, PERM))


# -- the builder ---------------------------------------------------------------------------------------------

def _posted_rule(post: Any) -> tuple[Any, tuple[str, str] | None]:
    """The rule the form holds, from the editor's fields or the JSON tab, with a JSON error if the tab's text
    is not JSON."""
    if post.get("mode") == "json":
        text = post.get("rule_json", "")
        try:
            return json.loads(text), None
        except ValueError as exc:
            return text, ("$", _("The rule is not JSON: %(error)s") % {"error": exc})
    rule = rule_form.node_from_form(post)
    for retype in rule_form.retypes(post):  # a kind select changed since the editor was drawn
        rule = rule_form.apply_action(rule, retype)
    return rule, None


def _builder_context(workspace: Any, rule: Any, *, mode: str, error: tuple[str, str] | None,
                     form: dict[str, str], segment: Any = None, can_edit: bool) -> dict[str, Any]:
    rule_error = error if error and error[0].startswith("$") else None
    tree, values = rule_form.editor(rule if mode == "structured" else {}, rule_error if mode == "structured" else None)
    return {
        "tree": tree, "values": values, "mode": mode, "form": form, "segment": segment, "can_edit": can_edit,
        "rule_json": rule if isinstance(rule, str) else json.dumps(rule, ensure_ascii=False, indent=2),
        "error": error, "rule_error": rule_error,
        "field_error": error if error and not error[0].startswith("$") else None,
        "choices": rule_form.choices(),
        "known": {
            "traits": trait_names(workspace=workspace, sample=500)[:200],
            "events": event_names(workspace=workspace, limit=200),
            "computed": sorted(catalog(workspace).computed)[:200],
            "segments": [s.key for s in segment_list(workspace=workspace) if segment is None or s.pk != segment.pk],
        },
    }


def _builder(request: HttpRequest, workspace: Any, segment: Any) -> HttpResponse:
    can_edit = can(request, workspace, PERM)
    post = request.POST
    if request.method == "POST" and not can_edit:
        raise PermissionDenied
    if request.method != "POST":
        rule = segment.rule if segment is not None else DEFAULT_RULE
        mode = "structured" if rule_form.representable(rule) else "json"
        form = {"key": segment.key if segment else "", "name": segment.name if segment else "",
                "description": segment.description if segment else ""}
        return _render_builder(request, workspace, segment, rule, mode, None, form, can_edit)
    form = {k: post.get(k, "").strip() for k in ("key", "name", "description")}
    mode = "json" if post.get("mode") == "json" else "structured"
    rule, error = _posted_rule(post)
    action = post.get("action", "")
    status = 200
    if action == "mode:json" and mode == "structured":
        mode = "json"
    elif action == "mode:structured" and mode == "json":
        if error is None and rule_form.representable(rule):
            mode = "structured"
        elif error is None:
            error = ("$", _("The builder cannot show this rule as it is; edit it here."))
    elif action == "save" and error is None:
        try:
            if segment is None:
                saved, warnings = segment_create(workspace=workspace, key=form["key"], name=form["name"],
                                                 description=form["description"], rule=rule, actor=request.user)
            else:
                saved, warnings = segment_update(segment=segment, name=form["name"], description=form["description"],
                                                 rule=rule, actor=request.user)
        except ServicePermissionDenied as exc:
            raise PermissionDenied(exc.message) from exc
        except TsunaguError as exc:
            error, status = (exc.field or "", exc.message), 400
        else:
            messages.success(request, _("Saved: %(n)s members.") % {"n": saved.member_count})
            for w in warnings:
                messages.warning(request, _warning_text(w))
            return redirect("console:segment", slug=workspace.slug, key=saved.key)
    elif action and mode == "structured":
        rule = rule_form.apply_action(rule, action)
    elif action == "save":
        status = 400
    return _render_builder(request, workspace, segment, rule, mode, error, form, can_edit, status=status)


def _render_builder(request: HttpRequest, workspace: Any, segment: Any, rule: Any, mode: str,
                    error: tuple[str, str] | None, form: dict[str, str], can_edit: bool,
                    status: int = 200) -> HttpResponse:
    context = _builder_context(workspace, rule, mode=mode, error=error, form=form, segment=segment,
                               can_edit=can_edit)
    context["builder_url"] = request.path
    if getattr(request, "htmx", False) and request.method == "POST":
        response = render(request, "console/segments/_editor.html", {**context, "workspace": workspace})
    else:
        response = segments_page(request, workspace, "builder.html", "segments", **context)
    response.status_code = status
    return response


@workspace_page
@require_http_methods(["GET", "POST"])
def segment_new(request: HttpRequest, workspace: Any) -> HttpResponse:
    return _builder(request, workspace, None)


@workspace_page
@require_http_methods(["GET", "POST"])
def segment_edit(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    return _builder(request, workspace, _segment(workspace, key))


WARNING_KINDS = {
    "trait": gettext_lazy("trait"),
    "event": gettext_lazy("event"),
    "computed trait": gettext_lazy("computed trait"),
    "segment": gettext_lazy("segment"),
}


def _warning_text(w: dict[str, Any]) -> str:
    kind = str(WARNING_KINDS.get(w["kind"], w["kind"]))
    text = _("Unknown %(kind)s “%(name)s”.") % {"kind": kind, "name": w["name"]}
    if w.get("suggestions"):
        text += " " + _("Did you mean: %(names)s?") % {"names": ", ".join(w["suggestions"])}
    return text


@workspace_page
@require_POST
def segment_preview(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The live count (an htmx fragment): how many customers the form's rule matches now, a few of them, and
    the rule's error (with its node path) or warnings (with the closest known names)."""
    if not can(request, workspace, PERM):
        raise PermissionDenied
    rule, error = _posted_rule(request.POST)
    context: dict[str, Any] = {"workspace": workspace, "error": error, "warnings": [], "count": None, "sample": []}
    if error is None:
        try:
            parsed = rule_parse(rule)
            context["count"] = rule_count(workspace=workspace, rule=parsed)
            context["sample"] = rule_sample(workspace=workspace, rule=parsed, limit=SAMPLE)
            context["warnings"] = [{**w, "text": _warning_text(w)} for w in rule_warnings(workspace=workspace,
                                                                                          parsed=parsed)]
        except ValidationError as exc:
            context["error"] = (exc.field or "$", exc.message)
    context["rule_json"] = json.dumps(rule, ensure_ascii=False, indent=2) if not isinstance(rule, str) else rule
    # 200 with the error drawn: htmx swaps in 2xx answers only, and a rule being typed is often not one yet.
    return render(request, "console/segments/_preview.html", context)


# -- one segment ---------------------------------------------------------------------------------------------

@workspace_page
def segment(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """A segment: members now (by customer id, 50 a page), the latest entries and exits, the rule in words."""
    seg = _segment(workspace, key)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        after = 0
    rows = segment_members(segment=seg, after=after, limit=MEMBERS_PER_PAGE + 1)
    more = len(rows) > MEMBERS_PER_PAGE
    rows = rows[:MEMBERS_PER_PAGE]
    people = {cid: customer_get(workspace=workspace, customer_id=cid) for cid, _at in rows}
    history = [{"c": ch, "reason": str(REASON_LABELS.get(ch.reason, ch.reason))}
               for ch in segment_history(segment=seg, limit=50)]
    persona = getattr(seg, "persona", None)  # the reverse one-to-one raises AttributeError when there is none
    return segments_page(
        request, workspace, "detail.html", "segments", segment=seg, can_edit=can(request, workspace, PERM),
        members=[{"id": cid, "at": at, "c": people.get(cid)} for cid, at in rows],
        after=after, next_after=rows[-1][0] if more and rows else None,
        history=history, words=rule_form.describe(seg.rule),
        rule_json=json.dumps(seg.rule, ensure_ascii=False, indent=2), persona=persona,
    )


@workspace_page
@require_POST
def segment_remove(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """Delete (editors); refused with the service's message while another segment's rule uses it."""
    seg = _segment(workspace, key)
    try:
        segment_delete(segment=seg, actor=request.user)
    except ServicePermissionDenied as exc:
        raise PermissionDenied(exc.message) from exc
    except TsunaguError as exc:
        messages.error(request, _("Not deleted: %(reason)s") % {"reason": exc.message})
        return redirect("console:segment", slug=workspace.slug, key=key)
    messages.success(request, _("Segment “%(name)s” deleted.") % {"name": seg.name})
    return redirect("console:segments", slug=workspace.slug)


def customer_context(profile: Any) -> dict[str, Any]:
    """What the 360° page shows of segments: the customer's segments now, their entries and exits, and the
    computed traits' values."""
    return {
        "in_segments": customer_segments(customer=profile),
        "segment_changes": [{"c": ch, "reason": str(REASON_LABELS.get(ch.reason, ch.reason))}
                            for ch in segment_history(customer=profile, limit=20)],
        "computed": [(t, v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False))
                     for t, v in customer_computed(customer=profile)],
    }
