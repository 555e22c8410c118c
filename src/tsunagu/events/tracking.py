"""The Segment-compatible tracking API: ``/v1/identify|track|page|screen|group|alias|batch``.

Plain Django views rather than the Ninja router: this is the hot path (every SDK call lands here), and
the protocol is Segment's, not ours — write key in Basic auth or in the body, gzip bodies, Segment's size
limits and its ``{"success": true}`` answer.
"""

from __future__ import annotations

import base64
import logging
import time
import zlib
from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from tsunagu.core import clock
from tsunagu.events import codec, fastpath, metrics
from tsunagu.events.models import Source
from tsunagu.events.selectors import source_by_write_key
from tsunagu.events.services import Backlogged, events_append
from tsunagu.events.validation import (
    NUL_ESCAPE,
    NUL_MESSAGE,
    FieldError,
    Invalid,
    ParsedEvent,
    nul_path,
    parse_event,
    parse_time,
)

log = logging.getLogger(__name__)


class _Reject(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


# A ``code`` beside the message, as Segment's API answers: the SDKs read ``code`` from an error body, and
# RudderStack's raises KeyError without it and then retries a 4xx as if the network had failed.
_CODES = {
    400: "invalid",
    401: "unauthenticated",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_encoding",
    429: "backlogged",
}


def _error(
    status: int, message: str, *, field: str | None = None, errors: list[dict[str, str]] | None = None
) -> HttpResponse:
    body: dict[str, Any] = {"success": False, "code": _CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return _json(status, body)


def _read_body(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH")
    # Compressed bodies are a fraction of their size; refuse only what cannot possibly fit.
    if declared and declared.isdigit() and int(declared) > max(limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE):
        raise _Reject(413, f"request body is over the {limit // 1024} KB limit", "body")
    raw = request.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise _Reject(413, f"request body is over the {limit // 1024} KB limit", "body")
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        # A bounded decompressor: a small bomb cannot expand past the limit in memory.
        inflater = zlib.decompressobj(wbits=47)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise _Reject(400, f"body is not valid gzip ({exc})", "Content-Encoding") from exc
        if inflater.unconsumed_tail or len(raw) > limit:
            raise _Reject(413, f"request body is over the {limit // 1024} KB limit once decompressed", "body")
    elif encoding not in ("", "identity"):
        raise _Reject(415, f"Content-Encoding {encoding!r} is not supported (use gzip)", "Content-Encoding")
    if len(raw) > limit:
        raise _Reject(413, f"request body is over the {limit // 1024} KB limit", "body")
    return raw


def _parse_json(raw: bytes, *, batch: bool = False) -> dict[str, Any]:
    if not raw:
        raise _Reject(400, "request body is empty", "body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Reject(400, f"body is not valid JSON: {exc}", "body") from exc
    if batch and isinstance(body, list):
        # analytics.js in batching mode posts a bare array of events, each carrying the writeKey.
        first = body[0] if body and isinstance(body[0], dict) else {}
        return {"batch": body, "writeKey": first.get("writeKey")}
    if not isinstance(body, dict):
        raise _Reject(400, "body must be a JSON object", "body")
    return body


def _write_key(request: HttpRequest, body: dict[str, Any]) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except ValueError as exc:
            # binascii.Error (not base64), UnicodeDecodeError (not UTF-8 once decoded) and the plain
            # ValueError b64decode raises for a str holding non-ASCII ("Basic 山田") are all ValueErrors.
            raise _Reject(401, "Authorization header is not valid Basic auth", "Authorization") from exc
        user, _, _password = decoded.partition(":")
        if user:
            return user
    key = body.get("writeKey")
    if key is None:
        raise _Reject(401, "write key missing: send it as the Basic auth user name or as writeKey", "writeKey")
    if not isinstance(key, str):
        raise _Reject(401, "writeKey must be a string", "writeKey")
    return key


def _source(request: HttpRequest, body: dict[str, Any]) -> Source:
    key = _write_key(request, body)
    # PostgreSQL refuses U+0000 in a query parameter; no write key holds one anyway.
    source = None if "\x00" in key else source_by_write_key(write_key=key)
    if source is None:
        raise _Reject(401, "unknown write key", "writeKey")
    return source


def _identify_traits_from_context(payload: Any, type_: str | None) -> None:
    """RudderStack's SDKs send an identify's traits in ``context.traits`` only; Segment's at the top level.
    Take them from the context when the top level has none, so both SDKs update the profile alike."""
    if not isinstance(payload, dict) or payload.get("traits") is not None:
        return
    if (type_ or payload.get("type")) != "identify":
        return
    context = payload.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        payload["traits"] = context["traits"]


def _cors(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Browsers post to the tracking API from the customer's own site (analytics.js), so it answers CORS
    preflights and allows any origin. That is safe here: write keys are public by design (they sit in every
    page's source), and no cookie or session is ever read on these paths."""

    endpoint = view.__name__

    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = HttpResponse(status=204) if request.method == "OPTIONS" else view(request)
        metrics.request_time(endpoint, time.perf_counter() - started)
        if response.status_code >= 400 and response.status_code != 429:  # 429s are counted per event
            metrics.rejected(_CODES.get(response.status_code, "error"))
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Content-Encoding"
        response["Access-Control-Max-Age"] = "86400"
        return response

    return csrf_exempt(wrapped)


def _method_guard(request: HttpRequest) -> HttpResponse | None:
    if request.method != "POST":
        response = _error(405, "use POST")
        response["Allow"] = "POST"
        return response
    return None


def _append(source: Source, events: list[ParsedEvent] | codec.Encoded, endpoint: str) -> HttpResponse | None:
    """Append durably; None when done, else the 429 to answer (nothing of the request was stored)."""
    count = events.count if isinstance(events, codec.Encoded) else len(events)
    try:
        events_append(source=source, events=events, received_at=clock.now())
    except Backlogged as exc:
        metrics.rejected("backlogged", count)
        response = _error(429, exc.message)
        response["Retry-After"] = str(exc.retry_after)
        return response
    metrics.received(endpoint, count)
    return None


def _fast(request: HttpRequest, encode: Callable[[], tuple[codec.Encoded, Any]], endpoint: str) -> HttpResponse | None:
    """A request whose every event is valid, through ``tsunagu.events.fastpath``; None when the fast path
    cannot answer it, and the ordinary path below must (it gives every error, and decides it alone)."""
    try:
        encoded, write_key = encode()
        source = _source(request, {} if write_key is None else {"writeKey": write_key})
    except (fastpath.Fallback, _Reject):
        return None
    if (busy := _append(source, encoded, endpoint)) is not None:
        return busy
    return _json(200, {"success": True})


def _single(request: HttpRequest, type_: str) -> HttpResponse:
    if (bad := _method_guard(request)) is not None:
        return bad
    try:
        raw = _read_body(request, settings.TSUNAGU_MAX_EVENT_BYTES)
    except _Reject as rej:
        return _error(rej.status, rej.message, field=rej.field)
    limit = settings.TSUNAGU_MAX_EVENT_BYTES
    if (done := _fast(request, lambda: fastpath.encode_single(raw, type_=type_, max_bytes=limit), type_)) is not None:
        return done
    try:
        body = _parse_json(raw)
        source = _source(request, body)
    except _Reject as rej:
        return _error(rej.status, rej.message, field=rej.field)
    if NUL_ESCAPE in raw and (where := nul_path(body, "")) is not None:
        return _error(400, f"{where}: {NUL_MESSAGE}", field=where)
    _identify_traits_from_context(body, type_)
    try:
        event = parse_event(body, type_=type_, where="", max_bytes=settings.TSUNAGU_MAX_EVENT_BYTES)
    except Invalid as inv:
        first = inv.errors[0]
        errors = [e.as_dict() for e in inv.errors]
        return _error(400, f"{first.field}: {first.message}", field=first.field, errors=errors)
    if (busy := _append(source, [event], type_)) is not None:
        return busy
    return _json(200, {"success": True})


@_cors
def batch(request: HttpRequest) -> HttpResponse:
    """``POST /v1/batch``: valid events are stored even when others in the batch are rejected; the answer
    lists the rejected ones by index and messageId with the field at fault."""
    return _batch(request, bare_array=False)


@_cors
def browser_batch(request: HttpRequest) -> HttpResponse:
    """``POST /b``: analytics.js in batching mode; the body may be a bare array of events."""
    return _batch(request, bare_array=True)


def _batch(request: HttpRequest, *, bare_array: bool) -> HttpResponse:
    if (bad := _method_guard(request)) is not None:
        return bad
    try:
        raw = _read_body(request, settings.TSUNAGU_MAX_BATCH_BYTES)
    except _Reject as rej:
        return _error(rej.status, rej.message, field=rej.field)
    limit = settings.TSUNAGU_MAX_EVENT_BYTES
    # /b's bare arrays (analytics.js batching) are rare enough to leave to the ordinary path.
    if not bare_array:
        done = _fast(request, lambda: fastpath.encode_batch(raw, max_bytes=limit), "batch")
        if done is not None:
            return done
    try:
        body = _parse_json(raw, batch=bare_array)
        source = _source(request, body)
    except _Reject as rej:
        return _error(rej.status, rej.message, field=rej.field)
    items = body.get("batch")
    if not isinstance(items, list):
        return _error(400, "batch: is required and must be an array of events", field="batch")
    if not items:
        return _error(400, "batch: must contain at least one event", field="batch")
    top_errors: list[FieldError] = []
    sent_at = parse_time(body.get("sentAt"), "sentAt", top_errors)
    if top_errors:
        return _error(400, f"sentAt: {top_errors[0].message}", field="sentAt")
    context = body.get("context")
    shared_context = context if isinstance(context, dict) else None
    valid: list[ParsedEvent] = []
    rejected: list[dict[str, Any]] = []
    may_hold_nul = NUL_ESCAPE in raw
    for index, item in enumerate(items):
        if shared_context and isinstance(item, dict) and "context" not in item:
            item["context"] = shared_context
        if may_hold_nul and (where := nul_path(item, f"batch[{index}]")) is not None:
            message_id = item.get("messageId") if isinstance(item, dict) else None
            rejected.append(
                {
                    "index": index,
                    "messageId": message_id if isinstance(message_id, str) and "\x00" not in message_id else None,
                    "errors": [{"field": where, "message": NUL_MESSAGE}],
                }
            )
            continue
        _identify_traits_from_context(item, None)
        try:
            valid.append(
                parse_event(
                    item,
                    type_=None,
                    where=f"batch[{index}].",
                    max_bytes=settings.TSUNAGU_MAX_EVENT_BYTES,
                    batch_sent_at=sent_at,
                )
            )
        except Invalid as inv:
            message_id = item.get("messageId") if isinstance(item, dict) else None
            rejected.append(
                {
                    "index": index,
                    "messageId": message_id if isinstance(message_id, str) else None,
                    "errors": [e.as_dict() for e in inv.errors],
                }
            )
    if valid and (busy := _append(source, valid, "batch")) is not None:
        return busy
    if rejected and valid:
        metrics.rejected("invalid", len(rejected))  # the request itself succeeds; count the events refused
    if not rejected:
        return _json(200, {"success": True})
    if not valid:
        first = rejected[0]["errors"][0]
        return _json(
            400,
            {
                "success": False,
                "code": "invalid",
                "message": f"no valid event in the batch; {first['field']}: {first['message']}",
                "field": first["field"],
                "accepted": 0,
                "rejected": rejected,
            },
        )
    return _json(200, {"success": True, "accepted": len(valid), "rejected": rejected})


def _endpoint(type_: str) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        return _single(request, type_)

    view.__name__ = type_  # the endpoint label of the latency metrics
    view.__doc__ = f"``POST /v1/{type_}``: one {type_} event."
    return _cors(view)


identify = _endpoint("identify")
track = _endpoint("track")
page = _endpoint("page")
screen = _endpoint("screen")
group = _endpoint("group")
alias = _endpoint("alias")
