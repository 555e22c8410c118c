"""Bad input gets a clear 4xx naming the field at fault, never a 5xx; valid events in a batch are kept."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from typing import Any

import orjson
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.testing.assertions import assert_names, fields_named

pytestmark = pytest.mark.django_db


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_json(levels: int) -> bytes:
    """Deep nesting as raw JSON text (building it as Python objects would hit the recursion limit)."""
    return b'{"a":' * (levels - 1) + b'{"leaf":1}' + b"}" * (levels - 1)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


# -- the request envelope -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "why"),
    [
        (b'{"userId": "u1", "event": ', "body", "not valid JSON"),
        (b"", "body", "empty"),
        (b"[1, 2, 3]", "body", "JSON object"),
        (b'"just a string"', "body", "JSON object"),
        (b"null", "body", "JSON object"),
        (b"\xff\xfe\x00garbage", "body", "not valid JSON"),
        (b'{"userId": "\\ud800", "event": "x"}', "body", "not valid JSON"),
        (b'{"userId": "u1", "event": "x", "properties": {"n": NaN}}', "body", "not valid JSON"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_unreadable_bodies(send, path, raw, field, why):
    status, body = send(path, None, raw=raw)
    assert_names(status, body, 400, field)
    assert why in body["message"]
    assert Event.objects.count() == 0


def test_bad_gzip(send):
    status, body = send(
        "/v1/batch", None, raw=b"\x1f\x8b\x08\x00 this is not deflate data", headers={"Content-Encoding": "gzip"}
    )
    assert_names(status, body, 400, "Content-Encoding")
    assert "gzip" in body["message"]


def test_truncated_gzip(send):
    whole = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "x"}]}))
    status, body = send("/v1/batch", None, raw=whole[: len(whole) // 2], headers={"Content-Encoding": "gzip"})
    # A truncated stream inflates to a prefix of the JSON without a zlib error: the JSON is what fails.
    assert_names(status, body, 400, "body")
    assert "not valid JSON" in body["message"]
    assert Event.objects.count() == 0


def test_unknown_content_encoding(send):
    status, body = send("/v1/track", None, raw=b"{}", headers={"Content-Encoding": "br"})
    assert_names(status, body, 415, "Content-Encoding")


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch", "/v1/identify"])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method(path, method):
    response = getattr(Client(), method)(path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in orjson.loads(response.content)["message"]


# -- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body_key", "why", "field"),
    [
        ({}, None, "write key missing", "writeKey"),
        ({"Authorization": basic("no-such-key")}, None, "unknown write key", "writeKey"),
        ({"Authorization": basic("x" * 500)}, None, "unknown write key", "writeKey"),
        ({"Authorization": basic("")}, None, "write key missing", "writeKey"),
        ({"Authorization": "Basic !!!not-base64!!!"}, None, "not valid Basic", "Authorization"),
        ({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()}, None, "not valid", "Authorization"),
        ({"Authorization": basic("key\x00with-nul")}, None, "unknown write key", "writeKey"),
        ({}, "no-such-key", "unknown write key", "writeKey"),
        ({}, 12345, "must be a string", "writeKey"),
        ({}, {"k": "v"}, "must be a string", "writeKey"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_bad_write_keys_are_401(source, path, headers, body_key, why, field):
    event = {"userId": "u1", "event": "X", "type": "track"}
    payload: dict[str, Any] = {"batch": [event]} if path.endswith("batch") else dict(event)
    if body_key is not None:
        payload["writeKey"] = body_key
    response = Client().post(path, orjson.dumps(payload), content_type="application/json", headers=headers)
    body = orjson.loads(response.content)
    assert_names(response.status_code, body, 401, field)
    assert body["code"] == "unauthenticated"
    assert why in body["message"], body
    assert Event.objects.count() == 0


# -- one event: wrong types and missing fields ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "event", "field"),
    [
        ("/v1/track", {"userId": {"id": 1}, "event": "X"}, "userId"),
        ("/v1/track", {"userId": ["u1"], "event": "X"}, "userId"),
        ("/v1/track", {"userId": True, "event": "X"}, "userId"),
        ("/v1/track", {"anonymousId": {"a": 1}, "event": "X"}, "anonymousId"),
        ("/v1/track", {"userId": "u" * 300, "event": "X"}, "userId"),
        ("/v1/track", {"userId": "u1", "event": "X", "properties": [1, 2]}, "properties"),
        ("/v1/track", {"userId": "u1", "event": "X", "properties": "a=b"}, "properties"),
        ("/v1/track", {"userId": "u1", "event": "X", "context": [1]}, "context"),
        ("/v1/track", {"userId": "u1", "event": "X", "integrations": "all"}, "integrations"),
        ("/v1/track", {"userId": "u1", "event": "X", "timestamp": "yesterday"}, "timestamp"),
        ("/v1/track", {"userId": "u1", "event": "X", "timestamp": 1700000000}, "timestamp"),
        ("/v1/track", {"userId": "u1", "event": "X", "timestamp": "2026-13-45T00:00:00Z"}, "timestamp"),
        ("/v1/track", {"userId": "u1", "event": "X", "sentAt": "soon"}, "sentAt"),
        ("/v1/track", {"userId": "u1", "event": 42}, "event"),
        ("/v1/track", {"userId": "u1", "event": ["X"]}, "event"),
        ("/v1/track", {"userId": "u1", "event": "E" * 500}, "event"),
        ("/v1/track", {"userId": "u1", "event": "X", "messageId": 7}, "messageId"),
        ("/v1/track", {"userId": "u1", "event": "X", "messageId": "m" * 101}, "messageId"),
        ("/v1/track", {"userId": "u1"}, "event"),
        ("/v1/track", {"userId": "u1", "event": ""}, "event"),
        ("/v1/track", {"event": "X"}, "userId"),
        ("/v1/track", {"userId": "", "anonymousId": "  ", "event": "X"}, "userId"),
        ("/v1/page", {"anonymousId": "a1", "name": {"title": "Home"}}, "name"),
        ("/v1/page", {"properties": {}}, "userId"),
        ("/v1/identify", {"userId": "u1", "traits": ["gold"]}, "traits"),
        ("/v1/identify", {"traits": {"email": "a@example.com"}}, "userId"),
        ("/v1/group", {"userId": "u1"}, "groupId"),
        ("/v1/group", {"userId": "u1", "groupId": {"id": 1}}, "groupId"),
        ("/v1/alias", {"userId": "u1"}, "previousId"),
        ("/v1/alias", {"previousId": "a1"}, "userId"),
        ("/v1/alias", {"userId": "u1", "previousId": ["a1"]}, "previousId"),
    ],
)
def test_single_event_errors_name_the_field(send, path, event, field):
    status, body = send(path, event)
    assert_names(status, body, 400, field)
    assert Event.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"userId": "u1", "event": "X"}, "batch[0].type"),
        ({"type": "purchase", "userId": "u1"}, "batch[0].type"),
        ({"type": 7, "userId": "u1"}, "batch[0].type"),
        ({"type": "track", "userId": "u1"}, "batch[0].event"),
        ({"type": "alias", "userId": "u1"}, "batch[0].previousId"),
        ({"type": "track", "event": "X"}, "batch[0].userId"),
        ("not an event", "batch[0]"),
        (None, "batch[0]"),
    ],
)
def test_batch_item_errors_are_indexed(send, event, field):
    status, body = send("/v1/batch", {"batch": [event]})
    assert_names(status, body, 400, field)
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0]


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({}, "batch"),
        ({"batch": None}, "batch"),
        ({"batch": {"type": "track"}}, "batch"),
        ({"batch": "[]"}, "batch"),
        ({"batch": []}, "batch"),
        ({"batch": [{"type": "track", "userId": "u", "event": "x"}], "sentAt": "not a date"}, "sentAt"),
    ],
)
def test_batch_envelope_errors(send, envelope, field):
    status, body = send("/v1/batch", envelope)
    assert_names(status, body, 400, field)
    assert Event.objects.count() == 0


def test_batch_keeps_the_valid_events_and_lists_the_rejected_by_index(send):
    batch = [
        {"type": "track", "userId": "u1", "event": "Good 0", "messageId": "ok-0"},
        {"type": "track", "userId": {"id": 1}, "event": "Bad 1", "messageId": "bad-1"},
        {"type": "identify", "userId": "u1", "traits": {"plan": "gold"}, "messageId": "ok-2"},
        {"type": "track", "userId": "u1", "messageId": "bad-3"},
        {"type": "page", "anonymousId": "a1", "properties": [1], "timestamp": "nope", "messageId": "bad-4"},
        "garbage",
        {"type": "alias", "userId": "u1", "previousId": "a9", "messageId": "ok-6"},
    ]
    status, body = send("/v1/batch", {"batch": batch})
    assert status == 200, body
    assert body["success"] is True
    assert body["accepted"] == 3
    rejected = {r["index"]: r for r in body["rejected"]}
    assert set(rejected) == {1, 3, 4, 5}
    assert {e["field"] for e in rejected[1]["errors"]} == {"batch[1].userId"}
    assert {e["field"] for e in rejected[3]["errors"]} == {"batch[3].event"}
    # Every problem of an event is named, not only the first.
    assert {e["field"] for e in rejected[4]["errors"]} == {"batch[4].properties", "batch[4].timestamp"}
    assert {e["field"] for e in rejected[5]["errors"]} == {"batch[5]"}
    assert rejected[1]["messageId"] == "bad-1"
    assert rejected[5]["messageId"] is None
    assert all(e["message"] for r in rejected.values() for e in r["errors"])
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["ok-0", "ok-2", "ok-6"]


# -- sizes and nesting --------------------------------------------------------------------------


def test_oversized_single_event(send):
    status, body = send("/v1/track", {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}})
    assert_names(status, body, 413, "body")
    assert "32 KB" in body["message"]
    assert Event.objects.count() == 0


def test_oversized_single_event_hidden_by_gzip(send):
    status, body = send(
        "/v1/track", {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 40_000}}, gzip_body=True
    )
    assert_names(status, body, 413, "body")
    assert Event.objects.count() == 0


def test_oversized_event_in_a_batch_is_rejected_alone(send):
    batch = [
        {"type": "track", "userId": "u1", "event": "Small", "messageId": "small"},
        {"type": "track", "userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}, "messageId": "big"},
    ]
    status, body = send("/v1/batch", {"batch": batch})
    assert status == 200, body
    assert [r["index"] for r in body["rejected"]] == [1]
    assert body["rejected"][0]["errors"][0]["field"] == "batch[1]"
    assert "KB" in body["rejected"][0]["errors"][0]["message"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["small"]


def test_oversized_batch(send):
    batch = [{"type": "track", "userId": f"u{i}", "event": "X", "properties": {"p": "y" * 1000}} for i in range(600)]
    status, body = send("/v1/batch", {"batch": batch})
    assert_names(status, body, 413, "body")
    assert "500 KB" in body["message"]
    assert Event.objects.count() == 0


def test_body_far_over_the_limit_is_refused_before_reading(send):
    status, body = send("/v1/batch", None, raw=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert_names(status, body, 413, "body")


def test_gzip_bomb_is_refused(send):
    # 64 MB of zeros squeezed into ~64 KB: it must be refused without being inflated whole.
    inflated = b'{"batch": [{"type": "track", "userId": "u", "event": "' + b"0" * (64 * 1024 * 1024) + b'"}]}'
    wrapped = gzip.compress(inflated, 9)
    assert len(wrapped) < 200_000
    status, body = send("/v1/batch", None, raw=wrapped, headers={"Content-Encoding": "gzip"})
    assert_names(status, body, 413, "body")
    assert "decompressed" in body["message"]
    assert Event.objects.count() == 0


def test_gzip_just_past_the_batch_limit(send):
    batch = [{"type": "track", "userId": "u", "event": "X", "properties": {"p": "z" * 30_000}} for _ in range(18)]
    raw = orjson.dumps({"batch": batch})
    assert 500 * 1024 < len(raw) < 600 * 1024
    status, body = send("/v1/batch", None, raw=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert_names(status, body, 413, "body")


@pytest.mark.parametrize("levels", [33, 100, 300, 1000])
def test_deep_nesting_in_an_event(send, levels):
    status, body = send(
        "/v1/track", None, raw=b'{"userId": "u1", "event": "Deep", "properties": ' + nested_json(levels) + b"}"
    )
    assert_names(status, body, 400, "body")
    assert "nested deeper than 32 levels" in body["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("levels", [100, 300, 1000])
def test_deep_nesting_in_a_batch_rejects_only_that_event(send, levels):
    raw = (
        b'{"batch": [{"type": "track", "userId": "u1", "event": "Flat", "messageId": "flat"},'
        b'{"type": "track", "userId": "u1", "event": "Deep", "properties": ' + nested_json(levels) + b"}]}"
    )
    status, body = send("/v1/batch", None, raw=raw)
    assert status == 200, body
    assert [r["index"] for r in body["rejected"]] == [1]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["flat"]


def test_nesting_deeper_than_the_json_parser_allows(send):
    status, body = send("/v1/batch", None, raw=b'{"batch": [' + nested_json(5000) + b"]}")
    assert_names(status, body, 400, "body")


def test_nesting_within_the_limit_is_stored(send):
    status, body = send("/v1/track", {"userId": "u1", "event": "Nested", "properties": nested(20)})
    assert status == 200, body
    assert Event.objects.get().properties == nested(20)


# -- values a database may refuse --------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"userId": "u\x001", "event": "X"}, "userId"),
        ({"anonymousId": "a\x00", "event": "X"}, "anonymousId"),
        ({"userId": "u1", "event": "X\x00"}, "event"),
        ({"userId": "u1", "event": "X", "messageId": "m\x00"}, "messageId"),
        ({"userId": "u1", "event": "X", "properties": {"note": "a\x00b"}}, "properties.note"),
        # A NUL in a key is named escaped, so the answer itself holds no NUL.
        ({"userId": "u1", "event": "X", "properties": {"k\x00": 1}}, "properties.k\\u0000"),
        ({"userId": "u1", "event": "X", "context": {"traits": {"email": "a\x00@example.com"}}}, "context.traits.email"),
    ],
)
def test_nul_characters_are_refused_by_name(send, event, field):
    # PostgreSQL cannot keep U+0000 in text or jsonb, so it is refused on every database alike.
    status, body = send("/v1/track", event)
    assert_names(status, body, 400, field)
    assert body["message"] == f"{field}: must not contain the NUL character (U+0000)"
    assert Event.objects.count() == 0


def test_a_nul_in_one_batch_event_rejects_only_that_event(send):
    batch = [
        {"type": "track", "userId": "u1", "event": "Fine", "messageId": "fine"},
        {"type": "track", "userId": "u1", "event": "X", "properties": {"list": ["ok", "a\x00"]}, "messageId": "nul"},
    ]
    status, body = send("/v1/batch", {"batch": batch})
    assert status == 200, body
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "messageId": "nul",
            "errors": [
                {"field": "batch[1].properties.list[1]", "message": "must not contain the NUL character (U+0000)"}
            ],
        }
    ]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["fine"]


def test_an_escaped_backslash_before_u0000_is_not_a_nul(send):
    # The JSON text holds \\u0000 (a backslash, then "u0000"): a plain string, stored as sent.
    status, body = send("/v1/track", {"userId": "u1", "event": "X", "properties": {"path": "C:\\u0000"}})
    assert status == 200, body
    assert Event.objects.get().properties == {"path": "C:\\u0000"}


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("0001-01-01T00:00:00+14:00", None),
        ("9999-12-31T23:59:59-12:00", None),
    ],
)
def test_timestamps_without_a_utc_time_are_a_400(send, timestamp, sent_at):
    # These have no UTC datetime at all, so there is nothing to keep as originalTimestamp.
    status, body = send("/v1/track", {"userId": "u1", "event": "X", "timestamp": timestamp})
    assert_names(status, body, 400, "timestamp")
    assert "out of range once converted to UTC" in body["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("0001-01-01T00:00:00+00:00", None),
        ("0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"),
        ("9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_extreme_timestamps_are_kept_at_the_receive_time(send, timestamp, sent_at):
    # Outside the event-time window (docs/ingestion.md): stored, at the time received, the device's kept.
    status, body = send("/v1/track", {"userId": "u1", "event": "X", "timestamp": timestamp, "sentAt": sent_at})
    assert (status, body) == (200, {"success": True})
    stored = Event.objects.get()
    assert stored.timestamp == stored.received_at
    assert stored.original_timestamp == dt.datetime.fromisoformat(timestamp)


# -- no input produces a 5xx (property test) ------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
field_names = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "name",
        "properties",
        "traits",
        "context",
        "timestamp",
        "sentAt",
        "messageId",
        "previousId",
        "groupId",
        "integrations",
        "category",
        "writeKey",
    ]
)
field_values = (
    json_values
    | st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "u1", "2026-01-01T00:00:00Z"])
    | st.datetimes(timezones=st.just(None)).map(lambda d: d.isoformat())
)
events = st.dictionaries(field_names, field_values, max_size=8) | json_values
bodies = (
    st.fixed_dictionaries(
        {},
        optional={"batch": st.lists(events, max_size=5) | json_values, "sentAt": field_values, "context": json_values},
    )
    | events
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/v1/batch", "/v1/track"]), as_gzip=st.booleans())
def test_random_bodies_never_produce_a_5xx(send, body, path, as_gzip):
    # The standard library's encoder, because it writes integers beyond 64 bits (orjson refuses them).
    status, answer = send(path, None, raw=json.dumps(body).encode(), gzip_body=as_gzip)
    # The key is always sent and valid, and no generated body reaches a size limit: stored or refused.
    assert status in (200, 400), (status, answer)
    if status != 200:
        assert answer["message"]
        assert fields_named(answer), answer


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    path=st.sampled_from(["/v1/batch", "/v1/track"]),
)
def test_random_bytes_never_produce_a_5xx(send, raw, path):
    status, answer = send(path, None, raw=raw)
    # Random bytes are never a valid event (the key in the header is): the body is what is refused.
    assert status == 400, (status, answer)
    assert answer["message"]
    assert fields_named(answer), answer
