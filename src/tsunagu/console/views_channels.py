"""The console's channels (provider accounts, their webhook URLs, a test send), the message archive with its
search, one delivery as sent with its states, and a customer's messages.

Config forms are built from the channel class's attributes (``required_fields``, ``optional_fields``,
``secret_fields``), so a new channel module needs no console change. Secrets are password inputs that are
never filled back: leaving one empty keeps the stored secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from tsunagu.console.views import _page
from tsunagu.console.views_messaging import (
    available_types,
    can,
    channel_label,
    messaging_page,
    picker_choices,
    workspace_page,
)
from tsunagu.core.errors import PermissionDenied as ServicePermissionDenied
from tsunagu.core.errors import TsunaguError
from tsunagu.core.pagination import page_by_id_desc
from tsunagu.core.permissions import Perm
from tsunagu.customers.selectors import customer_get
from tsunagu.messaging.channels import TYPES, channel_class
from tsunagu.messaging.links import public_base
from tsunagu.messaging.secrets import secrets_decrypt
from tsunagu.messaging.selectors import (
    MESSAGE_STATUSES,
    channel_get,
    channel_list,
    channel_webhook_urls,
    communication_list,
    communication_version,
    customer_messages,
    delivery_get,
    message_page,
    send_deliveries,
    send_get,
)
from tsunagu.messaging.services import channel_create, channel_delete, channel_update, send_create

MESSAGES_PER_PAGE = 50
SENDS_SHOWN = 20
CONFIG_LABELS = {
    "host": gettext_lazy("SMTP host"),
    "port": gettext_lazy("Port"),
    "security": gettext_lazy("Security"),
    "username": gettext_lazy("User name"),
    "password": gettext_lazy("Password"),
    "from_email": gettext_lazy("From address"),
    "from_name": gettext_lazy("From name"),
    "reply_to": gettext_lazy("Reply-To"),
    "provider": gettext_lazy("Provider"),
    "account_sid": gettext_lazy("Account SID"),
    "auth_token": gettext_lazy("Auth token"),
    "from_number": gettext_lazy("From number"),
    "base_url": gettext_lazy("Base URL"),
    "channel_access_token": gettext_lazy("Channel access token"),
    "channel_secret": gettext_lazy("Channel secret"),
    "vapid_private_key": gettext_lazy("VAPID private key"),
    "vapid_public_key": gettext_lazy("VAPID public key"),
    "subject": gettext_lazy("Subject (mailto: or https:)"),
    "url": gettext_lazy("URL"),
    "secret": gettext_lazy("Signing secret"),
}
STATUS_LABELS = {
    "queued": gettext_lazy("Queued"),
    "sending": gettext_lazy("Sending"),
    "sent": gettext_lazy("Sent"),
    "delivered": gettext_lazy("Delivered"),
    "failed": gettext_lazy("Failed"),
    "bounced": gettext_lazy("Bounced"),
    "opened": gettext_lazy("Opened"),
    "clicked": gettext_lazy("Clicked"),
    "replied": gettext_lazy("Replied"),
    "unsubscribed": gettext_lazy("Unsubscribed"),
}


def status_label(status: str) -> str:
    label = STATUS_LABELS.get(status)
    return str(label) if label is not None else status


def _denied(exc: ServicePermissionDenied) -> PermissionDenied:
    return PermissionDenied(exc.message)


# --- channels -----------------------------------------------------------------------------------------


def config_rows(type_: str, *, values: dict[str, Any], held: set[str], errors: dict[str, str]) -> list[dict[str, Any]]:
    """The config fields of a channel type for the form: required first, then optional; secrets are
    password inputs whose value is never given back (``held`` says whether one is stored)."""
    cls = channel_class(type_)
    names = list(dict.fromkeys([*cls.required_fields, *cls.optional_fields, *cls.secret_fields]))
    rows = []
    for name in names:
        label = CONFIG_LABELS.get(name)
        secret = name in cls.secret_fields
        rows.append(
            {
                "name": name,
                "label": str(label) if label is not None else name,
                "required": name in cls.required_fields,
                "secret": secret,
                "held": secret and name in held,
                "value": "" if secret else values.get(name, ""),
                "error": errors.get(name, ""),
            }
        )
    return rows


def config_from_post(type_: str, post: QueryDict, *, update: bool) -> dict[str, Any]:
    """The posted config. On update an empty secret is left out (the stored one is kept) and an empty
    optional field is ``None`` (removed). Port-like numbers are sent as integers, as the API takes them."""
    cls = channel_class(type_)
    config: dict[str, Any] = {}
    for name in dict.fromkeys([*cls.required_fields, *cls.optional_fields, *cls.secret_fields]):
        value = post.get(f"config-{name}", "").strip()
        if not value:
            if update and name not in cls.secret_fields:
                config[name] = None
            continue
        config[name] = int(value) if name.endswith("port") and value.isdigit() else value
    return config


def _config_error(exc: TsunaguError) -> tuple[str, str]:
    field = exc.field or ""
    return (field[len("config.") :], exc.message) if field.startswith("config.") else ("", exc.message)


@workspace_page
@require_http_methods(["GET", "POST"])
def channels(request: HttpRequest, workspace: Any) -> HttpResponse:
    """The channel list, and the form for a new one (its config fields are those of the chosen type)."""
    can_manage = can(request, workspace, Perm.CHANNELS)
    types = available_types()
    type_ = request.POST.get("type") or request.GET.get("type") or (types[0] if types else "")
    if type_ not in types:
        type_ = types[0] if types else ""
    errors: dict[str, str] = {}
    form_error = ""
    name = ""
    values: dict[str, Any] = {}
    status = 200
    if request.method == "POST" and request.POST.get("action") != "choose":
        if not can_manage:
            raise PermissionDenied
        name = request.POST.get("name", "").strip()
        config = config_from_post(type_, request.POST, update=False)
        values = {k: v for k, v in config.items() if k not in channel_class(type_).secret_fields}
        try:
            channel = channel_create(workspace=workspace, type=type_, name=name, config=config, actor=request.user)
        except ServicePermissionDenied as exc:
            raise _denied(exc) from exc
        except TsunaguError as exc:
            key, message = _config_error(exc)
            if key:
                errors[key] = message
            elif exc.field == "name":
                errors["__name"] = message
            else:
                form_error = message
            status = 400
        else:
            messages.success(request, _("Channel “%(name)s” created.") % {"name": channel.name})
            return redirect("console:channel", slug=workspace.slug, channel_id=channel.pk)
    rows = [{"channel": c, "label": channel_label(c.type)} for c in channel_list(workspace=workspace)]
    response = messaging_page(
        request,
        workspace,
        "channels.html",
        "channels",
        rows=rows,
        can_manage=can_manage,
        types=[(t, channel_label(t)) for t in types],
        type=type_,
        name=name,
        fields=config_rows(type_, values=values, held=set(), errors=errors) if type_ else [],
        name_error=errors.get("__name", ""),
        form_error=form_error,
    )
    response.status_code = status
    return response


def _channel_or_404(workspace: Any, channel_id: int) -> Any:
    channel = channel_get(workspace=workspace, channel_id=channel_id)
    if channel is None:
        raise Http404("channel not found")
    return channel


def _channel_page(
    request: HttpRequest,
    workspace: Any,
    channel: Any,
    *,
    errors: dict[str, str] | None = None,
    form_error: str = "",
    status: int = 200,
) -> HttpResponse:
    errors = errors or {}
    held = {k for k, v in secrets_decrypt(channel.secrets).items() if v}
    sent = None
    send_id = request.GET.get("send", "")
    if send_id.isdigit() and (found := send_get(workspace=workspace, send_id=int(send_id))) is not None:
        sent = {"send": found, "deliveries": send_deliveries(send=found), "status_label": status_label(found.status)}
    comms = []
    for comm in communication_list(workspace=workspace)[:500]:
        if any(v.get("channel") == channel.type for v in communication_version(communication=comm).variants):
            comms.append(comm)
    response = messaging_page(
        request,
        workspace,
        "channel.html",
        "channels",
        channel=channel,
        label=channel_label(channel.type),
        fields=config_rows(channel.type, values=channel.config or {}, held=held, errors=errors),
        name_error=errors.get("__name", ""),
        form_error=form_error,
        webhook_urls=sorted(channel_webhook_urls(channel, request=request).items()),
        can_manage=can(request, workspace, Perm.CHANNELS),
        can_send=can(request, workspace, Perm.SEND),
        communications=comms,
        picker=picker_choices(workspace),
        sent=sent,
    )
    response.status_code = status
    return response


@workspace_page
@require_http_methods(["GET", "POST"])
def channel(request: HttpRequest, workspace: Any, channel_id: int) -> HttpResponse:
    found = _channel_or_404(workspace, channel_id)
    if request.method == "GET":
        return _channel_page(request, workspace, found)
    if not can(request, workspace, Perm.CHANNELS):
        raise PermissionDenied
    try:
        channel_update(
            channel=found,
            actor=request.user,
            name=request.POST.get("name", ""),
            config=config_from_post(found.type, request.POST, update=True),
        )
    except ServicePermissionDenied as exc:
        raise _denied(exc) from exc
    except TsunaguError as exc:
        found.refresh_from_db()
        key, message = _config_error(exc)
        errors = {key: message} if key else ({"__name": message} if exc.field == "name" else {})
        return _channel_page(request, workspace, found, errors=errors, form_error="" if errors else message, status=400)
    messages.success(request, _("Channel “%(name)s” saved.") % {"name": found.name})
    return redirect("console:channel", slug=workspace.slug, channel_id=found.pk)


@workspace_page
@require_POST
def channel_toggle(request: HttpRequest, workspace: Any, channel_id: int) -> HttpResponse:
    found = _channel_or_404(workspace, channel_id)
    try:
        channel_update(channel=found, actor=request.user, enabled=not found.enabled)
    except ServicePermissionDenied as exc:
        raise _denied(exc) from exc
    text = _("Channel “%(name)s” enabled.") if found.enabled else _("Channel “%(name)s” disabled.")
    messages.success(request, text % {"name": found.name})
    return redirect("console:channel", slug=workspace.slug, channel_id=found.pk)


@workspace_page
@require_POST
def channel_remove(request: HttpRequest, workspace: Any, channel_id: int) -> HttpResponse:
    found = _channel_or_404(workspace, channel_id)
    try:
        channel_delete(channel=found, actor=request.user)
    except ServicePermissionDenied as exc:
        raise _denied(exc) from exc
    messages.success(request, _("Channel “%(name)s” deleted.") % {"name": found.name})
    return redirect("console:channels", slug=workspace.slug)


@workspace_page
@require_POST
def channel_test(request: HttpRequest, workspace: Any, channel_id: int) -> HttpResponse:
    """Send a communication to a customer through this very channel, enabled or not (``send_create(via=)``),
    and show the send on the channel's page."""
    found = _channel_or_404(workspace, channel_id)
    raw_id = request.POST.get("customer", "")
    customer = customer_get(workspace=workspace, customer_id=int(raw_id)) if raw_id.isdigit() else None
    if customer is None:
        messages.error(request, _("Choose a customer to send the test to."))
        return redirect("console:channel", slug=workspace.slug, channel_id=found.pk)
    try:
        send = send_create(
            workspace=workspace,
            communication=request.POST.get("communication", ""),
            customer=customer,
            actor=request.user,
            via=found,
            base_url=public_base(request),
        )
    except ServicePermissionDenied as exc:
        raise _denied(exc) from exc
    except TsunaguError as exc:
        messages.error(request, exc.message)
        return redirect("console:channel", slug=workspace.slug, channel_id=found.pk)
    url = redirect("console:channel", slug=workspace.slug, channel_id=found.pk).url
    return redirect(f"{url}?{urlencode({'send': send.pk})}")


# --- the archive --------------------------------------------------------------------------------------


def _day(value: str, field: str, errors: dict[str, str]) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors[field] = _("Enter a date as YYYY-MM-DD.")
        return None


def _start_of(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in the workspace's time zone (the one the page is rendered in)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time()), timezone.get_current_timezone())


def message_row(d: Any) -> dict[str, Any]:
    return {
        "d": d,
        "channel_label": channel_label(d.channel_type),
        "status_label": status_label(d.status),
        "title": d.subject or (d.body_text or "")[:120],
    }


@workspace_page
def archive(request: HttpRequest, workspace: Any) -> HttpResponse:
    get = request.GET
    names = ("q", "channel", "status", "communication", "since", "until")
    filters = {name: get.get(name, "").strip() for name in names}
    errors: dict[str, str] = {}
    since_day = _day(filters["since"], "since", errors)
    until_day = _day(filters["until"], "until", errors)
    customer = None
    raw_customer = get.get("customer", "")
    if raw_customer.isdigit():
        customer = customer_get(workspace=workspace, customer_id=int(raw_customer))
    rows: list[Any] = []
    next_cursor = None
    cursor = get.get("cursor") or None
    if not errors:
        try:
            search = {
                "workspace": workspace,
                "q": filters["q"].replace("\x00", "") or None,
                "channel": filters["channel"] or None,
                "status": filters["status"] or None,
                "communication": filters["communication"] or None,
                "customer": customer,
                "since": _start_of(since_day) if since_day else None,
                # "until" is a day the operator includes: everything before the next midnight.
                "until": _start_of(until_day + dt.timedelta(days=1)) if until_day else None,
                "limit": MESSAGES_PER_PAGE,
            }
            try:
                rows, next_cursor = message_page(**search, cursor=cursor)
            except TsunaguError as exc:
                if exc.field != "cursor":
                    raise
                cursor = None  # a damaged cursor: the first page
                rows, next_cursor = message_page(**search, cursor=None)
            prefetch_related_objects(rows, "customer", "communication", "version")
        except TsunaguError as exc:
            errors[exc.field or "q"] = exc.message
    query = urlencode([(k, v) for k, v in filters.items() if v] + ([("customer", customer.pk)] if customer else []))
    return messaging_page(
        request,
        workspace,
        "archive.html",
        "archive",
        filters=filters,
        errors=errors,
        rows=[message_row(d) for d in rows],
        next_cursor=next_cursor,
        cursor=cursor,
        query=query,
        filter_customer=customer,
        channel_choices=[(t, channel_label(t)) for t in TYPES],
        status_choices=[(s, status_label(s)) for s in MESSAGE_STATUSES],
        communication_choices=list(communication_list(workspace=workspace).values_list("key", "name")[:500]),
    )


@workspace_page
def delivery(request: HttpRequest, workspace: Any, delivery_id: int) -> HttpResponse:
    """One message exactly as sent (content and headers), and its states over time."""
    found = delivery_get(workspace=workspace, delivery_id=delivery_id)
    if found is None:
        raise Http404("message not found")
    events = [{"e": e, "label": status_label(e.status)} for e in found.events.order_by("at", "pk")]
    headers = sorted((k, v) for k, v in (found.headers or {}).items() if k != "extra")
    customer = customer_get(workspace=workspace, customer_id=found.customer_id) if found.customer_id else None
    from tsunagu.console.views_sends import send_view  # views_sends builds on this module

    return messaging_page(
        request,
        workspace,
        "delivery.html",
        "archive",
        d=found,
        channel_label=channel_label(found.channel_type),
        status_label=status_label(found.status),
        events=events,
        headers=headers,
        customer=customer,
        content=found.content or {},
        send=send_view(found.send),
    )


@workspace_page
def customer_messages_page(request: HttpRequest, workspace: Any, customer_id: int) -> HttpResponse:
    """The "messages" tab of the customer's 360° page."""
    profile = customer_get(workspace=workspace, customer_id=customer_id)
    if profile is None:
        raise Http404("customer not found")
    if profile.pk != customer_id:
        return redirect("console:customer_messages", slug=workspace.slug, customer_id=profile.pk)
    cursor = request.GET.get("cursor") or None
    qs = customer_messages(customer=profile)
    try:
        rows, next_cursor = page_by_id_desc(qs, limit=MESSAGES_PER_PAGE, cursor=cursor)
    except TsunaguError:
        cursor = None
        rows, next_cursor = page_by_id_desc(qs, limit=MESSAGES_PER_PAGE, cursor=None)
    from tsunagu.console.views_sends import send_view
    from tsunagu.messaging.selectors_reports import customer_sends

    return _page(
        request,
        workspace,
        "messaging/customer_messages.html",
        "customers",
        customer=profile,
        sends=[send_view(s) for s in customer_sends(customer=profile, limit=SENDS_SHOWN)] if not cursor else [],
        rows=[message_row(d) for d in rows],
        cursor=cursor,
        next_cursor=next_cursor,
    )
