"""What a locked-out log-in sees (django-axes calls this, for the console's and the admin's log-in)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return _(
        "Too many failed sign-in attempts. Sign-in is locked for %(minutes)d minutes after the last attempt; "
        "try again later."
    ) % {"minutes": minutes}


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """The console's sign-in page with the lockout message, 429; the password is never checked meanwhile."""
    form = AuthenticationForm(request, initial={"username": (credentials or {}).get("username", "")})
    context = {"form": form, "next": request.POST.get("next", ""), "lockout": lockout_message()}
    return render(request, "console/login.html", context, status=429)
