"""A loopback stand-in of Twilio's Messages API, checking requests as Twilio documents them.

Usage::

    with TwilioStandIn() as twilio:                      # serves on 127.0.0.1, a free port
        config = twilio.channel_config()                 # sms channel config pointing at it
        twilio.reply(twilio.permanent(21211))            # the next request is refused; then 201 again
        twilio.reply(twilio.temporary(503, retry_after=7))
        ...                                              # send through tsunagu / the SDK
        twilio.wait_for_messages(1)                      # poll with a deadline
        twilio.messages[0]["Body"]                       # what was accepted (the form, plus "sid")
        twilio.status_callback(sid, "delivered")         # POST a signed callback to the message's URL

It implements ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: HTTP Basic auth with the account
SID and Auth Token, a form-encoded body with ``To`` (E.164), ``From`` (or ``MessagingServiceSid``) and
``Body``; it answers ``201`` with a Message resource (``sid`` ``SM…``, ``status`` ``queued``) or an error
in Twilio's JSON shape (``code``, ``message``, ``more_info``, ``status``). Every request is recorded in
``requests`` (refused ones included); accepted messages in ``messages``. ``hold()`` keeps answers back
(the request is already recorded and, if accepted, counted) until ``release()`` — for crash tests that
kill a worker while it waits for Twilio. Callbacks are signed with the SDK's ``RequestValidator``
algorithm, exactly as Twilio signs them.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twilio.request_validator import RequestValidator

API_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})/Messages\.json$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature`` of a form POST to ``url``, as Twilio computes it."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


def post_signed(url: str, params: dict[str, str], auth_token: str, *, signature: str | None = None,
                timeout: float = 10.0) -> tuple[int, bytes]:
    """POST a form to ``url`` as Twilio does (signed, or with the ``signature`` given; ``""`` for none);
    (status, body) — an HTTP error status is returned, not raised."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    sig = twilio_signature(auth_token, url, params) if signature is None else signature
    if sig:
        headers["X-Twilio-Signature"] = sig
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url, data=urlencode(params).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (a test's URL)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Reply:
    """How to answer one request. ``accept``: record the message as accepted even though the answer is an
    error (a response lost after Twilio took the message)."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    accept: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    form: dict[str, str]
    status: int = 0  # what was answered


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


class TwilioStandIn:
    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None,
                 from_number: str = "+815012345678") -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_number = from_number
        self.requests: list[Recorded] = []
        self.messages: list[dict[str, Any]] = []
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self) -> TwilioStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                stand_in._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                stand_in._answer(self, None, Reply(404, _error(404, 20404, "The requested resource was not found")))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="twilio-stand-in", daemon=True
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

    def __enter__(self) -> TwilioStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def channel_config(self) -> dict[str, str]:
        """An sms channel config that sends through this stand-in (started)."""
        return {**self.channel_config_offline(), "base_url": self.url}

    def channel_config_offline(self) -> dict[str, str]:
        """The account's config without a base_url, for tests of webhooks alone."""
        return {"provider": "twilio", "account_sid": self.account_sid, "auth_token": self.auth_token,
                "from_number": self.from_number}

    # -- what the test directs -----------------------------------------------------------------------

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; later ones are answered normally."""
        with self._lock:
            self._replies.extend(replies)

    @staticmethod
    def permanent(code: int = 21211, message: str | None = None, status: int = 400) -> Reply:
        """Twilio refusing the message (21211 invalid 'To', 21610 unsubscribed, 21614 not a mobile…)."""
        return Reply(status, _error(status, code, message or f"Twilio error {code}"))

    @staticmethod
    def temporary(status: int = 503, *, retry_after: float | None = None, accept: bool = False) -> Reply:
        """A rate limit (429, code 20429) or an outage (5xx), with ``Retry-After`` when given."""
        code = 20429 if status == 429 else 20500
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return Reply(status, _error(status, code, "Too Many Requests" if status == 429 else "Service unavailable"),
                     headers, accept=accept)

    def hold(self) -> None:
        """Keep answers back until ``release()``; requests are still received and recorded."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        self._wait(lambda: len(self.requests) >= count, timeout, f"{count} requests")
        return self.requests

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        self._wait(lambda: len(self.messages) >= count, timeout, f"{count} messages")
        return self.messages

    def _wait(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"Twilio stand-in: no {what} within {timeout}s "
                                     f"(got {len(self.requests)} requests, {len(self.messages)} messages)")
            time.sleep(0.01)

    # -- callbacks to tsunagu ------------------------------------------------------------------------

    def status_callback(self, sid: str, status: str, *, error_code: int | None = None, url: str | None = None,
                        signature: str | None = None) -> tuple[int, bytes]:
        """POST a status callback for message ``sid`` to ``url`` (default: the StatusCallback it was sent
        with), signed with the Auth Token unless ``signature`` is given (``""`` sends none)."""
        message = next((m for m in self.messages if m["sid"] == sid), None)
        target = url or (message or {}).get("StatusCallback")
        if not target:
            raise AssertionError(f"no StatusCallback URL for {sid}")
        params = self.status_params(sid, status, error_code=error_code)
        return post_signed(target, params, self.auth_token, signature=signature)

    def status_params(self, sid: str, status: str, *, error_code: int | None = None) -> dict[str, str]:
        """The form of a status callback, as Twilio sends it."""
        message = next((m for m in self.messages if m["sid"] == sid), {})
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "MessageSid": sid, "SmsSid": sid,
                  "MessageStatus": status, "SmsStatus": status, "From": message.get("From", self.from_number),
                  "To": message.get("To", "")}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    def inbound_params(self, from_: str, body: str, *, to: str | None = None) -> dict[str, str]:
        """The form of an incoming SMS webhook, as Twilio sends it."""
        sid = "SM" + secrets.token_hex(16)
        return {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "MessageSid": sid, "SmsSid": sid,
                "SmsMessageSid": sid, "SmsStatus": "received", "From": from_, "To": to or self.from_number,
                "Body": body, "NumMedia": "0", "NumSegments": "1"}

    def send_inbound(self, url: str, from_: str, body: str, *, to: str | None = None) -> tuple[int, bytes]:
        return post_signed(url, self.inbound_params(from_, body, to=to), self.auth_token)

    # -- the API -------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        record = Recorded("POST", handler.path, {k.lower(): v for k, v in handler.headers.items()}, form)
        with self._lock:
            self.requests.append(record)
        reply = self._check(handler, record) or self._next_reply()
        if reply is None or reply.accept:
            message = self._accept(record)
            reply = reply or Reply(201, message)
        self._released.wait()
        self._answer(handler, record, reply)

    def _check(self, handler: BaseHTTPRequestHandler, record: Recorded) -> Reply | None:
        match = API_PATH.match(handler.path)
        if match is None:
            return Reply(404, _error(404, 20404, "The requested resource was not found"))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if not secrets.compare_digest(record.headers.get("authorization", ""), expected):
            return Reply(401, _error(401, 20003, "Authenticate"))
        if match["account"] != self.account_sid:
            return Reply(404, _error(404, 20404, "The requested resource was not found"))
        if not record.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return Reply(400, _error(400, 20001, "Content-Type must be application/x-www-form-urlencoded"))
        form = record.form
        if not form.get("To"):
            return Reply(400, _error(400, 21604, "A 'To' phone number is required."))
        if not E164.match(form["To"]):
            return Reply(400, _error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number."))
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return Reply(400, _error(400, 21603, "A 'From' phone number is required."))
        if form.get("From") and form["From"] != self.from_number:
            return Reply(400, _error(400, 21606, f"The From phone number {form['From']} is not a valid, "
                                                 "SMS-capable inbound phone number for your account."))
        if not form.get("Body") and not form.get("MediaUrl"):
            return Reply(400, _error(400, 21602, "Message body is required."))
        if len(form.get("Body", "")) > 1600:
            return Reply(400, _error(400, 21617, "The concatenated message body exceeds the 1600 character limit."))
        return None

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.pop(0) if self._replies else None

    def _accept(self, record: Recorded) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        form = record.form
        resource = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": form.get("Body", ""),
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "num_media": "0", "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid, "status": "queued", "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self.messages.append({**form, "sid": sid})
        return resource

    def _answer(self, handler: BaseHTTPRequestHandler, record: Recorded | None, reply: Reply) -> None:
        body = json.dumps(reply.body if reply.body is not None else {}).encode()
        if record is not None:
            record.status = reply.status
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client gave up waiting (a test of timeouts, a killed worker): nothing to tell it
