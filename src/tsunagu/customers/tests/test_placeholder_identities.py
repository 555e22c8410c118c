"""Placeholder values never become identities, so they never join two customers' profiles: not as a
userId or anonymousId beside a usable one, not as an email or a phone, not as an external id."""

from __future__ import annotations

import pytest

from tsunagu.customers.models import Customer, Identity
from tsunagu.customers.normalize import is_placeholder

pytestmark = pytest.mark.django_db


def live():
    return Customer.objects.filter(merged_into__isnull=True)


@pytest.mark.parametrize("value", ["null", "anonymous", "0000", "00000000-0000-0000-0000-000000000000", "-1"])
def test_a_placeholder_user_id_beside_real_anonymous_ids_joins_nothing(send, value):
    # A broken SDK sends userId "null" from two customers' devices.
    assert send("/v1/identify", {"userId": value, "anonymousId": "device-1", "traits": {"name": "A"}})[0] == 200
    assert send("/v1/identify", {"userId": value, "anonymousId": "device-2", "traits": {"name": "B"}})[0] == 200
    assert live().count() == 2
    assert set(Identity.objects.values_list("type", "value")) == {
        ("anonymous_id", "device-1"),
        ("anonymous_id", "device-2"),
    }


@pytest.mark.parametrize("value", ["undefined", "0", "unknown"])
def test_a_placeholder_anonymous_id_beside_real_user_ids_joins_nothing(send, value):
    assert send("/v1/track", {"userId": "u1", "anonymousId": value, "event": "X"})[0] == 200
    assert send("/v1/track", {"userId": "u2", "anonymousId": value, "event": "X"})[0] == 200
    assert live().count() == 2
    assert set(Identity.objects.values_list("type", "value")) == {("user_id", "u1"), ("user_id", "u2")}


@pytest.mark.parametrize(
    ("traits", "blocked"),
    [
        ({"email": "anonymous@example.com"}, "email"),
        ({"email": "test@example.com"}, "email"),
        ({"phone": "000-0000-0000"}, "phone"),
        ({"phone": "00000000000"}, "phone"),
    ],
)
def test_placeholder_emails_and_phones_join_nothing(send, traits, blocked):
    assert send("/v1/identify", {"anonymousId": "device-1", "traits": traits})[0] == 200
    assert send("/v1/identify", {"anonymousId": "device-2", "traits": traits})[0] == 200
    assert live().count() == 2
    assert not Identity.objects.filter(type=blocked).exists()


def test_placeholder_external_ids_join_nothing(send):
    for device in ("device-1", "device-2"):
        context = {"externalIds": [{"type": "line_user_id", "id": "undefined"}]}
        assert send("/v1/track", {"anonymousId": device, "event": "X", "context": context})[0] == 200
    assert live().count() == 2
    assert not Identity.objects.filter(type="external:line_user_id").exists()


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("anonymous", True),
        ("NULL", True),
        ("  ", True),
        ("ｎｕｌｌ", True),
        ("0000", True),
        ("0.0", True),
        ("00000000-0000-0000-0000-000000000000", True),
        ("-1", True),
        ("u1", False),
        ("0001", False),
        ("TM0000428", False),
        ("山田", False),
    ],
)
def test_is_placeholder(value, placeholder):
    assert is_placeholder(value) is placeholder
