"""Links tsunagu puts in messages (one-click unsubscribe, preferences) and the base URL they are built on.

Tokens are signed with Django's signing (the secret key), so a link names its delivery without a database
lookup and cannot be forged to unsubscribe someone else.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import signing

_SALT = "tsunagu.messaging.unsubscribe"


def public_base(request: Any = None) -> str:
    """``TSUNAGU_PUBLIC_URL``, else the request's scheme and host, else the loopback default."""
    if settings.TSUNAGU_PUBLIC_URL:
        return str(settings.TSUNAGU_PUBLIC_URL)
    if request is not None:
        return str(request.build_absolute_uri("/")).rstrip("/")
    return "http://127.0.0.1:8000"


def unsubscribe_token(key: str) -> str:
    return signing.dumps(key, salt=_SALT, compress=False)


def unsubscribe_key(token: str) -> str | None:
    """The delivery key a token names, or None when it was not made by us."""
    try:
        value = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, str) else None


def links_for(*, key: str, topic: str, base_url: str = "") -> dict[str, str]:
    """``unsubscribe_url`` and ``preferences_url`` for templates and headers. Transactional messages have
    no unsubscribe link (a receipt is not a subscription) but templates may still print the variable."""
    base = (base_url or public_base()).rstrip("/")
    if topic == "transactional":
        return {"unsubscribe_url": "", "preferences_url": ""}
    url = f"{base}/m/u/{unsubscribe_token(key)}"
    return {"unsubscribe_url": url, "preferences_url": url}
