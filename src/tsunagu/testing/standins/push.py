"""A web push service on loopback that checks what RFC 8030/8291/8292 require and decrypts the payload.

Usage::

    with PushService() as push:
        sub = push.subscribe(application_server_key=vapid_public_key)  # what a browser would hold
        channel.send(Message(..., extra={"subscription": sub.info}))   # allow_private=True: it is loopback
        got = push.wait_for(1)[0]
        assert got.notification["title"] == "..."  # the decrypted JSON
        push.expire(sub)            # from now on 410 Gone for this subscription
        push.answer_next(429, retry_after=30)   # the next push, whoever it is for

Each push is checked as a push service does: ``POST /push/<token>`` for a known subscription (else 404),
a ``TTL`` header, ``Urgency`` one of RFC 8030's values when present, ``Content-Encoding: aes128gcm``, a
body of at most 4096 bytes (else 413), and ``Authorization: vapid t=<JWT>, k=<public key>`` where the JWT is
ES256-signed by ``k``, ``aud`` is this service's origin, ``exp`` is in the future and within 24 hours,
``sub`` a ``mailto:`` or ``https:`` contact, and ``k`` the key the subscription was made with (else 401/403).
A push that fails a check is answered as a push service would and listed in ``rejected`` with the reason;
one that passes is decrypted with the subscription's private key and auth secret (``http_ece``) and listed
in ``received`` with the status it was answered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

URGENCIES = ("very-low", "low", "normal", "high")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """A browser's side of a subscription: ``info`` is what ``PushSubscription.toJSON()`` gives the site."""

    token: str
    info: dict[str, Any]
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: str | None


@dataclass
class Push:
    token: str
    headers: dict[str, str]  # lower-cased names
    claims: dict[str, Any]  # the VAPID JWT's claims
    vapid_key: str  # the k= of the Authorization header
    ttl: int
    urgency: str
    body: bytes  # as received, encrypted
    plaintext: bytes
    answered: int = 0

    @property
    def notification(self) -> Any:
        return json.loads(self.plaintext)


@dataclass
class Rejected:
    path: str
    status: int
    reason: str


@dataclass
class _Answer:
    status: int
    retry_after: int | None = None
    location: str | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        service = self.server.service
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra = service._handle(self.path, headers, body)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: PushService


class PushService:
    """The stand-in; a context manager that serves on ``127.0.0.1`` and an ephemeral port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.service = self
        self.origin = f"http://{host}:{self._server.server_address[1]}"
        self.subscriptions: dict[str, Subscription] = {}
        self.expired: set[str] = set()
        self.received: list[Push] = []
        self.rejected: list[Rejected] = []
        self._answers: deque[_Answer] = deque()
        self._changed = threading.Condition()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="push-standin", daemon=True
        )

    def __enter__(self) -> PushService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- what the test directs ------------------------------------------------------------------------

    def subscribe(self, *, application_server_key: str | None = None) -> Subscription:
        """A new subscription: a P-256 key pair and a 16-byte auth secret, as a browser makes them. With
        ``application_server_key``, pushes signed by another VAPID key are refused with 403."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        token = uuid.uuid4().hex
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        info = {
            "endpoint": f"{self.origin}/push/{token}",
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(auth)},
        }
        sub = Subscription(token, info, key, auth, application_server_key)
        self.subscriptions[token] = sub
        return sub

    def expire(self, sub: Subscription) -> None:
        """The user unsubscribed or the browser dropped it: 410 Gone from now on."""
        self.expired.add(sub.token)

    def answer_next(self, status: int, *, retry_after: int | None = None, location: str | None = None) -> None:
        """Answer the next push that passes the checks with ``status`` (queued, first in first out)."""
        self._answers.append(_Answer(status, retry_after, location))

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Push]:
        """The pushes received once there are at least ``count``; ``AssertionError`` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.received)} pushes received, {count} expected; rejected: {self.rejected}"
                    )
                self._changed.wait(left)
            return list(self.received)

    # --- the service ----------------------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        match = re.fullmatch(r"/push/([0-9a-f]{32})", path)
        sub = self.subscriptions.get(match.group(1)) if match else None
        if sub is None:
            return self._reject(path, 404, "no such subscription")
        if sub.token in self.expired:
            return self._reject(path, 410, "subscription expired")
        ttl_header = headers.get("ttl", "")
        if not ttl_header.isdigit():
            return self._reject(path, 400, f"TTL header missing or not a number: {ttl_header!r}")
        urgency = headers.get("urgency", "normal")
        if urgency not in URGENCIES:
            return self._reject(path, 400, f"Urgency {urgency!r} is not one of {URGENCIES}")
        try:
            claims, key = self._vapid(headers.get("authorization", ""), sub)
        except _Refused as exc:
            return self._reject(path, exc.status, exc.reason)
        if headers.get("content-encoding") != "aes128gcm":
            return self._reject(path, 400, f"Content-Encoding {headers.get('content-encoding')!r}, not aes128gcm")
        if len(body) > 4096:
            return self._reject(path, 413, f"payload of {len(body)} bytes, over 4096")
        try:
            plaintext = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth_secret)
        except Exception as exc:  # any failure to decrypt is the sender's encryption at fault
            return self._reject(path, 400, f"payload does not decrypt: {exc!r}")
        answer = self._answers.popleft() if self._answers else _Answer(201)
        push = Push(sub.token, headers, claims, key, int(ttl_header), urgency, body, plaintext, answer.status)
        with self._changed:
            self.received.append(push)
            self._changed.notify_all()
        extra: dict[str, str] = {}
        if answer.location is not None:
            extra["Location"] = answer.location
        elif answer.status == 201:
            extra["Location"] = f"{self.origin}/message/{uuid.uuid4().hex}"
        if answer.retry_after is not None:
            extra["Retry-After"] = str(answer.retry_after)
        return answer.status, extra

    def _reject(self, path: str, status: int, reason: str) -> tuple[int, dict[str, str]]:
        with self._changed:
            self.rejected.append(Rejected(path, status, reason))
            self._changed.notify_all()
        return status, {}

    def _vapid(self, authorization: str, sub: Subscription) -> tuple[dict[str, Any], str]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, f"Authorization is not 'vapid t=..., k=...': {authorization[:40]!r}")
        values = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = values.get("t", ""), values.get("k", "")
        parts = token.split(".")
        if len(parts) != 3 or not key:
            raise _Refused(401, "VAPID t= is not a JWT or k= is missing")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        except ValueError as exc:
            raise _Refused(401, f"VAPID token unreadable: {exc}") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise _Refused(401, f"VAPID JWT is not ES256: {header}")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _Refused(401, "VAPID JWT signature does not verify with k") from None
        if claims.get("aud") != self.origin:
            raise _Refused(401, f"VAPID aud {claims.get('aud')!r} is not {self.origin!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or not time.time() < exp <= time.time() + 24 * 3600:
            raise _Refused(401, f"VAPID exp {exp!r} is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise _Refused(401, f"VAPID sub {claims.get('sub')!r} is not a mailto: or https: contact")
        if sub.application_server_key is not None and key != sub.application_server_key:
            raise _Refused(403, "VAPID key is not the one the subscription was made with")
        return claims, key


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
