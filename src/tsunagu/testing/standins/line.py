"""A loopback stand-in of the LINE Messaging API (push and multicast), checking requests as LINE documents
them, and a signer of webhooks.

Usage::

    with LineStandIn() as line:                          # serves on 127.0.0.1, a free port
        config = line.channel_config()                   # line channel config pointing at it
        line.reply(line.permanent())                     # the next request: 400 "Failed to send messages"
        line.reply(line.temporary(500, accept=True))     # delivered, but the answer is a 500 (lost answer)
        ...                                              # send through tsunagu / the SDK
        line.wait_for_deliveries(1)                      # poll with a deadline
        line.delivered(retry_key)                        # how many times a retry key was delivered (0 or 1)
        line.send_webhook(url, [follow_event("U…")])     # POST a signed webhook to tsunagu

``POST /v2/bot/message/push`` and ``/v2/bot/message/multicast``: ``Authorization: Bearer <channel access
token>``, a JSON body (``to``: a user id, or 1 to 500 of them for multicast; ``messages``: 1 to 5 message
objects of known types with their required fields), ``X-Line-Retry-Key`` a UUID when present. A retry key
that was accepted before gets ``409`` (``x-line-accepted-request-id`` names the first request), as LINE
answers; an accepted request gets ``200`` with ``x-line-request-id`` and ``sentMessages`` (push) or ``{}``
(multicast). Every request is in ``requests``; every accepted one in ``deliveries`` — what a customer
actually received, which crash tests count per retry key. ``hold()`` keeps answers back until
``release()`` (the delivery is already recorded), for tests that kill a worker mid-request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
USER_ID = re.compile(r"^U[0-9a-f]{32}$")
PUSH_TARGET = re.compile(r"^[UCR][0-9a-f]{32}$")  # a user, a group chat or a multi-person chat
MESSAGE_TYPES = {  # type -> required fields
    "text": ("text",),
    "sticker": ("packageId", "stickerId"),
    "image": ("originalContentUrl", "previewImageUrl"),
    "video": ("originalContentUrl", "previewImageUrl"),
    "audio": ("originalContentUrl", "duration"),
    "location": ("title", "address", "latitude", "longitude"),
    "imagemap": ("baseUrl", "altText", "baseSize", "actions"),
    "template": ("altText", "template"),
    "flex": ("altText", "contents"),
}
_ULID = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def user_id() -> str:
    """A LINE user id as LINE issues them (``U`` and 32 hex digits)."""
    return "U" + secrets.token_hex(16)


def line_signature(channel_secret: str, body: bytes) -> str:
    """``X-Line-Signature`` of a webhook body: base64 of HMAC-SHA256 keyed with the channel secret."""
    return base64.b64encode(hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()).decode()


def _event(type_: str, user: str, *, event_id: str | None = None, timestamp_ms: int | None = None,
           redelivery: bool = False, reply_token: bool = True, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": type_,
        "mode": "active",
        "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id or "01" + "".join(secrets.choice(_ULID) for _ in range(24)),
        "deliveryContext": {"isRedelivery": redelivery},
        **fields,
    }
    if reply_token:
        event["replyToken"] = secrets.token_hex(16)
    return event


def follow_event(user: str, *, unblocked: bool = False, **kw: Any) -> dict[str, Any]:
    return _event("follow", user, follow={"isUnblocked": unblocked}, **kw)


def unfollow_event(user: str, **kw: Any) -> dict[str, Any]:
    return _event("unfollow", user, reply_token=False, **kw)


def text_message_event(user: str, text: str, *, message_id: str | None = None, **kw: Any) -> dict[str, Any]:
    message = {"type": "text", "id": message_id or str(secrets.randbelow(10**18)), "text": text,
               "quoteToken": secrets.token_urlsafe(24)}
    return _event("message", user, message=message, **kw)


def postback_event(user: str, data: str, *, params: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    postback: dict[str, Any] = {"data": data}
    if params:
        postback["params"] = params
    return _event("postback", user, postback=postback, **kw)


def webhook_body(events: list[dict[str, Any]], *, destination: str | None = None) -> bytes:
    return json.dumps({"destination": destination or user_id(), "events": events}, ensure_ascii=False).encode()


def post_webhook(url: str, body: bytes, channel_secret: str, *, signature: str | None = None,
                 timeout: float = 10.0) -> tuple[int, bytes]:
    """POST a webhook body to ``url`` as LINE does (signed, or with the ``signature`` given; ``""`` for
    none); (status, body) — an HTTP error status is returned, not raised."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "LineBotWebhook/2.0"}
    sig = line_signature(channel_secret, body) if signature is None else signature
    if sig:
        headers["X-Line-Signature"] = sig
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Reply:
    """How to answer one request. ``accept``: deliver it (and remember its retry key) even though the answer
    is an error — LINE took the message but the answer was lost."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    accept: bool = False


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw bytes when it is not JSON
    status: int = 0


@dataclass
class Delivery:
    endpoint: str  # "push" | "multicast"
    to: list[str]
    messages: list[dict[str, Any]]
    retry_key: str | None
    request_id: str


class LineStandIn:
    def __init__(self, *, channel_access_token: str | None = None, channel_secret: str | None = None) -> None:
        self.channel_access_token = channel_access_token or secrets.token_urlsafe(48)
        self.channel_secret = channel_secret or secrets.token_hex(16)
        self.requests: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        self._accepted: dict[str, Delivery] = {}
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self) -> LineStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                stand_in._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="line-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LineStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def channel_config(self) -> dict[str, str]:
        """A line channel config that sends through this stand-in (started)."""
        return {**self.channel_config_offline(), "base_url": self.url}

    def channel_config_offline(self) -> dict[str, str]:
        return {"channel_access_token": self.channel_access_token, "channel_secret": self.channel_secret}

    # -- what the test directs -----------------------------------------------------------------------

    def reply(self, *replies: Reply) -> None:
        """Answer the next well-formed requests with these, in order; later ones are answered normally."""
        with self._lock:
            self._replies.extend(replies)

    @staticmethod
    def permanent(message: str = "Failed to send messages", *, details: list[dict[str, str]] | None = None,
                  status: int = 400) -> Reply:
        body: dict[str, Any] = {"message": message}
        if details:
            body["details"] = details
        return Reply(status, body)

    @staticmethod
    def temporary(status: int = 500, *, retry_after: float | None = None, accept: bool = False) -> Reply:
        message = "The API rate limit has been exceeded. Try again later." if status == 429 else "Internal error"
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return Reply(status, {"message": message}, headers, accept=accept)

    def hold(self) -> None:
        """Keep answers back until ``release()``; requests are still received, checked and delivered."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def delivered(self, retry_key: str) -> int:
        """How many times messages with this retry key reached customers."""
        return sum(1 for d in self.deliveries if d.retry_key == retry_key)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        self._wait(lambda: len(self.requests) >= count, timeout, f"{count} requests")
        return self.requests

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        self._wait(lambda: len(self.deliveries) >= count, timeout, f"{count} deliveries")
        return self.deliveries

    def _wait(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"LINE stand-in: no {what} within {timeout}s "
                                     f"(got {len(self.requests)} requests, {len(self.deliveries)} deliveries)")
            time.sleep(0.01)

    # -- webhooks to tsunagu -------------------------------------------------------------------------

    def webhook(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """A webhook body and its headers (lower-cased), signed with this channel's secret."""
        body = webhook_body(events)
        return body, {"content-type": "application/json; charset=utf-8",
                      "x-line-signature": line_signature(self.channel_secret, body)}

    def send_webhook(self, url: str, events: list[dict[str, Any]], *, signature: str | None = None
                     ) -> tuple[int, bytes]:
        return post_webhook(url, webhook_body(events), self.channel_secret, signature=signature)

    # -- the API -------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        record = Recorded(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
            reply = self._check(record)
            if reply is None:
                reply = self._replies.pop(0) if self._replies else None
                if reply is None or reply.accept:
                    accepted = self._deliver(record)
                    reply = reply or Reply(200, accepted[0], {"x-line-request-id": accepted[1]})
        self._released.wait()
        record.status = reply.status
        payload = json.dumps(reply.body if reply.body is not None else {}).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            if "x-line-request-id" not in reply.headers:
                handler.send_header("x-line-request-id", str(uuid.uuid4()))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up waiting (a test of timeouts, a killed worker): nothing to tell it

    def _check(self, record: Recorded) -> Reply | None:
        """LINE's own checks, in LINE's order: path, token, body, retry key (a repeat is a 409)."""
        endpoint = {"/v2/bot/message/push": "push", "/v2/bot/message/multicast": "multicast"}.get(record.path)
        if endpoint is None:
            return Reply(404, {"message": "Not found"})
        if not secrets.compare_digest(record.headers.get("authorization", ""), f"Bearer {self.channel_access_token}"):
            return Reply(401, {"message": "Authentication failed. Confirm that the access token in the "
                                          "authorization header is valid."})
        if not record.headers.get("content-type", "").startswith("application/json"):
            return Reply(415, {"message": "Unsupported Media Type"})
        problems = _body_problems(endpoint, record.body)
        if problems:
            return Reply(400, {"message": f"The request body has {len(problems)} error(s)",
                               "details": [{"message": m, "property": p} for p, m in problems]})
        key = record.headers.get("x-line-retry-key")
        if key is not None and not UUID.match(key):
            return Reply(400, {"message": "The value for the 'X-Line-Retry-Key' header is invalid"})
        if key is not None and key in self._accepted:
            first = self._accepted[key]
            return Reply(409, {"message": "The retry key is already accepted",
                               "sentMessages": _sent(first) if first.endpoint == "push" else []},
                         {"x-line-accepted-request-id": first.request_id})
        return None

    def _deliver(self, record: Recorded) -> tuple[dict[str, Any], str]:
        body, key = record.body, record.headers.get("x-line-retry-key")
        endpoint = "push" if record.path.endswith("/push") else "multicast"
        to = [body["to"]] if endpoint == "push" else list(body["to"])
        delivery = Delivery(endpoint, to, body["messages"], key, str(uuid.uuid4()))
        self.deliveries.append(delivery)
        if key is not None:
            self._accepted[key] = delivery
        return ({"sentMessages": _sent(delivery)} if endpoint == "push" else {}), delivery.request_id


def _sent(delivery: Delivery) -> list[dict[str, str]]:
    # Stable per delivery, so a 409 repeats what the first answer said.
    seed = int(hashlib.sha256(delivery.request_id.encode()).hexdigest()[:12], 16)
    return [{"id": str(seed * 10 + i), "quoteToken": hashlib.sha256(f"{seed}{i}".encode()).hexdigest()[:40]}
            for i in range(len(delivery.messages))]


def _body_problems(endpoint: str, body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict):
        return [("", "The request body must be a JSON object")]
    problems: list[tuple[str, str]] = []
    to = body.get("to")
    if endpoint == "push":
        if not isinstance(to, str) or not PUSH_TARGET.match(to):
            problems.append(("to", "The property, 'to', in the request body is invalid"))
    elif not isinstance(to, list) or not 1 <= len(to) <= 500 or not all(
            isinstance(u, str) and USER_ID.match(u) for u in to):
        problems.append(("to", "Must be an array of 1 to 500 valid user IDs"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
        return [*problems, ("messages", "Size must be between 1 and 5")]
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
            problems.append((f"{where}.type", "Must be one of the following values: " + ", ".join(MESSAGE_TYPES)))
            continue
        for name in MESSAGE_TYPES[message["type"]]:
            if message.get(name) in (None, ""):
                problems.append((f"{where}.{name}", "Must be specified"))
        if message["type"] == "text" and len(str(message.get("text", ""))) > 5000:
            problems.append((f"{where}.text", "Length must be between 0 and 5000"))
        if message["type"] == "flex":
            if len(str(message.get("altText", ""))) > 1500:
                problems.append((f"{where}.altText", "Length must be between 0 and 1500"))
            contents = message.get("contents")
            if not isinstance(contents, dict) or contents.get("type") not in ("bubble", "carousel"):
                problems.append((f"{where}.contents.type", "Must be one of the following values: bubble, carousel"))
    if "notificationDisabled" in body and not isinstance(body["notificationDisabled"], bool):
        problems.append(("notificationDisabled", "Must be a boolean"))
    return problems
