"""The tracking API's fast path: validate the common, valid request without building it in Python.

``/v1/*`` spends most of its CPU turning JSON into dicts, checking them field by field and encoding them
again for the log (docs/performance.md). Here msgspec decodes each event into a ``Struct`` of its
scalar fields with strict types, and keeps ``context``, ``properties``, ``traits`` and the fields tsunagu
ignores as ``msgspec.Raw``: the request's own bytes, syntax-checked but not turned into objects. The log
record is then written from those bytes (``tsunagu.events.codec``): the events are encoded once, by the
client.

The fast path decides nothing on its own. It answers only a request that the validator of
``tsunagu.events.validation`` would accept whole, and then with exactly the events that validator would
produce; for anything else — an invalid event, an unknown field, a body orjson might read differently —
it raises ``Fallback`` and the request takes the ordinary path, which gives the same 400s, naming the same
fields, as before. So the rules live in one place, and this module is only a faster way to reach the
same answer (``test_fast_validation.py`` checks both on generated requests).

What has to be true for that, beyond the checks of ``parse_event`` repeated below:

- **the body is JSON as orjson reads it.** msgspec checks the syntax of what it skips, but not that its
  strings are UTF-8 (checked on the skipped parts) nor that its numbers are finite as doubles: orjson
  refuses ``1e400`` and a 400-digit integer. The skipped parts of an event in which a number could be
  such — an exponent (a digit followed by ``e``/``E``) or a run of 309 digits, the shortest that can
  overflow — are read by orjson to be sure; in ordinary events that is only a user agent like
  ``Mobile/15E148``. (msgspec gives up on nesting sooner than orjson does, so depth cannot differ.)
- **the values are orjson's.** The applier decodes the segments with orjson, so they come out as the
  ordinary path's orjson round trip would: equal. The scalar fields are msgspec's, and msgspec and orjson
  differ on integers past 64 bits (orjson makes them floats): those ids take the ordinary path.
- **the limits.** An event's size is measured on its compact re-encoding; that is at most 8 times the
  bytes it was sent as (only a number can grow, ``1e5`` to ``100000.0``, and no float needs more than 24
  characters), so events under 1/8 of the limit are within it. Nesting deeper than 31 needs at least 32
  brackets. Bigger or bracket-heavy events are validated exactly, by ``parse_event``, one by one.
"""

from __future__ import annotations

import datetime as dt
import operator
import uuid
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Meta, Raw, UnsetType

from tsunagu.customers.normalize import _ALL_ZEROS, BLOCKED_VALUES, is_placeholder
from tsunagu.events import codec
from tsunagu.events.validation import (
    MAX_DEPTH,
    MAX_ID_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    MAX_NAME_LENGTH,
    NUL_ESCAPE,
    FieldError,
    Invalid,
    parse_event,
    parse_time,
)

_UTC = dt.UTC
_fromiso = dt.datetime.fromisoformat
_NONE = Raw()  # a field that was not sent: Raw(b"")
_NULL = b"null"
# orjson reads integers outside [-2**63, 2**64 - 1] as floats; msgspec's bounds stop at int64.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# One pass over the skipped bytes for numbers and brackets: digits become 0, E becomes e, [ becomes {.
_SCAN = bytes.maketrans(b"123456789E[", b"000000000e{")
_OVERFLOW_RUN = b"0" * 309  # no integer part shorter than 309 digits overflows a double
# Containers nested this deep at most (the event itself and the brackets of its objects) are within
# MAX_DEPTH however the validator counts them (see the module docstring).
_FAST_DEPTH = MAX_DEPTH - 1
_GROWTH = 8  # compact re-encoding is at most this many times the bytes sent
_KEY_SLACK = 16  # the key a copied object is stored under (``,"context":``) when measuring an event

Text = str | None | UnsetType
# The validator's limits as msgspec constraints: an event past one fails the decode, and ``parse_event``
# then decides (an id longer than 255 characters may still be fine once trimmed).
Id = Annotated[str, Meta(max_length=MAX_ID_LENGTH)] | Annotated[int, Meta(ge=_INT_MIN, le=_INT_MAX)] | None | UnsetType
Name = Annotated[str, Meta(max_length=MAX_NAME_LENGTH)] | None | UnsetType
MessageId = Annotated[str, Meta(max_length=MAX_MESSAGE_ID_LENGTH)] | None | UnsetType
Kind = Literal["identify", "track", "page", "screen", "group", "alias"] | UnsetType


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One Segment event: the fields tsunagu reads typed, the objects and the fields the SDKs send that
    tsunagu ignores as raw JSON. An unknown field, or a type the validator would refuse, fails the
    decode, and the request takes the ordinary path. Not tracked by the garbage collector (``gc=False``):
    it holds only strings, numbers and raw bytes, so it cannot be part of a cycle."""

    type: Kind = UNSET
    messageId: MessageId = UNSET  # noqa: N815 (Segment's field names)
    userId: Id = UNSET  # noqa: N815
    anonymousId: Id = UNSET  # noqa: N815
    timestamp: Text = UNSET
    originalTimestamp: Text = UNSET  # noqa: N815
    sentAt: Text = UNSET  # noqa: N815
    event: Name = UNSET
    name: Name = UNSET
    category: Text = UNSET
    groupId: Id = UNSET  # noqa: N815
    previousId: Id = UNSET  # noqa: N815
    context: Raw = _NONE
    properties: Raw = _NONE
    traits: Raw = _NONE
    integrations: Raw = _NONE
    # Sent by analytics.js, RudderStack or the server SDKs; ignored by the validator.
    writeKey: Raw = _NONE  # noqa: N815
    channel: Raw = _NONE
    version: Raw = _NONE
    receivedAt: Raw = _NONE  # noqa: N815
    metadata: Raw = msgspec.field(default=_NONE, name="_metadata")
    rudderId: Raw = _NONE  # noqa: N815
    request_ip: Raw = _NONE


class Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    batch: list[Raw]
    sentAt: Text = UNSET  # noqa: N815
    context: Raw = _NONE
    writeKey: Raw = _NONE  # noqa: N815
    integrations: Raw = _NONE


class _ContextTraits(msgspec.Struct, gc=False):
    traits: Raw = _NONE


class _WriteKey(msgspec.Struct, gc=False):
    writeKey: Raw = _NONE  # noqa: N815


_event = msgspec.json.Decoder(Event)
_batch = msgspec.json.Decoder(Batch)
_context_traits = msgspec.json.Decoder(_ContextTraits)
_write_key_only = msgspec.json.Decoder(_WriteKey)


# What msgspec raises for a body it will not read: the ordinary path then gives the answer (orjson's).
_UNREADABLE = (msgspec.MsgspecError, RecursionError, ValueError)


class Fallback(Exception):
    """The request must take the ordinary path (which decides its answer)."""


def _orjson_reads(*segments: bytes) -> bool:
    try:
        for segment in segments:
            if segment:  # an absent field
                orjson.loads(segment)
    except orjson.JSONDecodeError:
        return False
    return True


def _skipped_ok(*segments: bytes) -> bool:
    """True when these JSON values, which msgspec skipped (checking only their syntax), are read by orjson
    as they are: UTF-8 strings, and every number a finite double or a 64-bit integer. One scan of them all
    for what could be such a number (an exponent, or 309 digits in a row); only then does orjson read
    them."""
    skipped = b" ".join(segments)
    if not skipped.isascii():
        try:
            skipped.decode()
        except UnicodeDecodeError:
            return False
    scan = skipped.translate(_SCAN)
    return (b"0e" not in scan and _OVERFLOW_RUN not in scan) or _orjson_reads(*segments)


def placeholder(value: str) -> bool:
    """``is_placeholder`` without Unicode normalisation for ASCII, which NFKC leaves unchanged."""
    if not value.isascii():
        return is_placeholder(value)
    folded = value.strip().lower()
    return folded in BLOCKED_VALUES or _ALL_ZEROS.match(folded) is not None


def _time(value: str) -> dt.datetime:
    try:
        parsed = _fromiso(value)
    except ValueError:
        raise Fallback from None
    if parsed.tzinfo is _UTC:  # "Z" or "+00:00": a UTC datetime always exists
        return parsed
    errors: list[FieldError] = []
    checked = parse_time(value, "", errors)  # the zone and range rules, in one place
    if checked is None:
        raise Fallback
    return checked


_extras = operator.attrgetter("writeKey", "channel", "version", "receivedAt", "metadata", "rudderId", "request_ip")


def encode_event(
    raw: bytes,
    *,
    type_: str | None,
    max_bytes: int,
    batch_sent_at: dt.datetime | None = None,
    shared_context: bytes | None = None,
) -> bytes:
    """The record bytes of one event (``codec``'s layout), exactly as ``parse_event`` would validate it
    after the tracking API's preparation (the batch's ``context`` for events without one, an identify's
    ``context.traits``). Raises ``Fallback`` when it cannot be sure of that — including when
    ``parse_event`` would refuse the event.

    Written for speed (this runs for every event): few calls, the helpers inlined."""
    try:
        ev = _event.decode(raw)
    except _UNREADABLE:
        return _exact(raw, type_=type_, max_bytes=max_bytes, batch_sent_at=batch_sent_at,
                      shared_context=shared_context)
    kind = type_ or ev.type
    if kind is UNSET:
        raise Fallback
    size = len(raw)
    context = bytes(ev.context)
    if not context and shared_context is not None:
        context = shared_context
        size += len(context) + _KEY_SLACK
    properties = bytes(ev.properties)
    traits = bytes(ev.traits)
    integrations = bytes(ev.integrations)
    if kind == "identify" and (not traits or traits == _NULL) and context[:1] == b"{":
        from_context = bytes(_context_traits.decode(context).traits)
        if from_context[:1] == b"{":
            traits = from_context
            size += len(traits) + _KEY_SLACK
    # The parts msgspec skipped (``_skipped_ok``, inlined), with the ignored fields when there are any.
    segments: tuple[bytes, ...] = (context, properties, traits, integrations)
    if any(extras := _extras(ev)):
        segments += tuple(bytes(x) for x in extras if x)
    skipped = b" ".join(segments)
    if not skipped.isascii():
        try:
            skipped.decode()
        except UnicodeDecodeError:
            raise Fallback from None
    scan = skipped.translate(_SCAN)
    if (
        size * _GROWTH > max_bytes
        or 1 + scan.count(b"{") > _FAST_DEPTH  # every container but the event itself is in a skipped part
        or ((b"0e" in scan or _OVERFLOW_RUN in scan) and not _orjson_reads(*segments))
    ):
        return _exact(raw, type_=type_, max_bytes=max_bytes, batch_sent_at=batch_sent_at,
                      shared_context=shared_context)

    user_id = ev.userId
    if user_id is UNSET or user_id is None:
        user_id = None
    else:
        user_id = (user_id if type(user_id) is str else str(user_id)).strip() or None
    anonymous_id = ev.anonymousId
    if anonymous_id is UNSET or anonymous_id is None:
        anonymous_id = None
    else:
        anonymous_id = (anonymous_id if type(anonymous_id) is str else str(anonymous_id)).strip() or None
    message_id = ev.messageId
    if not message_id:  # absent, null or ""
        message_id = f"tsunagu-{uuid.uuid4()}"
    sent_time = ev.originalTimestamp if ev.timestamp is UNSET else ev.timestamp
    original = _time(sent_time) if sent_time is not UNSET and sent_time is not None else None
    sent_time = ev.sentAt
    sent_at = _time(sent_time) if sent_time is not UNSET and sent_time is not None else batch_sent_at
    if not context or context == _NULL:
        context = b"{}"
    elif context[0] != 123:  # "{"
        raise Fallback
    if integrations and integrations != _NULL and integrations[0] != 123:
        raise Fallback
    event: Any = ""
    name = group_id = previous_id = ""
    sent_id: Any  # groupId or previousId as sent
    category = None
    if kind == "track" or kind == "page" or kind == "screen":
        if kind == "track":
            event = ev.event
            if not event:  # absent, null or "": required
                raise Fallback
        else:
            name = ev.name or ""
            if ev.category:  # a non-empty string (the type says so); decode merges it into properties
                category = ev.category
        if not properties or properties == _NULL:
            properties = b"{}"
        elif properties[0] != 123:
            raise Fallback
        traits = b"{}"
    elif kind == "identify" or kind == "group":
        if kind == "group":
            sent_id = ev.groupId
            if sent_id is UNSET or sent_id is None:
                raise Fallback
            group_id = (sent_id if type(sent_id) is str else str(sent_id)).strip()
            if not group_id:
                raise Fallback
        if not traits or traits == _NULL:
            traits = b"{}"
        elif traits[0] != 123:
            raise Fallback
        properties = b"{}"
    else:  # alias: both ids real
        sent_id = ev.previousId
        if sent_id is UNSET or sent_id is None:
            raise Fallback
        previous_id = (sent_id if type(sent_id) is str else str(sent_id)).strip()
        if not previous_id or not user_id or placeholder(user_id) or placeholder(previous_id):
            raise Fallback
        properties = traits = b"{}"
    if kind != "alias" and (not user_id or placeholder(user_id)) and (not anonymous_id or placeholder(anonymous_id)):
        raise Fallback  # no usable id: "userId or anonymousId is required", or only placeholders
    head = orjson.dumps(
        (kind, message_id, user_id, anonymous_id, event, name, group_id, previous_id, original, sent_at)
    )
    if category is None:
        return b"".join((head[:-1], b",", properties, b",", traits, b",", context, b"]"))
    return b"".join((head[:-1], b",", properties, b",", traits, b",", context, b",", orjson.dumps(category), b"]"))


def _exact(
    raw: bytes, *, type_: str | None, max_bytes: int, batch_sent_at: dt.datetime | None,
    shared_context: bytes | None,
) -> bytes:
    """One event through ``parse_event`` itself, prepared as the tracking API prepares it."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Fallback from None
    if not isinstance(payload, dict):
        raise Fallback
    if shared_context is not None and "context" not in payload:
        payload["context"] = orjson.loads(shared_context)
    if payload.get("traits") is None and (type_ or payload.get("type")) == "identify":
        context = payload.get("context")
        if isinstance(context, dict) and isinstance(context.get("traits"), dict):
            payload["traits"] = context["traits"]
    try:
        parsed = parse_event(payload, type_=type_, where="", max_bytes=max_bytes, batch_sent_at=batch_sent_at)
    except Invalid:
        raise Fallback from None
    return codec.encode([parsed])[1:-1]


def encode_batch(raw: bytes, *, max_bytes: int) -> tuple[codec.Encoded, Any]:
    """A ``/v1/batch`` body whose every event is valid, as one record body, and the body's ``writeKey``
    (``None`` when absent). Raises ``Fallback`` for anything else."""
    if NUL_ESCAPE in raw:
        raise Fallback
    try:
        body = _batch.decode(raw)
    except _UNREADABLE:
        raise Fallback from None
    if not body.batch:
        raise Fallback
    shared = bytes(body.context)
    if not _skipped_ok(shared, bytes(body.writeKey), bytes(body.integrations)):
        raise Fallback
    sent_at = None if body.sentAt is UNSET or body.sentAt is None else _time(body.sentAt)
    # As the ordinary path: only a non-empty object is a shared context (an empty one changes nothing).
    shared_context = shared if shared[:1] == b"{" and shared.strip(b"{} \t\r\n") else None
    events = [
        encode_event(bytes(item), type_=None, max_bytes=max_bytes, batch_sent_at=sent_at,
                     shared_context=shared_context)
        for item in body.batch
    ]
    return codec.Encoded(len(events), codec.join(events)), _write_key(body.writeKey)


def encode_single(raw: bytes, *, type_: str, max_bytes: int) -> tuple[codec.Encoded, Any]:
    """A valid single-event body (``/v1/track`` …) as a record body, and its ``writeKey``. Raises
    ``Fallback`` for anything else."""
    if NUL_ESCAPE in raw:
        raise Fallback
    event = encode_event(raw, type_=type_, max_bytes=max_bytes)
    # Valid JSON by now (read by msgspec or orjson above), so this skimming decode cannot fail.
    return codec.Encoded(1, codec.join([event])), _write_key(_write_key_only.decode(raw).writeKey)


def _write_key(raw: Raw) -> Any:
    return None if not raw else orjson.loads(bytes(raw))
