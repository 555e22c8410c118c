"""One profile per customer: identities normalised, traits last-write-wins by event time, activity per channel."""

from __future__ import annotations

import pytest

from tsunagu.customers.models import Customer, Identity

pytestmark = pytest.mark.django_db


def identities(customer):
    return {(i.type, i.value) for i in Identity.objects.filter(customer=customer)}


def test_identify_normalises_email_and_phone(send):
    send(
        "/v1/identify",
        {"userId": "  u-1 ", "traits": {"email": "  Taro.Yamada@Example.JP ", "phone": "090-1234-5678"}},
    )
    customer = Customer.objects.get()
    assert identities(customer) == {
        ("user_id", "u-1"),
        ("email", "taro.yamada@example.jp"),
        ("phone", "+819012345678"),
    }
    assert customer.email == "taro.yamada@example.jp"
    assert customer.phone == "+819012345678"


def test_full_width_phone_and_email_are_folded(send):
    send(
        "/v1/identify",
        {"userId": "u1", "traits": {"email": "ＴＡＲＯ＠ＥＸＡＭＰＬＥ．ＪＰ", "phone": "０９０１２３４５６７８"}},
    )
    assert identities(Customer.objects.get()) >= {("email", "taro@example.jp"), ("phone", "+819012345678")}


def test_traits_are_last_write_wins_by_event_time_not_arrival(send):
    send("/v1/identify", {"userId": "u1", "traits": {"plan": "gold"}, "timestamp": "2026-01-02T00:00:00Z"})
    # An older event arriving later must not overwrite the newer value.
    send(
        "/v1/identify",
        {"userId": "u1", "traits": {"plan": "silver", "city": "Osaka"}, "timestamp": "2026-01-01T00:00:00Z"},
    )
    customer = Customer.objects.get()
    assert customer.traits == {"plan": "gold", "city": "Osaka"}


def test_first_last_seen_and_channel_activity(send):
    send(
        "/v1/track", {"userId": "u1", "event": "A", "timestamp": "2026-01-05T00:00:00Z", "context": {"channel": "line"}}
    )
    send("/v1/track", {"userId": "u1", "event": "B", "timestamp": "2026-01-01T00:00:00Z"})
    customer = Customer.objects.get()
    assert customer.first_seen.isoformat() == "2026-01-01T00:00:00+00:00"
    assert customer.last_seen.isoformat() == "2026-01-05T00:00:00+00:00"
    assert set(customer.channels) == {"line", "web"}
    assert customer.event_count == 2


def test_anonymous_history_joins_the_known_customer_on_identify(send):
    send("/v1/page", {"anonymousId": "device-1", "name": "Home"})
    send("/v1/track", {"anonymousId": "device-1", "event": "Added to Cart"})
    send("/v1/identify", {"anonymousId": "device-1", "userId": "u1", "traits": {"email": "a@example.com"}})
    assert Customer.objects.count() == 1
    customer = Customer.objects.get()
    assert identities(customer) == {("anonymous_id", "device-1"), ("user_id", "u1"), ("email", "a@example.com")}
    assert customer.event_count == 3


def test_alias_joins_previous_id(send):
    send("/v1/track", {"anonymousId": "old-anon", "event": "Viewed"})
    send("/v1/alias", {"previousId": "old-anon", "userId": "u9"})
    assert Customer.objects.count() == 1
    assert ("user_id", "u9") in identities(Customer.objects.get())


@pytest.mark.parametrize(
    "placeholder", ["", "anonymous", "null", "undefined", "0000000", "00000000-0000-0000-0000-000000000000"]
)
def test_placeholder_values_never_join_profiles(send, placeholder):
    send("/v1/identify", {"userId": "u1", "traits": {"email": "one@example.com"}, "anonymousId": placeholder or None})
    send("/v1/identify", {"userId": "u2", "traits": {"email": "two@example.com"}, "anonymousId": placeholder or None})
    assert Customer.objects.filter(merged_into__isnull=True).count() == 2


def test_one_user_id_per_profile_prevents_over_merging(send):
    # Two known customers share a family tablet (one anonymousId): they must stay two profiles.
    send("/v1/identify", {"userId": "mother", "anonymousId": "tablet"})
    send("/v1/identify", {"userId": "son", "anonymousId": "tablet"})
    live = Customer.objects.filter(merged_into__isnull=True)
    assert live.count() == 2
    assert {c.user_id for c in live} == {"mother", "son"}


def test_external_ids_become_identities(send):
    send(
        "/v1/track",
        {
            "anonymousId": "a1",
            "event": "Linked",
            "context": {
                "externalIds": [
                    {"id": "U4af4980629", "type": "line_user_id", "collection": "users", "encoding": "none"}
                ]
            },
        },
    )
    assert ("external:line_user_id", "U4af4980629") in identities(Customer.objects.get())


def test_batch_resolves_events_in_order(send):
    batch = [
        {"type": "page", "anonymousId": "d1", "name": "Home"},
        {"type": "identify", "anonymousId": "d1", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "Order Completed"},
        {"type": "page", "anonymousId": "d2", "name": "Home"},
    ]
    assert send("/v1/batch", {"batch": batch})[0] == 200
    assert Customer.objects.count() == 2
    u1 = Customer.objects.get(user_id="u1")
    assert u1.event_count == 3
