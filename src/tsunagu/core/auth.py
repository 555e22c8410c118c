"""Bearer-token authentication for the REST API. The API key decides the workspace: every endpoint reads
``request.auth`` (the workspace) and scopes its queries by it; writes pass ``request.api_key`` to services as
the actor, whose role they check."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest
from ninja.security import HttpBearer

from tsunagu.core.selectors import apikey_resolve


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        key = apikey_resolve(token=token.strip())
        if key is None:
            return None
        request.api_key = key  # type: ignore[attr-defined]
        return key.workspace


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' check before every password check of a log-in. A check without a request (code that calls
    ``authenticate()`` itself: tests, scripts) is not a log-in over the network, so there is nothing to
    throttle and axes' refusal of it would only break such callers."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
