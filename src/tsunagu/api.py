"""The REST API under /api/v1: one NinjaAPI, each app's router mounted here; errors mapped in one place.

Every answer is UTF-8 JSON as written (山田, not \\u5c71\\u7530), and every error has the shape of
docs/api.md — ``{"error": <code>, "message": …, "field"?: …}`` — including the ones Django or Ninja would
answer in their own formats: a body that is not JSON, a method an endpoint does not take (Ninja answers a
bare-text 405 before any exception handler runs), a path that does not exist, and an unexpected failure.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.signals import got_request_exception
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI
from ninja.errors import AuthenticationError as NinjaAuthError
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.renderers import JSONRenderer

from tsunagu import __version__
from tsunagu.core.api import router as core_router
from tsunagu.core.auth import ApiKeyAuth
from tsunagu.core.errors import TsunaguError
from tsunagu.customers.api import router as customers_router
from tsunagu.events.api import router as events_router
from tsunagu.journeys.api import router as journeys_router
from tsunagu.messaging.api import router as messaging_router
from tsunagu.messaging.api_broadcasts import router as broadcasts_router
from tsunagu.messaging.api_consents import router as consents_router
from tsunagu.messaging.api_segment_webhooks import router as segment_webhooks_router
from tsunagu.segments.api import router as segments_router
from tsunagu.segments.api_computed import router as computed_router
from tsunagu.segments.api_export import router as segments_export_router


class UTF8JSONRenderer(JSONRenderer):
    """Ninja's renderer (its datetime and Decimal spellings) without escaping non-ASCII."""

    json_dumps_params = {"ensure_ascii": False}


class TsunaguAPI(NinjaAPI):
    """NinjaAPI answering UTF-8 JSON, and JSON errors for what happens outside its operations."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("renderer", UTF8JSONRenderer())
        super().__init__(**kwargs)

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = _json_errors(self, pattern.callback)
        return urls

    @property
    def not_found_urls(self) -> list[URLPattern]:
        """Mount right after ``urls`` under the same prefix: a JSON 404 for every path no endpoint has."""
        return [re_path(r"^", _json_errors(self, _no_such_path), name="api-not-found")]


def _error(api: NinjaAPI, request: HttpRequest, status: int, code: str, message: str, **extra: Any) -> HttpResponse:
    return api.create_response(request, {"error": code, "message": message, **extra}, status=status)


def _no_such_path(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404


def _json_errors(api: NinjaAPI, view: Callable[..., Any]) -> Callable[..., Any]:
    """``view`` with a 404 raised outside an operation (the API root, unknown paths) and Ninja's text 405
    answered as documented JSON. ``wraps`` keeps the view's ``csrf_exempt``."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return _error(api, request, 404, "not_found", f"no API endpoint at {request.path}")
        if isinstance(response, HttpResponseNotAllowed):
            allow = ", ".join(sorted(m.strip() for m in response["Allow"].split(",")))
            answer = _error(
                api, request, 405, "method_not_allowed", f"{request.method} is not allowed here; use {allow}"
            )
            answer["Allow"] = allow
            return answer
        return response

    return wrapper


api = TsunaguAPI(
    title="tsunagu API",
    version=__version__,
    description=(
        "Customer profiles, identities, timelines and sources; channels, communications, sends, the archive. "
        "Authenticate with `Authorization: Bearer <token>`."
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api",
    docs_url="/docs",
)
api.add_router("/", customers_router)
api.add_router("/", events_router)
api.add_router("/", core_router)
api.add_router("/", messaging_router)
api.add_router("/", consents_router)
api.add_router("/", broadcasts_router)
api.add_router("/", computed_router)
api.add_router("/", segments_router)
api.add_router("/", journeys_router)
api.add_router("/", segments_export_router)
api.add_router("/", segment_webhooks_router)


@api.exception_handler(TsunaguError)
def _tsunagu_error(request: HttpRequest, exc: TsunaguError) -> HttpResponse:
    return api.create_response(request, exc.as_dict(), status=exc.http_status)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    details = []
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", [])]
        if len(loc) > 2 and loc[0] == "body":
            # Ninja reports a body field as ("body", <our parameter name>, field...); the client sent the
            # schema unwrapped, so the parameter name means nothing to it.
            loc = loc[2:]
        loc = [p for p in loc if p not in ("query", "path", "body")]
        details.append({"field": ".".join(loc) or "request", "message": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "request", "message": "invalid"}
    body = {
        "error": "invalid",
        "message": f"{first['field']}: {first['message']}",
        "field": first["field"],
        "details": details,
    }
    return api.create_response(request, body, status=400)


@api.exception_handler(NinjaAuthError)
def _auth_error(request: HttpRequest, exc: NinjaAuthError) -> HttpResponse:
    body = {"error": "unauthenticated", "message": "send a valid API key as `Authorization: Bearer <token>`"}
    response = api.create_response(request, body, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


# Codes of docs/api.md for the statuses Ninja raises as HttpError.
_HTTP_CODES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 429: "throttled"}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:
        # The one 400 Ninja raises itself: a body that is not JSON ("Cannot parse request body").
        return _error(api, request, 400, "invalid", f"body: {exc} (send a JSON object)", field="body")
    return _error(api, request, exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(api, request, 404, "not_found", str(exc) or f"nothing at {request.path}")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # What Django's own handler does for a 500: log it with the traceback and send got_request_exception
    # (the test client re-raises it from that signal) — but answer in the API's shape, not an HTML page.
    logging.getLogger("django.request").error(
        "Internal Server Error: %s", request.path, exc_info=exc, extra={"status_code": 500, "request": request}
    )
    got_request_exception.send(sender=None, request=request)
    return _error(api, request, 500, "internal", "internal error; the server log has the details")
