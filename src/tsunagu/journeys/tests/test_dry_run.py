"""A dry run plays a draft against the last N days of real events: how many would enter, take each branch,
be sent what, reach the goal — and it writes nothing and sends nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.tests.test_roles import state
from tsunagu.journeys.models import Run, RunHistory
from tsunagu.journeys.services import journey_create
from tsunagu.messaging.models import Send
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db

API = "/api/v1"
CART = {
    "entry": {"event": "Checkout Started"},
    "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "big"},
        {"id": "big", "type": "branch", "rule": {"journey": "entry.event.properties.total", "op": "gte",
                                                  "value": 10000}, "then": "reminder", "else": "exit"},
        {"id": "reminder", "type": "send", "communication": "notice"},
    ],
}


def test_a_dry_run_counts_entries_branches_sends_and_goals_and_writes_nothing(workspace: Any, send: Any,
                                                                              api: Any) -> None:
    inapp_communication(workspace)
    start = clock.now() - dt.timedelta(days=5)
    with time_machine.travel(start, tick=False) as traveller:
        for uid in ("a", "b", "c", "d"):
            identified(send, workspace, user_id=uid)

        def track(uid: str, event: str, **props: Any) -> None:
            send("/v1/track", {"userId": uid, "event": event, "properties": props,
                               "timestamp": clock.now().isoformat()})

        track("a", "Checkout Started", cart_id="1", total=20000)  # buys in 10 minutes: exits, converts
        track("b", "Checkout Started", cart_id="2", total=20000)  # no purchase: reminded
        track("c", "Checkout Started", cart_id="3", total=500)  # small cart: no reminder
        track("d", "Checkout Started", cart_id="4", total=15000)  # reminded, buys on day 2: converts
        traveller.shift(dt.timedelta(minutes=10))
        track("a", "Order Completed")
        traveller.shift(dt.timedelta(days=2))
        track("d", "Order Completed")
        traveller.shift(dt.timedelta(days=2))
    journey = journey_create(workspace=workspace, key="cart", name="Cart", definition=CART, actor=SYSTEM)
    before = (state(), Run.objects.count(), RunHistory.objects.count(), Send.objects.count())
    status, body = api.post(f"{API}/journeys/cart/dry-run", {"days": 7})
    assert status == 200, body
    assert (state(), Run.objects.count(), RunHistory.objects.count(), Send.objects.count()) == before
    assert journey.current_version == 0
    assert (body["entered"], body["converted"]) == (4, 2)
    steps = {s["id"]: s for s in body["steps"]}
    assert steps["wait_purchase"]["outcomes"] == {"event": 1, "timeout": 3}
    assert steps["big"]["outcomes"] == {"then": 2, "else": 1}
    assert body["sends"] == {"notice": 2}
    # The window is the last N days up to now: the checkouts, five days ago, are outside a one-day one.
    status, body = api.post(f"{API}/journeys/cart/dry-run", {"days": 1})
    assert (status, body["entered"]) == (200, 0)


def test_a_dry_run_refuses_bad_days_and_entries_it_cannot_replay(workspace: Any, send: Any, api: Any) -> None:
    inapp_communication(workspace)
    journey_create(workspace=workspace, key="api", name="API", actor=SYSTEM,
                   definition={"entry": {"api": True}, "steps": [{"id": "x", "type": "exit"}]})
    status, body = api.post(f"{API}/journeys/api/dry-run", {"days": 7})
    assert (status, body["field"]) == (400, "definition.entry")
    for days in (0, 91, "7", None):
        status, body = api.post(f"{API}/journeys/api/dry-run", {"days": days})
        assert status == 400 and body["field"] in ("days", "definition.entry"), (days, body)
    status, body = api.post(f"{API}/journeys/api/dry-run", {"days": 7, "definition": {
        "entry": {}, "steps": [{"id": "x", "type": "exit"}]}})
    assert (status, body["field"]) == (400, "definition.entry")
