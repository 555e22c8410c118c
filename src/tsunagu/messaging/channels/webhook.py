"""Outbound webhook: the rendered JSON payload POSTed to a URL, signed per Standard Webhooks.

Each request carries ``webhook-id`` (the delivery's idempotency key, so a retry is recognisable as the same
message), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``
with the channel's ``whsec_`` secret), computed with the ``standardwebhooks`` package that receivers verify
with. The URL is reached through ``netguard``: private, loopback and link-local addresses are refused after
DNS resolution and on every redirect, unless the workspace allows private webhooks.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

import tsunagu
from tsunagu.core import clock
from tsunagu.messaging import netguard
from tsunagu.messaging.channels.base import ChannelBase, DeliveryError, Message, Outcome

SECRET_PREFIX = "whsec_"
USER_AGENT = f"tsunagu/{tsunagu.__version__} (webhook)"
TIMEOUT = 10.0  # seconds per connect and per read; a receiver that needs longer should answer 202 first
MAX_REDIRECTS = 3


def secret_generate() -> str:
    """A new signing secret: ``whsec_`` and 32 random bytes in base64, the Standard Webhooks form."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def _secret_bytes(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


class Channel(ChannelBase):
    type = "webhook"
    required_fields = ("url",)
    optional_fields = ("secret",)
    secret_fields = ("secret",)
    variant_fields = ("payload",)
    variant_required = (("payload",),)

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check the URL and the secret; generate a secret when none is given, so that every webhook is
        signed. The returned config holds it: show it to the user once, it is never returned again."""
        from tsunagu.core.errors import ValidationError

        cleaned = super().clean_config(config)
        url = cleaned["url"]
        if not isinstance(url, str):
            raise ValidationError("must be a string", field="config.url")
        url = url.strip()
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValidationError(f"is not a valid URL: {exc}", field="config.url") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("must be an http:// or https:// URL with a host", field="config.url")
        if parts.username or parts.password:
            raise ValidationError("must not contain a user name or password", field="config.url")
        cleaned["url"] = url
        secret = cleaned.get("secret")
        if secret in (None, ""):
            cleaned["secret"] = secret_generate()
        else:
            if not isinstance(secret, str):
                raise ValidationError("must be a string", field="config.secret")
            try:
                key = _secret_bytes(secret.strip())
            except (binascii.Error, ValueError):
                raise ValidationError(
                    "must be whsec_ followed by base64 (as Standard Webhooks secrets are)", field="config.secret"
                ) from None
            if not 24 <= len(key) <= 64:
                raise ValidationError(
                    f"must decode to 24 to 64 random bytes (this one has {len(key)})", field="config.secret"
                )
            cleaned["secret"] = secret.strip()
        return cleaned

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        """Parse the rendered payload template as JSON: ``{"payload": <the value>, "text": <compact JSON>}``,
        ``text`` being the exact body sent and archived."""
        rendered = content.get("payload")
        if not isinstance(rendered, str):
            raise ValueError("payload is not valid JSON after rendering: it is empty")
        try:
            value = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload is not valid JSON after rendering: {exc}") from None
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return {"payload": value, "text": text}

    @classmethod
    def summary(cls, content: dict[str, Any]) -> tuple[str, str]:
        return "", str(content.get("text", ""))

    def send(self, message: Message) -> Outcome:
        """POST the finished payload to ``message.address`` (the channel's URL when empty). 2xx is delivery;
        410 and other 4xx (but 408 and 429) are permanent; 408, 429, 5xx and network failures are temporary,
        with the receiver's ``Retry-After``."""
        url = message.address or str(self.config["url"])
        text = message.content.get("text")
        if not isinstance(text, str):
            text = self.finish(message.content)["text"]
        body = text.encode("utf-8")
        signer = Webhook(str(self.config["secret"]))
        timestamp = clock.now().replace(microsecond=0)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message.key,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signer.sign(msg_id=message.key, timestamp=timestamp, data=text),
        }
        try:
            response = netguard.post(
                url, body=body, headers=headers, allow_private=self.allow_private, timeout=TIMEOUT,
                max_redirects=MAX_REDIRECTS, max_body=4096,
            )
        except netguard.AddressRefused as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except netguard.TooManyRedirects as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except ValueError as exc:  # a redirect to a non-HTTP location
            raise DeliveryError(f"refused: {exc}", permanent=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"could not reach {url}: {exc or type(exc).__name__}", permanent=False) from None
        status = response.status
        if 200 <= status < 300:
            return Outcome(
                status="delivered", provider_id=message.key, headers=headers, raw=body,
                detail=f"HTTP {status} from {response.url}",
            )
        snippet = response.body[:200].decode("utf-8", "replace").strip()
        reason = f"HTTP {status} {response.reason}".strip() + (f": {snippet}" if snippet else "")
        if status == 410:
            raise DeliveryError(f"{reason} (the receiver says this webhook is gone)", permanent=True)
        if status in (408, 429) or status >= 500:
            raise DeliveryError(
                reason, permanent=False, retry_after=netguard.retry_after_seconds(response.headers.get("retry-after"))
            )
        # Other 4xx, and 3xx that cannot be followed (no Location, 304): sending again changes nothing.
        raise DeliveryError(reason, permanent=True)
