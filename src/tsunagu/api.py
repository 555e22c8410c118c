"""The REST API under /api/v1: one NinjaAPI, each app's router mounted here; errors mapped in one place."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError as NinjaAuthError
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError

from tsunagu import __version__
from tsunagu.core.api import router as core_router
from tsunagu.core.auth import ApiKeyAuth
from tsunagu.core.errors import TsunaguError
from tsunagu.customers.api import router as customers_router
from tsunagu.events.api import router as events_router

api = NinjaAPI(
    title="tsunagu API",
    version=__version__,
    description=(
        "Customer profiles, identities, timelines and sources. "
        "Authenticate with `Authorization: Bearer <token>`."
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api",
    docs_url="/docs",
)
api.add_router("/", customers_router)
api.add_router("/", events_router)
api.add_router("/", core_router)


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


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"error": "http", "message": str(exc)}, status=exc.status_code)
