"""The Segment-compatible endpoints store events and answer as Segment does."""

from __future__ import annotations

import datetime as dt

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "body", "field", "value"),
    [
        (
            "/v1/track",
            {"userId": "u1", "event": "Order Completed", "properties": {"total": 1200}},
            "event",
            "Order Completed",
        ),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}, "name", "Home"),
        ("/v1/screen", {"anonymousId": "a1", "name": "Cart"}, "name", "Cart"),
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "gold"}}, "traits", {"plan": "gold"}),
        ("/v1/group", {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}, "group_id", "g1"),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "previous_id", "a1"),
    ],
)
def test_each_endpoint_stores_its_type(send, path, body, field, value):
    status, answer = send(path, body)
    assert (status, answer) == (200, {"success": True})
    stored = Event.objects.get()
    assert stored.type == path.rsplit("/", 1)[1]
    assert getattr(stored, field) == value


def test_write_key_in_body_is_accepted(send, source):
    status, _ = send("/v1/track", {"userId": "u1", "event": "X", "writeKey": source.write_key}, auth=False)
    assert status == 200
    assert Event.objects.count() == 1


def test_repeated_message_id_is_stored_once(send):
    body = {"userId": "u1", "event": "Clicked", "messageId": "m-1"}
    assert send("/v1/track", body)[0] == 200
    assert send("/v1/track", body)[0] == 200
    assert send("/v1/batch", {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]})[0] == 200
    assert Event.objects.filter(message_id="m-1").count() == 1


def test_timestamp_is_corrected_for_device_clock_skew(send):
    # The device clock is 1 hour fast: it stamped the event at 10:00 and sent it at 10:05 device time.
    original = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)
    sent = original + dt.timedelta(minutes=5)
    status, _ = send(
        "/v1/track",
        {"userId": "u1", "event": "X", "timestamp": original.isoformat(), "sentAt": sent.isoformat()},
    )
    assert status == 200
    event = Event.objects.get()
    assert event.original_timestamp == original
    assert abs((event.received_at - event.timestamp) - dt.timedelta(minutes=5)) < dt.timedelta(milliseconds=1)


def test_timestamp_without_sent_at_is_kept(send):
    original = dt.datetime(2025, 6, 1, 9, 30, tzinfo=dt.UTC)
    send("/v1/track", {"userId": "u1", "event": "X", "timestamp": "2025-06-01T18:30:00+09:00"})
    assert Event.objects.get().timestamp == original


def test_gzip_body(send):
    status, _ = send("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]}, gzip_body=True)
    assert status == 200
    assert Event.objects.get().event == "Zipped"


@pytest.mark.parametrize(
    ("context", "channel"),
    [
        ({"channel": "line"}, "line"),
        ({"channel": "call_center"}, "call_center"),
        ({"channel": "mobile"}, "app"),
        ({"library": {"name": "analytics-ios", "version": "4"}}, "app"),
        ({}, "web"),
    ],
)
def test_channel_from_context_or_source(send, context, channel):
    send("/v1/track", {"userId": "u1", "event": "X", "context": context})
    assert Event.objects.get().channel == channel


def test_channel_defaults_to_the_sources(send, workspace):
    from tsunagu.events.services import source_create

    store = source_create(workspace=workspace, name="POS", channel="store", actor=SYSTEM)
    send("/v1/track", {"userId": "u1", "event": "Purchase"}, write_key=store.write_key)
    assert Event.objects.get().channel == "store"
