"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291), through
``pywebpush``.

Key formats (what ``vapid_keys_generate`` returns and ``clean_config`` accepts):

- ``vapid_private_key``: the P-256 private scalar, 32 bytes, base64url without padding (43 characters), the
  form ``web-push generate-vapid-keys`` prints. A PEM private key (PKCS#8 or SEC1 "EC PRIVATE KEY") is
  accepted too and converted to that form.
- ``vapid_public_key``: the uncompressed P-256 point, 65 bytes, base64url without padding (87 characters):
  the ``applicationServerKey`` the browser subscribes with. It must belong to the private key.
- ``subject``: a ``mailto:`` address or an ``https:`` URL where the push service can reach the sender.

The subscription travels in ``message.extra["subscription"]`` (``{"endpoint", "keys": {"p256dh",
"auth"}}``, as ``PushSubscription.toJSON()`` gives it). Push endpoints are supplied by browsers, that is by
anyone who can load the subscribe page, so they go through ``netguard`` like outbound webhooks.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush
from requests.structures import CaseInsensitiveDict

import tsunagu
from tsunagu.messaging import netguard
from tsunagu.messaging.channels.base import ChannelBase, DeliveryError, Message, Outcome

# Push services take at most 4096 bytes of encrypted body; aes128gcm adds a 86-byte header, a 16-byte tag and
# a 1-byte delimiter to the JSON.
MAX_PLAINTEXT = 4096 - 86 - 16 - 1
TIMEOUT = 10.0
USER_AGENT = f"tsunagu/{tsunagu.__version__} (webpush)"
TTL = 24 * 60 * 60  # a notification more than a day late is noise: let the push service drop it
URGENCY = {"transactional": "high", "service": "normal", "marketing": "low"}  # RFC 8030 section 5.3


class SubscriptionExpired(DeliveryError):
    """The push service no longer knows the subscription (404/410): mark it expired, do not retry it."""

    expired = True

    def __init__(self, reason: str = "subscription expired") -> None:
        super().__init__(reason, permanent=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    """Strict base64url, padded or not (standard base64's + and / accepted, as py_vapid does)."""
    text = text.rstrip("=").replace("+", "-").replace("/", "_")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _public_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def vapid_keys_generate() -> tuple[str, str]:
    """A new VAPID key pair: (private key, public key), both base64url without padding (see above)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _b64url(key.private_numbers().private_value.to_bytes(32, "big")), _b64url(_public_point(key))


def _load_private(text: str) -> ec.EllipticCurvePrivateKey:
    """The private key from base64url raw or PEM; ``ValueError`` with a reason otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a readable PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("must be a P-256 (prime256v1) EC key")
        return key
    try:
        raw = _b64url_decode(text)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url (the 32-byte raw private key) or a PEM private key") from None
    if len(raw) != 32:
        raise ValueError(f"must be the 32-byte raw private key in base64url (this one is {len(raw)} bytes)")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError:
        raise ValueError("is not a valid P-256 private key") from None


def _subject_ok(subject: str) -> bool:
    if subject.startswith("mailto:"):
        local, _, domain = subject[len("mailto:") :].partition("@")
        return bool(local) and ("." in domain.strip(".") or domain == "localhost") and " " not in subject
    parts = urlsplit(subject)
    # Push services (and py_vapid) want a real host name: a dot in it, or localhost.
    return parts.scheme == "https" and bool(parts.hostname) and (
        "." in (parts.hostname or "") or parts.hostname == "localhost"
    )


class _GuardedSession(requests.Session):
    """What pywebpush posts with: the request goes out through ``netguard`` (endpoint checked after DNS
    resolution, connection pinned to the checked address) instead of requests' own connection pool."""

    def __init__(self, *, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        headers = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        headers["User-Agent"] = USER_AGENT
        body = data if isinstance(data, bytes) else (data or "").encode()
        answer = netguard.post(
            url.decode() if isinstance(url, bytes) else url, body=body, headers=headers,
            allow_private=self.allow_private, timeout=float(kwargs.get("timeout") or TIMEOUT), max_redirects=0,
        )
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = answer.body
        response.url = answer.url
        response.encoding = "utf-8"
        return response


class Channel(ChannelBase):
    type = "webpush"
    required_fields = ("vapid_private_key", "vapid_public_key", "subject")
    secret_fields = ("vapid_private_key",)
    variant_fields = ("title", "body", "url", "icon")
    variant_required = (("title",), ("body",))

    def __init__(self, config: dict[str, Any], *, allow_private: bool = False) -> None:
        super().__init__(config, allow_private=allow_private)
        self._vapid: Vapid | None = None
        self._session: _GuardedSession | None = None

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check the key pair and the subject; a PEM private key is stored in its base64url raw form."""
        from tsunagu.core.errors import ValidationError

        cleaned = super().clean_config(config)
        for key in cls.required_fields:
            if not isinstance(cleaned[key], str):
                raise ValidationError("must be a string", field=f"config.{key}")
        try:
            private = _load_private(cleaned["vapid_private_key"])
        except ValueError as exc:
            raise ValidationError(str(exc), field="config.vapid_private_key") from None
        public_text = cleaned["vapid_public_key"].strip()
        try:
            public = _b64url_decode(public_text)
        except (binascii.Error, ValueError):
            public = b""
        if len(public) != 65 or public[0] != 4:
            raise ValidationError(
                "must be the 65-byte uncompressed P-256 public key in base64url (87 characters)",
                field="config.vapid_public_key",
            )
        if public != _public_point(private):
            raise ValidationError("does not belong to vapid_private_key", field="config.vapid_public_key")
        subject = cleaned["subject"].strip()
        if not _subject_ok(subject):
            raise ValidationError(
                "must be a mailto: address or an https: URL (mailto:ops@example.com)", field="config.subject"
            )
        cleaned["vapid_private_key"] = _b64url(private.private_numbers().private_value.to_bytes(32, "big"))
        cleaned["vapid_public_key"] = _b64url(public)
        cleaned["subject"] = subject
        return cleaned

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        """Title and body required, ``url`` and ``icon`` absolute http(s) or site-relative, and the whole
        notification small enough for a push message."""
        finished: dict[str, Any] = {}
        for name in cls.variant_fields:
            value = str(content.get(name) or "").strip()
            if name in ("title", "body") and not value:
                raise ValueError(f"{name} is empty after rendering")
            if value and name in ("url", "icon"):
                scheme = urlsplit(value).scheme
                if scheme not in ("http", "https") and not (value.startswith("/") and not value.startswith("//")):
                    raise ValueError(f"{name} must be an http(s) URL or a path starting with /: {value}")
            finished[name] = value
        size = len(_payload(finished, key="k" * 64))
        if size > MAX_PLAINTEXT:
            raise ValueError(f"the notification is {size} bytes; push services accept at most {MAX_PLAINTEXT}")
        return finished

    def _vapid_key(self) -> Vapid:
        if self._vapid is None:
            # A Vapid object, not the string: pywebpush would read a string naming an existing file as a path.
            self._vapid = Vapid(_load_private(str(self.config["vapid_private_key"])))
        return self._vapid

    def send(self, message: Message) -> Outcome:
        """Encrypt the notification for the subscription and post it to its push service. 201 is "sent"
        (the push service took it; it says nothing of the device); 404/410 raise ``SubscriptionExpired``;
        429, 5xx and network failures are temporary; other 4xx (a VAPID key the subscription was not made
        with, a payload too large) are permanent."""
        subscription = message.extra.get("subscription")
        problem = _subscription_problem(subscription)
        if problem:
            raise DeliveryError(f"invalid push subscription: {problem}", permanent=True)
        assert isinstance(subscription, dict)
        data = _payload(message.content, key=message.key)
        if len(data) > MAX_PLAINTEXT:
            raise DeliveryError(f"the notification is {len(data)} bytes, over {MAX_PLAINTEXT}", permanent=True)
        if self._session is None:
            self._session = _GuardedSession(allow_private=self.allow_private)
        try:
            vapid = self._vapid_key()
        except ValueError as exc:  # clean_config checks it; a config edited behind its back may not be
            raise DeliveryError(f"the channel's vapid_private_key {exc}", permanent=True) from None
        headers = {"Urgency": URGENCY.get(message.topic, "normal")}
        try:
            response = webpush(
                subscription_info=subscription,
                data=data.decode(),
                vapid_private_key=vapid,
                vapid_claims={"sub": str(self.config["subject"])},  # pywebpush adds aud and exp to this dict
                ttl=TTL,
                headers=dict(headers),
                timeout=TIMEOUT,
                requests_session=self._session,
            )
        except WebPushException as exc:
            raise _error(exc) from None
        except netguard.AddressRefused as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except netguard.TooManyRedirects:  # push services answer, they do not redirect
            raise DeliveryError("the push service answered with a redirect", permanent=True) from None
        except VapidException as exc:  # a subject the push service would refuse too
            raise DeliveryError(f"VAPID: {exc}", permanent=True) from None
        except ValueError as exc:  # an endpoint that is not an http(s) URL, undecodable keys
            raise DeliveryError(f"invalid push subscription: {exc}", permanent=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(
                f"could not reach the push service: {exc or type(exc).__name__}", permanent=False
            ) from None
        assert isinstance(response, requests.Response)
        return Outcome(
            status="sent",
            provider_id=response.headers.get("location", ""),
            headers={**headers, "TTL": str(TTL), "Content-Encoding": "aes128gcm"},
            raw=data,
            detail=f"HTTP {response.status_code} from {urlsplit(subscription['endpoint']).netloc}",
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _subscription_problem(subscription: Any) -> str:
    """What makes ``subscription`` unusable, checked here because pywebpush fails on some with an IndexError."""
    if not isinstance(subscription, dict) or not isinstance(subscription.get("endpoint"), str):
        return 'none given, or no endpoint: {"endpoint", "keys": {"p256dh", "auth"}} expected'
    parts = urlsplit(subscription["endpoint"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the endpoint is not an http(s) URL: {subscription['endpoint'][:100]}"
    keys = subscription.get("keys")
    if not isinstance(keys, dict):
        return "no keys"
    for name, size in (("p256dh", 65), ("auth", 16)):
        try:
            value = _b64url_decode(str(keys.get(name) or ""))
        except (binascii.Error, ValueError):
            value = b""
        if len(value) != size:
            return f"keys.{name} is not {size} bytes in base64url"
    return ""


def _payload(content: dict[str, Any], *, key: str) -> bytes:
    """The JSON the service worker reads: title, body, url, icon, and the delivery key as the notification's
    tag, so that a message delivered twice is shown once."""
    fields = {name: str(content.get(name) or "") for name in ("title", "body", "url", "icon")}
    return json.dumps({**fields, "key": key}, ensure_ascii=False, separators=(",", ":")).encode()


def _error(exc: WebPushException) -> DeliveryError:
    response = exc.response
    if response is None:  # pywebpush refused the subscription before sending
        return DeliveryError(f"invalid push subscription: {exc.message}", permanent=True)
    status = exc.status_code or 0
    text = getattr(response, "text", "") or ""
    reason = f"HTTP {status} {getattr(response, 'reason', '') or ''}".strip() + (f": {text[:200]}" if text else "")
    if status in (404, 410):
        return SubscriptionExpired()
    if status == 429 or status >= 500:
        return DeliveryError(reason, permanent=False, retry_after=netguard.retry_after_seconds(exc.retry_after))
    return DeliveryError(reason, permanent=True)
