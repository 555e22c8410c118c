"""An event whose only identifiers are placeholders ("anonymous", "null", "0000" …) identifies nobody: it is
refused with a 400 naming the field, as Segment refuses an event with neither userId nor anonymousId —
instead of creating a new empty profile every time. A placeholder beside a usable identifier is accepted,
and only the usable one is used (see customers/tests/test_placeholder_identities.py)."""

from __future__ import annotations

import pytest

from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.testing.assertions import assert_names

pytestmark = pytest.mark.django_db

PLACEHOLDERS = [
    "anonymous",
    "Anonymous",
    "null",
    "NULL",
    "undefined",
    "none",
    "unknown",
    "0",
    "-1",
    "0000",
    "00000000-0000-0000-0000-000000000000",
    " null ",
    "ｎｕｌｌ",  # full width: folded by NFKC like every identifier
    0,
    -1,
]


@pytest.mark.parametrize("value", PLACEHOLDERS)
@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_an_event_identified_only_by_a_placeholder_is_refused(send, field, value):
    status, body = send("/v1/track", {field: value, "event": "Clicked"})
    assert_names(status, body, 400, field)
    assert "placeholder" in body["message"], body
    assert Event.objects.count() == 0
    assert Customer.objects.count() == 0


def test_both_identifiers_placeholders_names_both(send):
    status, body = send("/v1/page", {"userId": "null", "anonymousId": "undefined"})
    assert_names(status, body, 400, "userId")
    assert [e["field"] for e in body["errors"]] == ["userId", "anonymousId"]


def test_placeholder_only_events_in_a_batch_are_rejected_by_index(send):
    batch = [
        {"type": "track", "userId": "anonymous", "event": "X", "messageId": "ph-0"},
        {"type": "track", "userId": "u1", "event": "X", "messageId": "ok-1"},
        {"type": "identify", "anonymousId": "0000", "traits": {"plan": "gold"}, "messageId": "ph-2"},
    ]
    status, body = send("/v1/batch", {"batch": batch})
    assert status == 200, body
    assert body["accepted"] == 1
    assert [(r["index"], [e["field"] for e in r["errors"]]) for r in body["rejected"]] == [
        (0, ["batch[0].userId"]),
        (2, ["batch[2].anonymousId"]),
    ]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok-1"]
    assert Customer.objects.count() == 1


@pytest.mark.parametrize(("field", "value"), [("userId", "null"), ("previousId", "anonymous")])
def test_an_alias_needs_real_ids_on_both_sides(send, field, value):
    event = {"userId": "u1", "previousId": "a1", field: value}
    status, body = send("/v1/alias", event)
    assert_names(status, body, 400, field)
    assert "placeholder" in body["message"], body
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "event", [{"userId": "null", "anonymousId": "a1"}, {"userId": "u1", "anonymousId": "undefined"}]
)
def test_a_placeholder_beside_a_usable_id_is_accepted(send, event):
    status, body = send("/v1/track", {**event, "event": "Clicked"})
    assert (status, body) == (200, {"success": True})
    assert Event.objects.count() == 1
    assert Customer.objects.count() == 1


def test_repeated_placeholder_events_create_no_profiles(send):
    for _ in range(5):
        assert send("/v1/track", {"userId": "anonymous", "event": "Clicked"})[0] == 400
    assert Customer.objects.count() == 0
