"""The event-time window: a device clock far in the future or implausibly far in the past does not decide
when an event happened. The event is kept, its time becomes the time it was received, and the device's
value stays in ``original_timestamp`` — so one broken clock cannot pin a customer to the top of "recent"
(or push a date past what the console can render)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.customers.models import Customer
from tsunagu.customers.selectors import customer_recent
from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _post(send: Any, path: str, event: dict[str, Any]) -> None:
    if path == "/v1/batch":
        status, body = send(path, {"batch": [{**event, "type": "track"}]})
    else:
        status, body = send(path, event)
    assert (status, body) == (200, {"success": True})


def _stored_at(send: Any, path: str, timestamp: str, **extra: str) -> Event:
    with time_machine.travel(NOW, tick=False):
        _post(send, path, {"userId": "u1", "event": "X", "timestamp": timestamp, **extra})
    return Event.objects.get()


PATHS = ["/v1/track", "/v1/batch"]


@pytest.mark.parametrize("path", PATHS)
def test_year_9999_is_stored_at_the_receive_time_with_the_original_kept(send, path):
    event = _stored_at(send, path, "9999-12-31T23:59:59Z")
    assert event.received_at == NOW
    assert event.timestamp == NOW
    assert event.original_timestamp == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert Customer.objects.get().last_seen == NOW


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("timestamp", "kept"),
    [
        # Ahead of the receive time: up to one day is a wrong time zone or a fast clock, kept as given.
        ("2026-11-20T10:00:01Z", True),
        ("2026-11-20T23:00:00Z", True),
        ("2026-11-21T10:00:00Z", True),  # exactly one day ahead: the last value kept
        ("2026-11-21T10:00:00.000001Z", False),
        ("2026-11-21T10:00:01Z", False),
        ("2027-01-01T00:00:00Z", False),
        # Behind it: history back to 2000 is kept (imports), earlier is a reset clock.
        ("2026-11-20T09:00:00Z", True),
        ("2003-04-01T09:00:00+09:00", True),
        ("2000-01-01T00:00:00Z", True),  # the first value kept
        ("1999-12-31T23:59:59.999999Z", False),
        ("1970-01-01T00:00:00Z", False),
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_the_window_boundaries(send, path, timestamp, kept):
    event = _stored_at(send, path, timestamp)
    given = dt.datetime.fromisoformat(timestamp)
    assert event.original_timestamp == given
    assert event.timestamp == (given if kept else NOW)


@pytest.mark.parametrize("path", PATHS)
def test_the_window_applies_to_the_corrected_time(send, path):
    # A device clock a century fast, sending at once: the skew correction alone gives the right time.
    event = _stored_at(send, path, "2126-11-20T09:59:00Z", sentAt="2126-11-20T10:00:00Z")
    assert event.timestamp == NOW - dt.timedelta(minutes=1)
    # A sentAt two days before the event's own time would put it two days ahead of now: refused.
    Event.objects.all().delete()
    event = _stored_at(send, path, "2026-11-22T10:00:00Z", sentAt="2026-11-20T10:00:00Z")
    assert event.timestamp == NOW


@pytest.mark.parametrize("path", PATHS)
def test_a_correction_that_leaves_the_calendar_takes_the_receive_time(send, path):
    event = _stored_at(send, path, "9999-12-31T00:00:00Z", sentAt="0001-01-01T00:00:00Z")
    assert event.timestamp == NOW


def test_a_far_future_event_does_not_keep_a_customer_at_the_top_of_recent(send, workspace):
    with time_machine.travel(NOW, tick=False):
        _post(send, "/v1/track", {"userId": "broken-clock", "event": "X", "timestamp": "9999-12-31T23:59:59Z"})
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        _post(send, "/v1/track", {"userId": "later", "event": "X"})
    recent = customer_recent(workspace=workspace)
    assert [c.user_id for c in recent] == ["later", "broken-clock"]
