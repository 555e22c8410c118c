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


_PREFERENCES_SALT = "tsunagu.messaging.preferences"


def preferences_token(customer_id: int) -> str:
    return signing.dumps(customer_id, salt=_PREFERENCES_SALT, compress=False)


def preferences_customer(token: str) -> int | None:
    """The customer id a preference-page token names, or None when it was not made by us."""
    try:
        value = signing.loads(token, salt=_PREFERENCES_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def links_for(*, key: str, topic: str, base_url: str = "", customer_id: int | None = None) -> dict[str, str]:
    """``unsubscribe_url`` and ``preferences_url`` for templates and headers. Transactional messages have
    no unsubscribe link (a receipt is not a subscription) but templates may still print the variable; the
    preference page (``/m/p/<token>``, one per customer) is linked from every message to a known customer,
    else it falls back to the message's unsubscribe page."""
    base = (base_url or public_base()).rstrip("/")
    unsubscribe = "" if topic == "transactional" else f"{base}/m/u/{unsubscribe_token(key)}"
    preferences = f"{base}/m/p/{preferences_token(customer_id)}" if customer_id is not None else unsubscribe
    return {"unsubscribe_url": unsubscribe, "preferences_url": preferences}
