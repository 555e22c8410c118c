"""Middleware of the full stack (settings.MIDDLEWARE); the tracking API's lean stack does not include it."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

API_PREFIX = "/api/v1/"


def private_no_store(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """``Cache-Control: private, no-store`` on what is only for its reader: REST API answers (a bearer token's
    data) and every page answered to a logged-in user. Static files never get here (whitenoise answers them
    earlier in the stack), so they stay cacheable."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        user = getattr(request, "user", None)
        if request.path.startswith(API_PREFIX) or (user is not None and user.is_authenticated):
            patch_cache_control(response, private=True, no_store=True)
        return response

    return middleware
