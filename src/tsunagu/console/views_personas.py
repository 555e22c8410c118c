"""The console's personas: cards with their pictures, one persona with its live figures, and the form that
describes a segment as a persona (a picture uploaded as a file)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from tsunagu.console.labels import channel_label
from tsunagu.console.views import workspace_page
from tsunagu.console.views_messaging import can
from tsunagu.console.views_segments import PERM, _segment, segments_page
from tsunagu.core.errors import NotFound, TsunaguError, ValidationError
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.segments.personas import MAX_PICTURE, persona_save, picture_from_upload
from tsunagu.segments.selectors_personas import (
    persona_get,
    persona_list,
    persona_share,
    persona_size,
    persona_stats,
    segments_without_persona,
)

CHANNEL_CHOICES = ("email", "line", "sms", "webpush", "in_app", "web", "app", "store", "call_center", "social")


def _persona(workspace: Any, key: str) -> Any:
    try:
        return persona_get(workspace=workspace, key=key)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@workspace_page
def personas(request: HttpRequest, workspace: Any) -> HttpResponse:
    """Every persona as a card: picture, name, size and share of customers."""
    if request.GET.get("segment"):  # the "describe a segment" picker
        return redirect("console:persona_edit", slug=workspace.slug, key=request.GET["segment"])
    cards = []
    for p in persona_list(workspace=workspace):
        size = persona_size(segment=p.segment)
        cards.append({"p": p, "size": size, "share": round(100 * persona_share(segment=p.segment, size=size), 1)})
    can_edit = can(request, workspace, PERM)
    return segments_page(request, workspace, "personas.html", "personas", cards=cards, can_edit=can_edit,
                         free=list(segments_without_persona(workspace=workspace)) if can_edit else [])


@workspace_page
def persona(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """A persona: who they are, and live — size, share, average spend, top channels, the 30 days' trend."""
    p = _persona(workspace, key)
    stats = persona_stats(persona=p, tz=timezone.get_current_timezone())
    top = max((n for _d, n in stats["trend"]), default=0)
    trend = [{"day": d, "n": n, "pct": round(100 * n / top, 1) if top else 0} for d, n in stats["trend"]]
    channels_top = max((n for _c, n in stats["top_channels"]), default=0)
    channels = [{"key": c, "label": channel_label(c), "count": n, "pct": round(100 * n / channels_top, 1)}
                for c, n in stats["top_channels"]]
    return segments_page(
        request, workspace, "persona.html", "personas", p=p, stats=stats, share=round(100 * stats["share"], 1),
        trend=trend, channels=channels, preferred=[(c, channel_label(c)) for c in p.preferred_channels],
        can_edit=can(request, workspace, PERM),
    )


@workspace_page
@require_http_methods(["GET", "POST"])
def persona_edit(request: HttpRequest, workspace: Any, key: str) -> HttpResponse:
    """Create or change the persona of segment ``key``: text fields, preferred channels, a picture file."""
    seg = _segment(workspace, key)
    can_edit = can(request, workspace, PERM)
    if not can_edit:
        raise PermissionDenied
    current = getattr(seg, "persona", None)
    form: dict[str, Any] = {
        "description": current.description if current else "",
        "goals": "\n".join(current.goals) if current else "",
        "pain_points": "\n".join(current.pain_points) if current else "",
        "preferred_channels": list(current.preferred_channels) if current else [],
    }
    error: tuple[str, str] | None = None
    status = 200
    if request.method == "POST":
        post = request.POST
        form = {"description": post.get("description", ""), "goals": post.get("goals", ""),
                "pain_points": post.get("pain_points", ""), "preferred_channels": post.getlist("preferred_channels")}
        try:
            picture = None
            upload = request.FILES.get("picture")
            if post.get("remove_picture"):
                picture = ""
            elif upload is not None:
                if upload.size is not None and upload.size > MAX_PICTURE:
                    raise ValidationError("picture: at most 512 KB", field="picture")
                picture = picture_from_upload(upload.read(), upload.content_type or "")
            persona_save(segment=seg, actor=request.user, description=form["description"], goals=form["goals"],
                         pain_points=form["pain_points"], preferred_channels=form["preferred_channels"],
                         picture=picture)
        except ServicePermissionDenied as exc:
            raise PermissionDenied(exc.message) from exc
        except TsunaguError as exc:
            error, status = (exc.field or "", exc.message), 400
        else:
            messages.success(request, _("Persona saved."))
            return redirect("console:persona", slug=workspace.slug, key=seg.key)
    response = segments_page(request, workspace, "persona_edit.html", "personas", segment=seg, current=current,
                             form=form, error=error, channel_choices=[(c, channel_label(c)) for c in CHANNEL_CHOICES],
                             max_kb=MAX_PICTURE // 1024)
    response.status_code = status
    return response

