"""Links tsunagu puts in messages (one-click unsubscribe, preferences) and the base URL they are built on.

A token is what it names — the delivery key (unsubscribe) or the customer id (preference page) — and an
HMAC of it under the secret key, each purpose its own, so a link names its delivery or customer without a
database lookup and cannot be forged for someone else. Tokens made with Django's signing (links in
messages sent before) stay valid.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.core import signing

_SALT = "tsunagu.messaging.unsubscribe"
# Bits of HMAC-SHA256 kept in a link: 128, as many as a forger has to guess.
_SIGNATURE_BYTES = 16


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> Any:
    # The key of messaging's links, derived from the site's secret key once (Django's signing derives it
    # again for every token: a third of its cost), keyed into an HMAC that each signature copies. Not
    # ``hmac.digest``: it lets go of the GIL, and in a worker whose SMTP threads wait for it each token
    # then waits for them.
    key = hashlib.sha256(b"tsunagu.messaging.links\x00" + secret.encode("utf-8")).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(secret: str, purpose: str, parts: tuple[str, ...]) -> str:
    mac = _keyed(secret).copy()
    mac.update("\x00".join((purpose, *parts)).encode("utf-8"))
    return base64.urlsafe_b64encode(mac.digest()[:_SIGNATURE_BYTES]).rstrip(b"=").decode("ascii")


def token_sign(purpose: str, *parts: str) -> str:
    """The signature (22 URL-safe characters) of ``parts`` for ``purpose`` ("u" unsubscribe, "o" open,
    "c" click: a signature for one cannot be used as another)."""
    return _mac(settings.SECRET_KEY, purpose, parts)


def token_verify(signature: str, purpose: str, *parts: str) -> bool:
    """Whether ``signature`` is ``token_sign(purpose, *parts)`` under the secret key or one of its
    fallbacks (``SECRET_KEY_FALLBACKS``: links keep working through a key rotation)."""
    for secret in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        if hmac.compare_digest(signature, _mac(secret, purpose, parts)):
            return True
    return False


def public_base(request: Any = None) -> str:
    """``TSUNAGU_PUBLIC_URL``, else the request's scheme and host, else the loopback default."""
    if settings.TSUNAGU_PUBLIC_URL:
        return str(settings.TSUNAGU_PUBLIC_URL)
    if request is not None:
        return str(request.build_absolute_uri("/")).rstrip("/")
    return "http://127.0.0.1:8000"


def unsubscribe_token(key: str) -> str:
    return f"{key}.{token_sign('u', key)}"


def unsubscribe_key(token: str) -> str | None:
    """The delivery key a token names, or None when it was not made by us."""
    if ":" not in token:  # ours: "key.signature"
        key, dot, signature = token.rpartition(".")
        return key if dot and key and token_verify(signature, "u", key) else None
    try:  # a token of django.core.signing: "payload:signature"
        value = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return value if isinstance(value, str) else None


_PREFERENCES_SALT = "tsunagu.messaging.preferences"


def preferences_token(customer_id: int) -> str:
    """``<id>.<signature>``: one HMAC from the derived key, like the unsubscribe token (Django's signing,
    which earlier tokens used, cost ~5% of a worker's time per email: it derives its key for every token)."""
    text = str(customer_id)
    return f"{text}.{token_sign('p', text)}"


def preferences_customer(token: str) -> int | None:
    """The customer id a preference-page token names, or None when it was not made by us."""
    if ":" not in token:  # ours: "id.signature"
        text, dot, signature = token.rpartition(".")
        if not (dot and text.isascii() and text.isdigit() and token_verify(signature, "p", text)):
            return None
        return int(text)
    try:  # a token of django.core.signing, in messages sent before: "payload:signature"
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
