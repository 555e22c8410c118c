"""Two profiles tied by one event become one; the merge records what moved, why and from which event."""

from __future__ import annotations

import pytest

from tsunagu.customers.models import Customer, Identity, Merge
from tsunagu.events.models import Event

pytestmark = pytest.mark.django_db


def test_event_tying_two_profiles_merges_them(send):
    send("/v1/identify", {"userId": "u1", "traits": {"name": "山田 太郎", "plan": "gold"}})
    send("/v1/track", {"userId": "u1", "event": "Order Completed"})
    send("/v1/page", {"anonymousId": "phone-app", "name": "Top"})
    send("/v1/track", {"anonymousId": "phone-app", "event": "Coupon Viewed", "context": {"channel": "app"}})
    known = Customer.objects.get(user_id="u1")
    anonymous = Customer.objects.exclude(pk=known.pk).get()

    send("/v1/identify", {"userId": "u1", "anonymousId": "phone-app", "messageId": "tie-1"})

    live = Customer.objects.filter(merged_into__isnull=True)
    assert list(live) == [known]
    anonymous.refresh_from_db()
    assert anonymous.merged_into_id == known.pk
    assert set(Identity.objects.filter(customer=known).values_list("type", "value")) == {
        ("user_id", "u1"),
        ("anonymous_id", "phone-app"),
    }
    assert Event.objects.filter(customer=known).count() == 5
    assert not Event.objects.filter(customer=anonymous).exists()
    known.refresh_from_db()
    assert known.traits["plan"] == "gold"
    assert {"web", "app"} <= set(known.channels)
    assert known.event_count == 5

    merge = Merge.objects.get()
    assert (merge.into_id, merge.other_id) == (known.pk, anonymous.pk)
    assert merge.message_id == "tie-1"
    assert merge.event_type == "identify"
    assert merge.identities == [["anonymous_id", "phone-app"]]
    assert merge.events_moved == 2
    assert "u1" in merge.reason and "phone-app" in merge.reason
    assert merge.traits_before["into"]["plan"] == "gold"


def test_merge_by_shared_email(send):
    send("/v1/identify", {"anonymousId": "pc", "traits": {"email": "hanako@example.jp"}})
    send("/v1/identify", {"userId": "h1", "traits": {"phone": "080-1111-2222"}})
    send("/v1/identify", {"userId": "h1", "traits": {"email": "HANAKO@example.jp"}})
    live = Customer.objects.filter(merged_into__isnull=True)
    assert live.count() == 1
    assert Merge.objects.count() == 1


def test_merge_that_would_give_two_user_ids_is_refused(send):
    send("/v1/identify", {"userId": "u1", "traits": {"email": "shared@example.com"}})
    send("/v1/identify", {"userId": "u2", "anonymousId": "x"})
    send("/v1/identify", {"userId": "u2", "traits": {"email": "shared@example.com"}})
    assert Customer.objects.filter(merged_into__isnull=True).count() == 2
    assert not Merge.objects.exists()
    # the shared email stays with the profile that had it first
    assert Identity.objects.get(type="email").customer.user_id == "u1"


def test_merge_inside_one_batch(send):
    send("/v1/page", {"anonymousId": "d1", "name": "A"})
    send("/v1/page", {"anonymousId": "d2", "name": "B"})
    batch = [
        {"type": "identify", "anonymousId": "d1", "userId": "u1"},
        {"type": "identify", "anonymousId": "d2", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "Purchased"},
    ]
    assert send("/v1/batch", {"batch": batch})[0] == 200
    live = Customer.objects.filter(merged_into__isnull=True)
    assert live.count() == 1
    survivor = live.get()
    assert Event.objects.filter(customer=survivor).count() == 5
    assert Merge.objects.count() == 1
