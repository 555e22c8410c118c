"""``event_identities`` (the outboxes' bulk read) gives each customer exactly what ``customer_event_identity``
gives one: userId or an anonymous id, and the other identities as externalIds, at most 20."""

from __future__ import annotations

import pytest

from tsunagu.customers.models import Customer, Identity
from tsunagu.customers.selectors import customer_event_identity, event_identities

pytestmark = pytest.mark.django_db


def _customer(workspace, user_id: str, idents: list[tuple[str, str]]) -> Customer:
    customer = Customer.objects.create(workspace=workspace, user_id=user_id)
    Identity.objects.bulk_create([Identity(workspace=workspace, customer=customer, type=t, value=v) for t, v in idents])
    return customer


def test_the_bulk_read_equals_the_one_customer_read(workspace):
    customers = [
        _customer(workspace, "u1", [("user_id", "u1"), ("email", "a@example.com"), ("external:shopify", "9")]),
        _customer(workspace, "", [("anonymous_id", "dev-1"), ("anonymous_id", "dev-2"), ("phone", "+8190")]),
        _customer(workspace, "", [("email", "only@example.com")]),
        _customer(workspace, "", []),
        # More identities than an event carries: the bulk read keeps the first 20 by id.
        _customer(
            workspace,
            "u5",
            [("user_id", "u5")] + [("anonymous_id", f"many-{i}") for i in range(30)] + [("email", "late@example.com")],
        ),
    ]
    bulk = event_identities(customer_ids=[c.pk for c in customers] + [customers[0].pk])
    assert set(bulk) == {c.pk for c in customers}
    for customer in customers[:4]:  # (the fifth: which 20 the one-customer read takes is unordered)
        one = Customer.objects.prefetch_related("identities").get(pk=customer.pk)
        assert bulk[customer.pk] == customer_event_identity(one)
    assert bulk[customers[0].pk] == {
        "userId": "u1",
        "context": {"externalIds": [{"type": "email", "id": "a@example.com"}, {"type": "shopify", "id": "9"}]},
    }
    assert bulk[customers[1].pk]["anonymousId"] == "dev-1"
    assert bulk[customers[2].pk]["anonymousId"] == f"tsunagu-customer-{customers[2].pk}"
    assert bulk[customers[4].pk] == {"userId": "u5"}  # the email is the 32nd identity: not carried


def test_a_deleted_customer_is_absent(workspace):
    gone = _customer(workspace, "u1", [("user_id", "u1")])
    kept = _customer(workspace, "u2", [("user_id", "u2")])
    gone_pk = gone.pk
    gone.delete()
    assert event_identities(customer_ids=[gone_pk, kept.pk]) == {kept.pk: {"userId": "u2"}}


def test_more_customers_than_one_in_list(workspace, monkeypatch):
    from tsunagu.customers import selectors

    monkeypatch.setattr(selectors, "IN_CHUNK", 3)
    customers = [_customer(workspace, f"u{i}", [("user_id", f"u{i}"), ("email", f"{i}@example.com")]) for i in range(8)]
    bulk = event_identities(customer_ids=[c.pk for c in customers])
    assert [bulk[c.pk]["context"]["externalIds"][0]["id"] for c in customers] == [f"{i}@example.com" for i in range(8)]
