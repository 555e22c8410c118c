"""Public endpoints of messaging, under ``/m/``: inbound webhooks (signed by the provider), one-click
unsubscribe (a signed token), and the web push service worker. No session, no API key: each request proves
itself by a signature or a token, and answers nothing about other customers."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from tsunagu.core import clock
from tsunagu.core.errors import NotFound, TsunaguError, ValidationError
from tsunagu.messaging.channels.base import InboundRequest
from tsunagu.messaging.consent import delivery_unsubscribe
from tsunagu.messaging.delivery import Report, delivery_report
from tsunagu.messaging.inbound import inbound_handle
from tsunagu.messaging.links import public_base, unsubscribe_key
from tsunagu.messaging.selectors import channel_by_webhook_token, delivery_by_key
from tsunagu.messaging.services import push_subscription_register
from tsunagu.messaging.tracking import click_is_machine, open_is_machine, tracking_parse

log = logging.getLogger(__name__)
MAX_INBOUND_BYTES = 1024 * 1024


def _error(exc: TsunaguError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.http_status, json_dumps_params={"ensure_ascii": False})


def _inbound_request(request: HttpRequest, token: str, webhook: str) -> InboundRequest:
    # Providers sign the URL they called: rebuild it from TSUNAGU_PUBLIC_URL when set (behind a proxy the
    # request's own host may differ from what the provider used).
    query = request.META.get("QUERY_STRING", "")
    url = f"{public_base(request)}/m/in/{token}/{webhook}" + (f"?{query}" if query else "")
    headers = {k.lower(): v for k, v in request.headers.items()}
    form = {k: str(v) for k, v in request.POST.items()} if "form" in headers.get("content-type", "") else {}
    return InboundRequest(url=url, headers=headers, body=request.body, form=form)


@csrf_exempt
@require_http_methods(["POST"])
def inbound(request: HttpRequest, token: str, webhook: str) -> HttpResponse:
    """``POST /m/in/<token>/<webhook>``: a provider's webhook (the URL is in the channel's webhook_urls)."""
    channel = channel_by_webhook_token(token=token)
    if channel is None or not channel.enabled:
        return JsonResponse({"error": "not_found", "message": "no such webhook"}, status=404)
    if len(request.body) > MAX_INBOUND_BYTES:
        return JsonResponse({"error": "too_large", "message": "body over 1 MB"}, status=413)
    try:
        counts = inbound_handle(channel=channel, webhook=webhook, request=_inbound_request(request, token, webhook))
    except TsunaguError as exc:
        return _error(exc)
    if channel.type == "sms":
        # Twilio reads the answer as TwiML: an empty response sends no reply SMS and logs no error.
        return HttpResponse("<Response/>", content_type="text/xml")
    return JsonResponse({"status": "ok", **counts})


_PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
    b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def _tracked(token: str) -> tuple[Any, str | None] | None:
    try:
        key, url = tracking_parse(token)
    except (signing.BadSignature, ValueError):
        return None
    delivery = delivery_by_key(key=key)
    return (delivery, url) if delivery is not None else None


def _seconds_after_send(delivery: Any) -> float | None:
    return (clock.now() - delivery.sent_at).total_seconds() if delivery.sent_at else None


@require_http_methods(["GET", "HEAD"])
def track_open(request: HttpRequest, token: str) -> HttpResponse:
    """``/m/o/<token>.gif``: the open pixel. Always a pixel (a broken image tells nothing); an open by a
    mail proxy (Apple Mail Privacy Protection) or a scanner is recorded as a machine open."""
    found = _tracked(token)
    if found is not None:
        delivery, _url = found
        machine = open_is_machine(
            user_agent=request.headers.get("User-Agent"), ip=request.META.get("REMOTE_ADDR"),
            seconds_after_send=_seconds_after_send(delivery),
        )
        delivery_report(delivery=delivery, report=Report(status="opened", machine=machine))
    response = HttpResponse(_PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, private"
    return response


@require_http_methods(["GET", "HEAD"])
def track_click(request: HttpRequest, token: str) -> HttpResponse:
    """``/m/c/<token>``: record the click, then redirect to the link's target (only the signed one: the
    redirect cannot be pointed anywhere else). A HEAD or a scanner is a machine click."""
    found = _tracked(token)
    if found is None or not found[1] or not str(found[1]).startswith(("http://", "https://")):
        return HttpResponse("unknown link", status=404, content_type="text/plain")
    delivery, url = found
    machine = click_is_machine(
        user_agent=request.headers.get("User-Agent"), method=request.method or "GET",
        seconds_after_send=_seconds_after_send(delivery),
    )
    delivery_report(delivery=delivery, report=Report(status="clicked", machine=machine, data={"url": url}))
    return HttpResponseRedirect(str(url))


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """``/m/u/<token>``: GET shows a confirmation page (link scanners follow GETs, so a GET never
    unsubscribes); POST unsubscribes — the form on that page, or a mail client's RFC 8058 one-click POST
    (``List-Unsubscribe=One-Click``)."""
    key = unsubscribe_key(token)
    delivery = delivery_by_key(key=key) if key else None
    if delivery is None:
        return render(request, "messaging/unsubscribe.html", {"invalid": True}, status=404)
    if request.method == "GET":
        return render(request, "messaging/unsubscribe.html", {"delivery": delivery, "token": token, "done": False})
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    delivery_unsubscribe(delivery=delivery, one_click=one_click)
    if one_click:
        return HttpResponse(status=200)
    return render(request, "messaging/unsubscribe.html", {"delivery": delivery, "done": True})


def _push_cors(response: HttpResponse) -> HttpResponse:
    # The subscribe snippet posts from the customer's own site. The channel token in the path is public (it
    # sits in the site's HTML, as write keys do) and no cookie is read: any origin may post.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "86400"
    return response


@csrf_exempt
@require_http_methods(["POST", "OPTIONS"])
def push_subscribe(request: HttpRequest, token: str) -> HttpResponse:
    """``POST /m/push/<token>/subscribe`` ``{"subscription": {"endpoint", "keys": {"p256dh", "auth"}},
    "user_id" | "anonymous_id"}``: store a browser's push subscription for the customer it names (one
    tsunagu knows already: the site's analytics.js has sent its events)."""
    if request.method == "OPTIONS":
        return _push_cors(HttpResponse(status=204))
    channel = channel_by_webhook_token(token=token)
    if channel is None or channel.type != "webpush" or not channel.enabled:
        return _push_cors(JsonResponse({"error": "not_found", "message": "no such push channel"}, status=404))
    try:
        body = orjson.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise ValidationError("must be a JSON object", field="body")
        subscription = body.get("subscription")
        if not isinstance(subscription, dict) or not isinstance(subscription.get("keys"), dict):
            raise ValidationError("must be a PushSubscription's JSON (endpoint, keys)", field="subscription")
        customer = _push_customer(channel.workspace, body)
        sub = push_subscription_register(
            workspace=channel.workspace, customer=customer, endpoint=subscription.get("endpoint"),
            p256dh=subscription["keys"].get("p256dh"), auth=subscription["keys"].get("auth"),
        )
    except orjson.JSONDecodeError:
        return _push_cors(_error(ValidationError("the body is not JSON", field="body")))
    except TsunaguError as exc:
        return _push_cors(_error(exc))
    return _push_cors(JsonResponse({"status": "ok", "id": sub.pk}, status=201))


def _push_customer(workspace: Any, body: dict[str, Any]) -> Any:
    from tsunagu.customers.normalize import normalize_id
    from tsunagu.customers.selectors import customer_find_by_identity, customer_get

    for field, kind in (("user_id", "user_id"), ("anonymous_id", "anonymous_id")):
        value = body.get(field)
        if isinstance(value, str) and value:
            found = customer_find_by_identity(workspace=workspace, type_=kind, value=normalize_id(value) or "")
            if found is None:
                raise NotFound(f"no customer with this {field} yet (send an event first)", field=field)
            live = customer_get(workspace=workspace, customer_id=found.pk)
            if live is not None:
                return live
    raise ValidationError("give user_id or anonymous_id", field="user_id")
