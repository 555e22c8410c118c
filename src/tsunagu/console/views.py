"""The web console: thin views over the apps' selectors (reads) and services (writes).

Every page below ``/w/<slug>/`` is resolved through :func:`workspace_page`, which answers 404 for a workspace
the user is not a member of (not 403: outsiders must not learn which workspaces exist) and shows times in the
workspace's time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from tsunagu.console import snippets
from tsunagu.console.forms import SourceForm
from tsunagu.console.labels import channel_label
from tsunagu.core import clock
from tsunagu.core.errors import TsunaguError
from tsunagu.core.pagination import page_by_id_desc
from tsunagu.core.selectors import (
    user_can_manage_credentials,
    user_can_manage_members,
    workspace_for_user,
    workspaces_for_user,
)
from tsunagu.customers.selectors import (
    clean_query,
    customer_count,
    customer_get,
    customer_identities,
    customer_merges,
    customer_recent,
    customer_search,
)
from tsunagu.events.selectors import (
    EVENT_TYPES,
    channel_values,
    customer_timeline_page,
    event_count,
    event_counts_since,
    source_get,
    source_list,
)
from tsunagu.events.services import source_create, source_rotate_key
from tsunagu.segments.selectors import segment_list

CUSTOMERS_PER_PAGE = 25
# Roles that may create sources and rotate their keys: a rotated key stops a live integration, so viewers,
# agents and operators may read keys (to install an SDK) but not change them.
EVENTS_PER_PAGE = 50

View = Callable[..., HttpResponse]


def _tz(workspace: Any) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(workspace.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("Asia/Tokyo")


def workspace_page(view: View) -> View:
    """Log-in required; ``slug`` becomes the workspace (or 404); dates render in the workspace time zone."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
        workspace = workspace_for_user(user=request.user, slug=slug)
        if workspace is None:
            raise Http404("workspace not found")
        with timezone.override(_tz(workspace)):
            return view(request, workspace, *args, **kwargs)

    return wrapper


def _page(request: HttpRequest, workspace: Any, template: str, section: str, **context: Any) -> HttpResponse:
    context.update(
        workspace=workspace,
        workspaces=list(workspaces_for_user(user=request.user)[:50]),
        section=section,
        can_manage_team=user_can_manage_members(workspace=workspace, user=request.user),
    )
    return render(request, f"console/{template}", context)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the first workspace's dashboard, or a page explaining how to get a workspace."""
    first = workspaces_for_user(user=request.user).first()
    if first is None:
        return render(request, "console/no_workspace.html", {"workspaces": []})
    return redirect("console:ws_dashboard", slug=first.slug)


def _bars(rows: list[tuple[str, int]], label: Callable[[str], str] = str) -> list[dict[str, Any]]:
    top = max((n for _, n in rows), default=0)
    return [
        {"key": key, "label": label(key) if key else "—", "count": n, "pct": round(100 * n / top, 1) if top else 0}
        for key, n in rows
    ]


@workspace_page
def dashboard(request: HttpRequest, workspace: Any) -> HttpResponse:
    now = timezone.localtime(clock.now())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = event_counts_since(workspace=workspace, since=midnight)
    return _page(
        request,
        workspace,
        "dashboard.html",
        "dashboard",
        today=midnight,
        events_today=sum(n for _, n in today["channel"]),
        by_channel=_bars(today["channel"], channel_label),
        by_source=_bars(today["source"]),
        customers_total=customer_count(workspace=workspace),
        events_total=event_count(workspace=workspace),
        recent=customer_recent(workspace=workspace, limit=8),
        segments=list(segment_list(workspace=workspace).order_by("-member_count", "name")[:6]),
    )


@workspace_page
def customers(request: HttpRequest, workspace: Any) -> HttpResponse:
    q = clean_query(request.GET.get("q"))  # what the selector searches for, shown back in the box
    cursor = request.GET.get("cursor") or None
    qs = customer_search(workspace=workspace, q=q)
    try:
        rows, next_cursor = page_by_id_desc(qs, limit=CUSTOMERS_PER_PAGE, cursor=cursor)
    except TsunaguError:  # a damaged cursor in a bookmarked URL: start again from the newest
        cursor = None
        rows, next_cursor = page_by_id_desc(qs, limit=CUSTOMERS_PER_PAGE, cursor=None)
    return _page(
        request,
        workspace,
        "customers.html",
        "customers",
        q=q,
        rows=rows,
        total=qs.count(),
        next_cursor=next_cursor,
        cursor=cursor,
    )


def _summary(data: Any, limit: int = 4, width: int = 140) -> str:
    """``key: value · key: value …`` for a timeline row; nested values are abbreviated. Keys are sorted:
    PostgreSQL's jsonb does not keep the order the SDK sent, and the row must read the same on both."""
    if not isinstance(data, dict) or not data:
        return ""
    parts = []
    for key, value in sorted(data.items())[:limit]:
        if isinstance(value, dict | list):
            value = "{…}" if isinstance(value, dict) else f"[{len(value)}]"
        elif value is None or isinstance(value, bool):
            value = json.dumps(value)  # as the SDK sent it: true / false / null
        parts.append(f"{key}: {value}")
    text = " · ".join(parts) + (" …" if len(data) > limit else "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _timeline_row(event: Any) -> dict[str, Any]:
    if event.type == "track":
        title, data = event.event, event.properties
    elif event.type in ("page", "screen"):
        title, data = event.name, event.properties
    elif event.type in ("identify", "group"):
        title, data = event.group_id if event.type == "group" else "", event.traits
    else:  # alias
        title, data = event.previous_id, {}
    return {
        "type": event.type,
        "title": title,
        "channel": event.channel,
        "channel_label": channel_label(event.channel),
        "timestamp": event.timestamp,
        "summary": _summary(data),
        "payload": _payload(event),
    }


def _payload(event: Any) -> str:
    """The whole event as stored, pretty JSON for the row's details (the template escapes it)."""
    doc = {
        "message_id": event.message_id,
        "type": event.type,
        "event": event.event or None,
        "name": event.name or None,
        "user_id": event.user_id or None,
        "anonymous_id": event.anonymous_id or None,
        "group_id": event.group_id or None,
        "previous_id": event.previous_id or None,
        "channel": event.channel,
        "source": event.source.name,
        "timestamp": event.timestamp,
        "original_timestamp": event.original_timestamp,
        "sent_at": event.sent_at,
        "received_at": event.received_at,
        "properties": event.properties,
        "traits": event.traits,
        "context": event.context,
    }
    return json.dumps(
        {k: v for k, v in doc.items() if v is not None},
        indent=2,
        ensure_ascii=False,
        default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else str(v),
    )


def _from_epoch_ms(ms: Any) -> dt.datetime | None:
    """A stored epoch-milliseconds value as a datetime; None for what no datetime can hold (damaged JSON)."""
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


@workspace_page
def customer(request: HttpRequest, workspace: Any, customer_id: int) -> HttpResponse:
    profile = customer_get(workspace=workspace, customer_id=customer_id)
    if profile is None:
        raise Http404("customer not found")
    if profile.pk != customer_id:  # merged away: the profile lives on under another id
        messages.info(
            request,
            _("Profile #%(old)s was merged into this one, #%(new)s.") % {"old": customer_id, "new": profile.pk},
        )
        return redirect("console:customer", slug=workspace.slug, customer_id=profile.pk)
    cursor = request.GET.get("cursor") or None
    # Empty means "all"; any other value is the selector's to judge (an unknown one matches nothing).
    filters = {"channel": request.GET.get("channel") or None, "type_": request.GET.get("type") or None}
    try:
        events, next_cursor = customer_timeline_page(
            customer=profile, limit=EVENTS_PER_PAGE, cursor=cursor, **filters
        )
    except TsunaguError:
        cursor = None
        events, next_cursor = customer_timeline_page(customer=profile, limit=EVENTS_PER_PAGE, cursor=None, **filters)
    filter_query = urlencode(
        [(name, value) for name, value in (("channel", filters["channel"]), ("type", filters["type_"])) if value]
    )
    channels = sorted(
        (
            {"key": name, "label": channel_label(name), "at": at}
            for name, ms in (profile.channels or {}).items()
            if (at := _from_epoch_ms(ms)) is not None
        ),
        key=lambda c: c["at"],
        reverse=True,
    )
    from tsunagu.console.views_consent import consents_in_force  # views_consent builds on this module
    from tsunagu.console.views_segments import customer_context  # so does views_segments

    return _page(
        request,
        workspace,
        "customer.html",
        "customers",
        customer=profile,
        traits=sorted((profile.traits or {}).items()),
        identities=list(customer_identities(customer=profile)),
        merges=list(customer_merges(customer=profile)[:50]),
        channels=channels,
        current=consents_in_force(profile),
        timeline=[_timeline_row(e) for e in events],
        cursor=cursor,
        next_cursor=next_cursor,
        channel_choices=[(c, channel_label(c)) for c in channel_values()],
        type_choices=EVENT_TYPES,
        channel_filter=filters["channel"] or "",
        type_filter=filters["type_"] or "",
        filter_query=filter_query,
        **customer_context(profile),
    )


@workspace_page
@require_http_methods(["GET", "POST"])
def sources(request: HttpRequest, workspace: Any) -> HttpResponse:
    can_manage = _can_manage_sources(request, workspace)
    if request.method == "POST" and not can_manage:
        raise PermissionDenied
    form = SourceForm(request.POST or None, channels=channel_values())
    if request.method == "POST" and form.is_valid():
        try:
            source = source_create(
                workspace=workspace,
                name=form.cleaned_data["name"],
                channel=form.cleaned_data["channel"],
                actor=request.user,
            )
        except TsunaguError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Source “%(name)s” created.") % {"name": source.name})
            return redirect("console:source", slug=workspace.slug, source_id=source.pk)
    rows = [{"source": s, "channel_label": channel_label(s.channel)} for s in source_list(workspace=workspace)]
    return _page(request, workspace, "sources.html", "sources", rows=rows, form=form, can_manage=can_manage)


def _can_manage_sources(request: HttpRequest, workspace: Any) -> bool:
    return user_can_manage_credentials(workspace=workspace, user=request.user)


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@workspace_page
def source(request: HttpRequest, workspace: Any, source_id: int) -> HttpResponse:
    found = source_get(workspace=workspace, source_id=source_id)
    if found is None:
        raise Http404("source not found")
    base = _base_url(request)
    return _page(
        request,
        workspace,
        "source.html",
        "sources",
        source=found,
        can_manage=_can_manage_sources(request, workspace),
        channel_label=channel_label(found.channel),
        base_url=base,
        snippet_js=snippets.analytics_js(write_key=found.write_key, base_url=base),
        snippet_python=snippets.python_sdk(write_key=found.write_key, base_url=base),
        snippet_curl=snippets.curl(write_key=found.write_key, base_url=base),
    )


@workspace_page
@require_POST
def source_rotate(request: HttpRequest, workspace: Any, source_id: int) -> HttpResponse:
    found = source_get(workspace=workspace, source_id=source_id)
    if found is None:
        raise Http404("source not found")
    if not _can_manage_sources(request, workspace):
        raise PermissionDenied
    source_rotate_key(source=found, actor=request.user)
    messages.success(request, _("A new write key was issued. The old key no longer works."))
    return redirect("console:source", slug=workspace.slug, source_id=found.pk)
