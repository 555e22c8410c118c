"""The consent tab of the customer's 360° page: the decisions in force per channel and topic, every
decision with its proof (source, wording, time, who recorded it), and a form for an agent to record what
the customer decided (``consent_set``, source ``console``: on the phone, at the counter).

Agents, operators, admins and owners may record (the services' ``send messages`` permission); viewers read.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from tsunagu.console.labels import CONSENT_LABELS, TOPIC_LABELS, label
from tsunagu.console.views import _page, workspace_page
from tsunagu.console.views_messaging import can, channel_label
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.errors import TsunaguError
from tsunagu.core.permissions import Perm
from tsunagu.customers.selectors import customer_get
from tsunagu.messaging.channels import TYPES
from tsunagu.messaging.consent import consent_current, consent_history, consent_set

HISTORY_SHOWN = 200
SOURCE_LABELS = {
    "console": gettext_lazy("Console"),
    "api": gettext_lazy("API"),
    "identify": gettext_lazy("Identify traits"),
    "preference_page": gettext_lazy("Preference page"),
    "list_unsubscribe": gettext_lazy("One-click unsubscribe (mail client)"),
    "unsubscribe_link": gettext_lazy("Unsubscribe link"),
}


def consent_row(row: Any) -> dict[str, Any]:
    """A decision (a ``Consent`` row or a ``consent_current`` item) with its labels."""
    def get(name: str) -> str:
        return str((row.get(name) if isinstance(row, dict) else getattr(row, name)) or "")

    channel = get("channel") or "all"
    return {
        "channel": channel,
        "channel_label": _("Every channel") if channel == "all" else channel_label(channel),
        "topic": get("topic"),
        "topic_label": label(TOPIC_LABELS, get("topic")),
        "status": get("status"),
        "status_label": label(CONSENT_LABELS, get("status")),
        "source": get("source"),
        "source_label": str(SOURCE_LABELS.get(get("source"), get("source"))),
        "at": row["at"] if isinstance(row, dict) else row.at,
        "text": "" if isinstance(row, dict) else row.text,
        "actor": "" if isinstance(row, dict) else row.actor,
    }


def consents_in_force(customer: Any) -> list[dict[str, Any]]:
    return [consent_row(r) for r in consent_current(customer=customer)]


def _form_choices() -> dict[str, Any]:
    return {
        "channel_choices": [("all", _("Every channel")), *((t, channel_label(t)) for t in TYPES)],
        "topic_choices": [(t, label(TOPIC_LABELS, t)) for t in ("marketing", "service")],
        "status_choices": [(s, label(CONSENT_LABELS, s)) for s in ("granted", "revoked")],
    }


@workspace_page
@require_http_methods(["GET", "POST"])
def customer_consent(request: HttpRequest, workspace: Any, customer_id: int) -> HttpResponse:
    profile = customer_get(workspace=workspace, customer_id=customer_id)
    if profile is None:
        raise Http404("customer not found")
    if profile.pk != customer_id:
        return redirect("console:customer_consent", slug=workspace.slug, customer_id=profile.pk)
    can_record = can(request, workspace, Perm.SEND)
    values = {"channel": "all", "topic": "marketing", "status": "granted", "text": ""}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        if not can_record:
            raise PermissionDenied
        values = {name: request.POST.get(name, "").strip() for name in values}
        try:
            consent_set(
                customer=profile, channel=values["channel"], topic=values["topic"], status=values["status"],
                source="console", text=values["text"], actor=request.user,
            )
        except ServicePermissionDenied as exc:
            raise PermissionDenied from exc
        except TsunaguError as exc:
            errors[exc.field or "text"] = exc.message
            status = 400
        else:
            messages.success(request, _("The decision is recorded."))
            return redirect("console:customer_consent", slug=workspace.slug, customer_id=profile.pk)
    history = [consent_row(r) for r in consent_history(customer=profile)[:HISTORY_SHOWN]]
    response = _page(
        request, workspace, "messaging/customer_consent.html", "customers", customer=profile,
        current=consents_in_force(profile), history=history, history_max=HISTORY_SHOWN, values=values,
        errors=errors, can_record=can_record, **_form_choices(),
    )
    response.status_code = status
    return response
