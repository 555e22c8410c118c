"""Bearer-token authentication for the REST API. The API key decides the workspace: every endpoint reads
``request.auth`` (the workspace) and scopes its queries by it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from tsunagu.core.selectors import apikey_resolve


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        key = apikey_resolve(token=token.strip())
        if key is None:
            return None
        return key.workspace
