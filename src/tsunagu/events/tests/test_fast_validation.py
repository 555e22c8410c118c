"""The tracking API's fast path (``tsunagu.events.fastpath``) answers exactly as the ordinary path would.

The claim to prove: whenever the fast path encodes a request, the ordinary path (orjson, then
``parse_event`` after the tracking API's preparation) accepts every event of it, and the log record
decodes to the same ``ParsedEvent``s — compared as orjson text, so ``1`` vs ``1.0`` vs ``true``, key
order and time zones all count. And whenever the ordinary path refuses anything (bad JSON, an invalid
event), the fast path declines (``Fallback``), so the answer, with its field names and messages, is the
ordinary path's. Generated requests cover types, placeholders, limits, nesting, escapes and the numbers
orjson and msgspec read differently."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tsunagu.customers.normalize import BLOCKED_VALUES, is_placeholder
from tsunagu.events import codec, fastpath
from tsunagu.events.fastpath import Fallback
from tsunagu.events.validation import (
    EVENT_TYPES,
    NUL_ESCAPE,
    FieldError,
    Invalid,
    ParsedEvent,
    nul_path,
    parse_event,
    parse_time,
)

LIMIT = 32 * 1024


# -- the reference: the ordinary path of tsunagu.events.tracking, per event ----------------------------


def _prepare(item: Any, type_: str | None) -> None:
    """tracking._identify_traits_from_context."""
    if not isinstance(item, dict) or item.get("traits") is not None:
        return
    if (type_ or item.get("type")) != "identify":
        return
    context = item.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        item["traits"] = context["traits"]


def ordinary_batch(raw: bytes) -> list[ParsedEvent] | None:
    """The events ``/v1/batch`` stores when it answers ``{"success": true}``; None when it answers
    anything else (an error, or a partial success naming rejected events)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list) or not body["batch"]:
        return None
    errors: list[FieldError] = []
    sent_at = parse_time(body.get("sentAt"), "sentAt", errors)
    if errors:
        return None
    context = body.get("context")
    shared = context if isinstance(context, dict) else None
    out = []
    for index, item in enumerate(body["batch"]):
        if shared and isinstance(item, dict) and "context" not in item:
            item["context"] = shared
        if NUL_ESCAPE in raw and nul_path(item, f"batch[{index}]") is not None:
            return None
        _prepare(item, None)
        try:
            out.append(parse_event(item, type_=None, where="", max_bytes=LIMIT, batch_sent_at=sent_at))
        except Invalid:
            return None
    return out


def ordinary_single(raw: bytes, type_: str) -> ParsedEvent | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or (NUL_ESCAPE in raw and nul_path(body, "") is not None):
        return None
    _prepare(body, type_)
    try:
        return parse_event(body, type_=type_, where="", max_bytes=LIMIT)
    except Invalid:
        return None


def applied(events: list[ParsedEvent]) -> list[ParsedEvent]:
    """What the applier got from the ordinary path: its events through the log's previous record format
    (orjson of the dataclasses), which is also where a time zone's seconds were dropped."""
    return codec.decode(orjson.dumps(events, option=orjson.OPT_NON_STR_KEYS))


def canon(events: list[ParsedEvent]) -> bytes:
    """Type-exact text of events; messageIds generated for events sent without one compare equal."""
    return orjson.dumps(
        [
            (
                e.type, "generated" if e.message_id.startswith("tsunagu-") else e.message_id, e.user_id,
                e.anonymous_id, e.event, e.name, e.group_id, e.previous_id,
                e.original_timestamp, e.original_timestamp and e.original_timestamp.utcoffset(),
                e.sent_at, e.sent_at and e.sent_at.utcoffset(), e.properties, e.traits, e.context,
            )
            for e in events
        ],
        default=str,
    )


def fast_batch(raw: bytes) -> list[ParsedEvent] | None:
    try:
        encoded, _key = fastpath.encode_batch(raw, max_bytes=LIMIT)
    except Fallback:
        return None
    events = codec.decode(encoded.body)
    assert encoded.count == len(events)
    return events


def assert_same_batch(raw: bytes) -> bool:
    """The claim, for one body; True when the fast path took it."""
    fast = fast_batch(raw)
    reference = ordinary_batch(raw)
    if fast is None:
        return False
    assert reference is not None, "the fast path accepted a body the ordinary path refuses"
    assert canon(fast) == canon(applied(reference))
    return True


# -- generated requests ---------------------------------------------------------------------------

# Numbers orjson and msgspec read differently (or that orjson refuses), spliced in as JSON text.
NUMBERS = [b"1e400", b"-1E+400", b"1" + b"0" * 400, b"18446744073709551616", b"-9223372036854775809",
           b"18446744073709551615", b"1.7976931348623157e308", b"1e15", b"5e-324", b"-0", b"-0.0", b"0.1e1",
           b"1E5", b"123456789012345678901"]
NUMBER_MARK = "\x01N"  # a string value replaced by NUMBERS[i] in the encoded body

placeholders = st.sampled_from(sorted(BLOCKED_VALUES - {""}) + ["0000", "00000000-0000-0000-0000-000000000000",
                                                               "ｎｕｌｌ", " anonymous ", "0.0", "-"])
ids = st.one_of(
    st.none(), st.just(""), st.text(max_size=12), placeholders, st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.just("u" * 300), st.just(" " + "u" * 255),
    st.uuids().map(str), st.lists(st.integers(), max_size=1),
)
times = st.one_of(
    st.none(), st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=9)),
                                                       dt.timezone(dt.timedelta(hours=-14, seconds=-30))]))
    .map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no zone: read as UTC
    st.sampled_from(["2026-12-01T10:00:00Z", "yesterday", "0001-01-01T00:00:00+14:00", "2026-13-45", ""]),
    st.integers(),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(["[", "{{", "15E148", "\u3042\u3044", "\\", "\"", "\u2028", "😀", "\x7f",
                     NUMBER_MARK + "0", NUMBER_MARK + "1", NUMBER_MARK + "7", NUMBER_MARK + "9"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
objects = st.one_of(st.none(), st.dictionaries(st.text(max_size=6), json_values, max_size=5), json_values)
names = st.one_of(st.none(), st.just(""), st.text(max_size=10), st.just("E" * 201), st.integers())

FIELDS: dict[str, Any] = {
    "type": st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from([None, "bogus", "Track"]), st.integers()),
    "messageId": st.one_of(st.none(), st.just(""), st.uuids().map(str), st.just("m" * 101), st.integers()),
    "userId": ids,
    "anonymousId": ids,
    "timestamp": times,
    "originalTimestamp": times,
    "sentAt": times,
    "event": names,
    "name": names,
    "category": names,
    "groupId": ids,
    "previousId": ids,
    "context": objects,
    "properties": objects,
    "traits": objects,
    "integrations": objects,
    "writeKey": st.one_of(st.text(max_size=5), st.integers()),
    "_metadata": json_values,
    "channel": st.just("server"),
    "unknownField": json_values,
}
# Most generated events are near-valid (a type, an id, few odd fields) so that the fast path is exercised.
likely = {"type": 0.95, "messageId": 0.8, "userId": 0.7, "anonymousId": 0.6, "timestamp": 0.6, "event": 0.7,
          "context": 0.7, "properties": 0.6, "traits": 0.4, "name": 0.4}


@st.composite
def events(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, strategy in FIELDS.items():
        if draw(st.floats(0, 1)) < likely.get(key, 0.08):
            out[key] = draw(strategy)
    if draw(st.booleans()):  # a plausible valid core
        out.setdefault("type", draw(st.sampled_from(EVENT_TYPES)))
        out["userId" if draw(st.booleans()) else "anonymousId"] = draw(st.uuids().map(str))
        if out["type"] == "track":
            out["event"] = draw(st.sampled_from(["Order Completed", "商品を見た"]))
        if out["type"] == "group":
            out["groupId"] = "g1"
        if out["type"] == "alias":
            out["userId"], out["previousId"] = "u1", "a1"
    return out


def encode(value: Any, style: int) -> bytes:
    """JSON text in one of several styles a client might send: compact UTF-8, ASCII with escapes,
    indented; then the number marks spliced in."""
    if style == 0:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    elif style == 1:
        text = json.dumps(value, ensure_ascii=True).encode()
    else:
        text = json.dumps(value, ensure_ascii=False, indent=1).replace("[", "[ ").encode()
    for i, number in enumerate(NUMBERS):
        text = text.replace(json.dumps(NUMBER_MARK + str(i), ensure_ascii=False).encode(), number)
        text = text.replace(json.dumps(NUMBER_MARK + str(i)).encode(), number)
    return text


@st.composite
def batch_bodies(draw: Any) -> bytes:
    body: dict[str, Any] = {"batch": draw(st.lists(events(), min_size=1, max_size=4))}
    if draw(st.booleans()):
        body["sentAt"] = draw(times)
    if draw(st.floats(0, 1)) < 0.3:
        body["context"] = draw(objects)
    if draw(st.floats(0, 1)) < 0.1:
        body["writeKey"] = "k"
    return encode(body, draw(st.integers(0, 2)))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch_bodies())
def test_fast_batches_are_the_ordinary_ones(raw):
    assert_same_batch(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(events(), st.sampled_from(EVENT_TYPES), st.integers(0, 2))
def test_fast_single_events_are_the_ordinary_ones(event, type_, style):
    raw = encode(event, style)
    try:
        encoded, _key = fastpath.encode_single(raw, type_=type_, max_bytes=LIMIT)
    except Fallback:
        return
    reference = ordinary_single(raw, type_)
    assert reference is not None, "the fast path accepted a body the ordinary path refuses"
    assert canon(codec.decode(encoded.body)) == canon(applied([reference]))


def _sdk_event(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "X", "userId": "u1", "messageId": "m1", **fields}


@pytest.mark.parametrize(
    "raw",
    [
        # What orjson refuses, hidden where msgspec only skims: the ordinary path's 400 must answer.
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":{"n":1e400}}]}',
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":{"n":' + b"9" * 400 + b"}}]}",
        b'{"batch":[{"type":"track","event":"X","userId":"u1","context":{"s":"\xff"}}]}',
        b'{"batch":[{"type":"track","event":"X","userId":"u1","_metadata":{"s":"\xed\xa0\x80"}}]}',
        b'{"batch":[{"type":"track","event":"X","userId":"u1"}],"context":{"n":2e308}}',
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":{"s":"\\ud800"}}]}',
        # Nesting: 32 containers and a leaf inside them all, refused only when the re-encoded text has more
        # than 32 brackets — here thanks to brackets escaped in a string; without them, accepted.
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":' + b'{"a":' * 31 + b'"\\u005b\\u005b"'
        + b"}" * 31 + b"}]}",
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":' + b'{"a":' * 31 + b'"x"'
        + b"}" * 31 + b"}]}",
        # Size: under 32 KB as sent, over it once 1e15 is written 1000000000000000.0.
        b'{"batch":[{"type":"track","event":"X","userId":"u1","properties":{"a":[' + b",".join([b"1e15"] * 2000)
        + b"]}}]}",
    ],
)
def test_bodies_only_the_exact_path_can_judge_are_not_taken_fast_wrongly(raw):
    assert_same_batch(raw)


IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")


def sdk_batch(n: int, offset: int) -> bytes:
    """What segment-analytics-python sends for a shop (as bench/payloads.py): pages, tracks, identifies."""
    items = []
    for k in range(offset, offset + n):
        kind = ("page", "track", "identify")[k % 3]
        item: dict[str, Any] = {
            "type": kind, "messageId": f"00000000-0000-4000-8000-{k:012d}", "anonymousId": f"0000{k:04x}-5eed",
            "timestamp": f"2026-12-01T10:{k % 60:02d}:00.123Z",
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}, "ip": "203.0.113.9",
                        "userAgent": IPHONE if k % 2 else "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                        "locale": "ja-JP"},
            "integrations": {},
        }
        if k % 4:
            item["userId"] = f"u{k:06d}"
        if kind == "page":
            item.update(name="Product", properties={"path": f"/p/{k}", "title": "商品詳細 | ショップ"})
        elif kind == "track":
            item.update(event="Order Completed", properties={"price": 1200.0, "quantity": 2, "currency": "JPY",
                                                             "products": [{"sku": "A-1"}, {"sku": "B-2"}]})
        else:
            item["traits"] = {"email": f"user{k}@example.co.jp", "name": "山田 花子", "newsletter": True}
        items.append(item)
    return orjson.dumps({"batch": items, "sentAt": "2026-12-01T10:59:59.999Z"})


def no_parse_event(*_args: Any, **_kwargs: Any) -> bytes:
    raise AssertionError("the exact path (parse_event) ran")


def test_ordinary_sdk_traffic_takes_the_fast_path_without_parse_event(monkeypatch):
    """Otherwise the tests above could pass with a fast path that never answers: SDK traffic (Japanese
    text, iPhone user agents whose ``15E148`` looks like a number) is encoded by msgspec alone and
    decodes to parse_event's events."""
    bodies = [sdk_batch(100, offset) for offset in range(0, 600, 100)]
    references = [ordinary_batch(raw) for raw in bodies]
    monkeypatch.setattr(fastpath, "_exact", no_parse_event)
    for raw, reference in zip(bodies, references, strict=True):
        encoded, key = fastpath.encode_batch(raw, max_bytes=LIMIT)
        assert reference is not None and key is None
        assert canon(codec.decode(encoded.body)) == canon(applied(reference))


def test_rudderstack_identify_traits_from_the_batch_context_take_the_fast_path(monkeypatch):
    monkeypatch.setattr(fastpath, "_exact", no_parse_event)
    raw = orjson.dumps({
        "batch": [{"type": "identify", "anonymousId": "a-1", "messageId": "m"},
                  {"type": "page", "anonymousId": "a-1", "category": "Docs", "properties": {"path": "/"}},
                  {"type": "page", "anonymousId": "a-1", "category": "Docs", "properties": {"category": "Own"}}],
        "context": {"traits": {"email": "a@example.com"}, "library": {"name": "rudder"}},
    })
    events = fast_batch(raw)
    assert events is not None
    assert events[0].traits == {"email": "a@example.com"} and events[0].context["library"] == {"name": "rudder"}
    assert events[1].properties == {"path": "/", "category": "Docs"}
    assert events[2].properties == {"category": "Own"}
    assert canon(events) == canon(applied(ordinary_batch(raw) or []))


@pytest.mark.parametrize(
    "event",
    [
        _sdk_event(userId="anonymous"),
        _sdk_event(userId=" ", anonymousId="0000"),
        _sdk_event(event=""),
        _sdk_event(type="alias", previousId="null"),
        _sdk_event(type="group"),
        _sdk_event(timestamp="0001-01-01T00:00:00+14:00"),
        _sdk_event(properties=[1]),
        _sdk_event(messageId="m" * 101),
    ],
)
def test_an_invalid_event_sends_the_whole_request_to_the_ordinary_path(event):
    raw = orjson.dumps({"batch": [_sdk_event(messageId="ok"), event]})
    assert ordinary_batch(raw) is None
    with pytest.raises(Fallback):
        fastpath.encode_batch(raw, max_bytes=LIMIT)


@given(st.text(max_size=12) | placeholders)
@example("0\x1c")
@example("\u00a0null")
def test_the_ascii_placeholder_check_is_is_placeholder(value):
    assert fastpath.placeholder(value) == is_placeholder(value)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch_bodies())
def test_records_of_the_keyed_layout_still_decode_the_same(raw):
    """Records appended before the positional layout (orjson of the dataclasses) decode as before."""
    reference = ordinary_batch(raw)
    if reference is None:
        return
    keyed = orjson.dumps(reference, option=orjson.OPT_NON_STR_KEYS)
    assert canon(codec.decode(keyed)) == canon(codec.decode(codec.encode(reference)))
