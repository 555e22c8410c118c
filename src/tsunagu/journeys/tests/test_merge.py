"""A customer first anonymous, then identified: their profiles merge, and the run the anonymous profile was
on goes on as the merged customer's — the purchase made after signing in resumes it."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.journeys.models import Run
from tsunagu.journeys.services import journey_create, journey_publish
from tsunagu.journeys.tests.support import known_events

pytestmark = pytest.mark.django_db

CART = {"entry": {"event": "Checkout Started"},
        "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
        "steps": [{"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed",
                   "timeout_seconds": 3600, "on_event": "thanks", "on_timeout": "exit"},
                  {"id": "thanks", "type": "update_traits", "traits": {"bought_after_cart": True}}]}


@pytest.fixture
def cart(workspace: Any, send: Any) -> Any:
    known_events(send, "Checkout Started", "Order Completed")
    journey = journey_create(workspace=workspace, key="cart", name="Cart", definition=CART, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return journey


def test_the_anonymous_profiles_run_follows_the_merge(cart: Any, send: Any) -> None:
    send("/v1/identify", {"userId": "u-1", "traits": {"name": "花子"}})
    send("/v1/track", {"anonymousId": "phone", "event": "Checkout Started", "properties": {"cart_id": "c1"}})
    anonymous = Customer.objects.get(identities__value="phone")
    run = Run.objects.get(journey=cart)
    assert run.customer_id == anonymous.pk and run.status == Run.Status.WAITING
    send("/v1/identify", {"userId": "u-1", "anonymousId": "phone"})  # signs in on the phone: merged
    known = Customer.objects.get(user_id="u-1", merged_into__isnull=True)
    run.refresh_from_db()
    assert run.customer_id == known.pk and run.awaits == "Order Completed"  # what it awaits moved with it
    send("/v1/track", {"userId": "u-1", "event": "Order Completed"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.context["steps"]["wait_purchase"]["outcome"] == "event"
    actions = list(run.history.order_by("id").values_list("action", flat=True))
    assert actions[:3] == ["entered", "wait", "merged"]


def test_a_merged_away_run_that_duplicates_the_customers_own_is_cancelled(cart: Any, send: Any) -> None:
    send("/v1/track", {"userId": "u-1", "event": "Checkout Started", "properties": {"cart_id": "same"}})
    send("/v1/track", {"anonymousId": "phone", "event": "Checkout Started", "properties": {"cart_id": "same"}})
    assert Run.objects.filter(journey=cart).count() == 2
    send("/v1/identify", {"userId": "u-1", "anonymousId": "phone"})
    known = Customer.objects.get(user_id="u-1", merged_into__isnull=True)
    runs = {r.status: r for r in Run.objects.filter(journey=cart)}
    assert set(runs) == {Run.Status.WAITING, Run.Status.CANCELLED}
    assert runs[Run.Status.WAITING].customer_id == known.pk
    assert "merged into" in runs[Run.Status.CANCELLED].history.last().outcome["reason"]
    assert Run.objects.exclude(awaits="").get() == runs[Run.Status.WAITING]  # the cancelled one awaits nothing
