"""How many identities of each type one profile may hold: one userId, five emails, five phones, five of each
external id type, any number of anonymousIds. The limits are what stop a shared device, a shared mailbox or
a bad import from merging many customers into one profile."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.customers.models import Customer, Identity, IdentityType, Merge

pytestmark = pytest.mark.django_db


def live():
    return Customer.objects.filter(merged_into__isnull=True)


def values(type_: str) -> list[str]:
    return sorted(Identity.objects.filter(type=type_).values_list("value", flat=True))


def _email(i: int) -> dict[str, Any]:
    return {"traits": {"email": f"m{i}@example.jp"}}


def _phone(i: int) -> dict[str, Any]:
    return {"traits": {"phone": f"090-1234-000{i}"}}


def _line(i: int) -> dict[str, Any]:
    return {"context": {"externalIds": [{"type": "line_user_id", "id": f"U{i}"}]}}


KINDS = [
    ("email", _email, [f"m{i}@example.jp" for i in range(1, 6)]),
    ("phone", _phone, [f"+81901234000{i}" for i in range(1, 6)]),
    ("external:line_user_id", _line, [f"U{i}" for i in range(1, 6)]),
]


def test_the_limits():
    assert IdentityType.limit("user_id") == 1
    assert IdentityType.limit("email") == 5
    assert IdentityType.limit("phone") == 5
    assert IdentityType.limit("external:line_user_id") == 5
    assert IdentityType.limit("anonymous_id") is None


@pytest.mark.parametrize(("type_", "make", "kept"), KINDS, ids=[k[0] for k in KINDS])
def test_a_profile_takes_five_of_a_type_and_no_sixth(send, type_, make, kept):
    for i in range(1, 7):
        assert send("/v1/identify", {"userId": "u1", **make(i)})[0] == 200
    assert live().count() == 1
    assert values(type_) == kept  # the first five, in arrival order; the sixth is not an identity at all
    assert live().get().event_count == 6


def test_a_profile_takes_one_user_id(send):
    # A second userId on an event found by the first (as an external id of type user_id) is not attached.
    context = {"externalIds": [{"type": "user_id", "id": "u2"}]}
    assert send("/v1/track", {"userId": "u1", "event": "X", "context": context})[0] == 200
    assert values("user_id") == ["u1"]
    assert live().count() == 1


def test_anonymous_ids_are_unlimited(send):
    for i in range(12):
        assert send("/v1/identify", {"userId": "u1", "anonymousId": f"device-{i}"})[0] == 200
    assert live().count() == 1
    assert len(values("anonymous_id")) == 12


def _profile_with_emails(send: Any, device: str, emails: list[str]) -> None:
    for email in emails:
        assert send("/v1/identify", {"anonymousId": device, "traits": {"email": email}})[0] == 200


def test_a_merge_that_would_pass_a_limit_is_refused(send):
    _profile_with_emails(send, "pc", ["a1@example.jp", "a2@example.jp", "a3@example.jp"])
    _profile_with_emails(send, "phone", ["b1@example.jp", "b2@example.jp", "b3@example.jp"])
    assert live().count() == 2
    # One event ties the two (the phone's anonymousId with an email of the pc's profile): six emails in all.
    assert send("/v1/identify", {"anonymousId": "phone", "traits": {"email": "a1@example.jp"}})[0] == 200
    assert live().count() == 2
    assert not Merge.objects.exists()


def test_a_merge_up_to_a_limit_goes_ahead(send):
    _profile_with_emails(send, "pc", ["a1@example.jp", "a2@example.jp"])
    _profile_with_emails(send, "phone", ["b1@example.jp", "b2@example.jp", "b3@example.jp"])
    assert send("/v1/identify", {"anonymousId": "phone", "traits": {"email": "a1@example.jp"}})[0] == 200
    assert live().count() == 1
    assert Merge.objects.count() == 1
    assert len(values("email")) == 5
