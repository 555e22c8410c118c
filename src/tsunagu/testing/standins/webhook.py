"""A webhook receiver on loopback that verifies Standard Webhooks signatures with the ``standardwebhooks``
package (the verifier receivers use) and answers as the test directs.

Usage::

    with WebhookReceiver() as hook:                  # hook.secret: a fresh whsec_ secret
        channel = Channel({"url": hook.url("/orders"), "secret": hook.secret}, allow_private=True)
        hook.answer_next(500)                         # then 200, the default
        hook.answer_next(302, location=other.url())   # a redirect
        got = hook.wait_for(1)[0]
        assert got.payload == {...} and got.webhook_id == message.key

A request whose signature does not verify (or is too old or too new) is answered 401 and listed in
``rejected``; one that verifies is listed in ``received`` with the status it was answered. ``host`` binds
another loopback address (``127.0.0.2``) for tests that need two hosts; ``tls`` (a server-side
``ssl.SSLContext``) serves HTTPS.
"""

from __future__ import annotations

import base64
import os
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


def secret_generate() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    payload: Any  # the body as parsed by the verifier
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])


@dataclass
class Rejected:
    path: str
    headers: dict[str, str]
    body: bytes
    reason: str


@dataclass
class _Answer:
    status: int
    retry_after: int | None = None
    location: str | None = None
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = receiver._handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.send_response(answer.status)
        if answer.retry_after is not None:
            self.send_header("Retry-After", str(answer.retry_after))
        if answer.location is not None:
            self.send_header("Location", answer.location)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class WebhookReceiver:
    """The stand-in; a context manager serving on ``host`` and an ephemeral port."""

    def __init__(
        self, secret: str | None = None, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.secret = secret or secret_generate()
        self._verifier = Webhook(self.secret)
        self._server = _Server((host, 0), _Handler)
        if tls is not None:  # a server-side context with the certificate the test made
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._server.receiver = self
        self.host = host
        self.port = int(self._server.server_address[1])
        self.received: list[Received] = []
        self.rejected: list[Rejected] = []
        self._answers: deque[_Answer] = deque()
        self._changed = threading.Condition()
        self._go = threading.Event()
        self._go.set()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-standin", daemon=True
        )

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def url(self, path: str = "/hook", *, host: str | None = None) -> str:
        """The URL of ``path`` here; ``host`` puts another name in it (one the test makes resolve here)."""
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def answer_next(
        self, status: int, *, retry_after: int | None = None, location: str | None = None, body: bytes = b""
    ) -> None:
        """Answer the next verified request with ``status`` (queued, first in first out; 200 when empty)."""
        self._answers.append(_Answer(status, retry_after, location, body))

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Received]:
        """The requests received once there are at least ``count``; ``AssertionError`` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.received)} webhooks received, {count} expected; rejected: {self.rejected}"
                    )
                self._changed.wait(left)
            return list(self.received)

    def hold(self) -> None:
        """Keep answers back (the request is already recorded as received) until ``release``: for tests that
        kill a sender while it waits for the answer."""
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def webhook_ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        try:
            payload = self._verifier.verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self._changed:
                self.rejected.append(Rejected(path, headers, body, f"{type(exc).__name__}: {exc}"))
                self._changed.notify_all()
            return _Answer(401, body=b"signature does not verify")
        answer = self._answers.popleft() if self._answers else _Answer(200, body=b"ok")
        with self._changed:
            self.received.append(Received(path, headers, body, payload, answer.status))
            self._changed.notify_all()
        self._go.wait(60)
        return answer
