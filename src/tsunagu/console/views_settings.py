"""The messaging settings of the workspace: its time zone, quiet hours per topic (delay or drop), public
holidays, frequency caps — saved through ``core.services.workspace_settings_update`` (admins and owners;
checked there by the messaging rules and audited in the same transaction). Only the settings that changed
are sent, so the audit log says what was changed.

Errors are placed beside their field: the services name ``quiet_hours.marketing.start`` or
``frequency_caps[1].max``; cap rows are compacted (a row without a maximum is no cap), so row *i* is
``frequency_caps[i]``.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from tsunagu.console.labels import TOPIC_LABELS, label
from tsunagu.console.views_messaging import can, channel_label, messaging_page, workspace_page
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.errors import TsunaguError
from tsunagu.core.permissions import Perm
from tsunagu.core.services import workspace_settings, workspace_settings_update
from tsunagu.messaging.channels import TYPES
from tsunagu.messaging.rules import CAP_TOPICS, MAX_CAPS, PERIODS, TOPICS_WITH_QUIET_HOURS

PERIOD_LABELS = {"day": gettext_lazy("a day"), "week": gettext_lazy("a week"), "month": gettext_lazy("30 days")}
_CAP_FIELD = re.compile(r"^frequency_caps\[(\d+)\](?:\.(\w+))?$")
NAMES = ("timezone", "holidays", "quiet_hours", "frequency_caps")


def _quiet_from_post(post: QueryDict) -> dict[str, dict[str, str]]:
    out = {}
    for topic in TOPICS_WITH_QUIET_HOURS:
        if post.get(f"qh-{topic}-on") != "1":
            continue
        window = {"start": post.get(f"qh-{topic}-start", "").strip(), "end": post.get(f"qh-{topic}-end", "").strip()}
        if post.get(f"qh-{topic}-action") == "drop":
            window["action"] = "drop"
        out[topic] = window
    return out


def _caps_from_post(post: QueryDict) -> tuple[list[dict[str, Any]], dict[str, str]]:
    try:
        count = min(int(post.get("cap_count", "0")), MAX_CAPS + 1)
    except ValueError:
        count = 0
    caps: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for i in range(count):
        raw = post.get(f"cap{i}-max", "").strip()
        if not raw:
            continue
        cap: dict[str, Any] = {"topic": post.get(f"cap{i}-topic", ""), "per": post.get(f"cap{i}-per", "")}
        channel = post.get(f"cap{i}-channel", "")
        if channel:
            cap["channel"] = channel
        if raw.isdigit():
            cap["max"] = int(raw)
        else:
            cap["max"] = raw
            errors[f"cap{len(caps)}-max"] = _("Enter a whole number.")
        caps.append(cap)
    return caps, errors


def _field_key(field: str) -> str:
    """The form field a services error names: ``quiet_hours.marketing.start`` → ``qh-marketing-start``."""
    found = _CAP_FIELD.match(field)
    if found:
        return f"cap{found.group(1)}-{found.group(2) or 'max'}"
    if field.startswith("quiet_hours."):
        return "qh-" + field.removeprefix("quiet_hours.").replace(".", "-")
    return field


def _context(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    quiet = values.get("quiet_hours") or {}
    caps = list(values.get("frequency_caps") or [])
    rows = [{"index": i, **c} for i, c in enumerate(caps)]
    if len(rows) < MAX_CAPS:
        rows.append({"index": len(rows), "topic": "marketing", "max": "", "per": "day"})
    for row in rows:
        row["errors"] = [(k, m) for k, m in errors.items() if k.startswith(f"cap{row['index']}-")]
    return {
        "values": values,
        "quiet": [
            {"topic": t, "label": label(TOPIC_LABELS, t), "on": t in quiet, **{"start": "21:00", "end": "08:00"},
             **(quiet.get(t) or {}), "errors": [(k, m) for k, m in errors.items() if k.split("-")[:2] == ["qh", t]]}
            for t in TOPICS_WITH_QUIET_HOURS
        ],
        "caps": rows,
        "cap_count": len(rows),
        "cap_topics": [(t, label(TOPIC_LABELS, t)) for t in CAP_TOPICS],
        "cap_channels": [("", _("Any channel")), *((t, channel_label(t)) for t in TYPES)],
        "periods": [(p, PERIOD_LABELS[p]) for p in PERIODS],
        "errors": errors,
    }


@workspace_page
@require_http_methods(["GET", "POST"])
def messaging_settings(request: HttpRequest, workspace: Any) -> HttpResponse:
    can_edit = can(request, workspace, Perm.SETTINGS)
    current = workspace_settings(workspace)
    values = {name: current.get(name) for name in NAMES}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        caps, errors = _caps_from_post(request.POST)
        posted = {
            "timezone": request.POST.get("timezone", "").strip(),
            "holidays": request.POST.get("holidays") or None,
            "quiet_hours": _quiet_from_post(request.POST),
            "frequency_caps": caps,
        }
        values = posted
        if not errors:
            changes = {name: value for name, value in posted.items() if value != current.get(name)}
            try:
                workspace_settings_update(workspace=workspace, changes=changes, actor=request.user)
            except ServicePermissionDenied as exc:
                raise PermissionDenied from exc
            except TsunaguError as exc:
                errors[_field_key(exc.field or "form")] = exc.message
            else:
                messages.success(request, _("Settings saved."))
                return redirect("console:messaging_settings", slug=workspace.slug)
        status = 400
    response = messaging_page(
        request, workspace, "settings.html", "settings", can_edit=can_edit, **_context(values, errors)
    )
    response.status_code = status
    return response
