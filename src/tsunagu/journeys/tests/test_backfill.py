"""``journey_backfill``: stored events replayed through one journey in time order, the engine's turns at the
times runs fell due, the sends recorded then; events outside [since, until) and other journeys untouched."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.journeys.backfill import journey_backfill
from tsunagu.journeys.models import Run, RunHistory
from tsunagu.journeys.services import journey_create, journey_publish
from tsunagu.journeys.tests.support import run_of
from tsunagu.messaging.models import Send
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db

CART = {
    "entry": {"event": "Checkout Started"},
    "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "reminder"},
        {"id": "reminder", "type": "send", "communication": "notice"},
    ],
}


def _at(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def history(workspace: Any, send: Any) -> dict[str, Any]:
    """Ten days ago: four shoppers' checkouts and orders, stored (and applied) before any journey existed."""
    inapp_communication(workspace)
    t0 = clock.now().replace(microsecond=0) - dt.timedelta(days=10)
    for uid in ("quick", "never", "later", "early"):
        identified(send, workspace, user_id=uid, name=uid)

    def track(uid: str, name: str, at: dt.datetime, **props: Any) -> None:
        status, body = send("/v1/track", {"userId": uid, "event": name, "timestamp": _at(at), "properties": props})
        assert status == 200, body

    track("early", "Checkout Started", t0 - dt.timedelta(days=5), cart_id="e-1")  # before `since`
    track("quick", "Checkout Started", t0, cart_id="q-1")
    track("never", "Checkout Started", t0 + dt.timedelta(minutes=5), cart_id="n-1")
    track("later", "Checkout Started", t0 + dt.timedelta(minutes=10), cart_id="l-1")
    track("quick", "Order Completed", t0 + dt.timedelta(minutes=20))
    track("later", "Order Completed", t0 + dt.timedelta(days=2))
    journey = journey_create(workspace=workspace, key="cart", name="Cart", definition=CART, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return {"t0": t0, "journey": journey}


def test_the_replay_runs_each_wait_to_its_own_time_and_records_sends_then(history: dict[str, Any]) -> None:
    t0, journey = history["t0"], history["journey"]
    stats = journey_backfill(journey=journey, since=t0 - dt.timedelta(days=1), until=t0 + dt.timedelta(days=7))

    assert (stats.entered, stats.woken) == (3, 1)
    quick = run_of("cart", "quick")
    assert quick.status == Run.Status.EXITED and quick.goal_at == t0 + dt.timedelta(minutes=20)
    # As live: the purchase resumed the wait (its on_event is exit), and it is the goal: converted.
    assert quick.context["steps"]["wait_purchase"]["event"]["event"] == "Order Completed"
    assert list(quick.history.order_by("id").values_list("action", flat=True)) == [
        "entered", "wait", "event", "done", "exited", "goal"]
    # The timeout fired an hour after the checkout, not at the next stored event (two days later).
    never = run_of("cart", "never")
    assert never.status == Run.Status.COMPLETED and never.goal_at is None
    (reminder,) = Send.objects.filter(customer=never.customer)
    assert reminder.created_at == t0 + dt.timedelta(minutes=65)
    assert RunHistory.objects.get(run=never, step="wait_purchase", action="done").at == reminder.created_at
    # Reminded at t0+1h10, bought two days later: inside the goal's three days.
    later = run_of("cart", "later")
    assert later.status == Run.Status.COMPLETED and later.goal_at == t0 + dt.timedelta(days=2)
    assert later.entered_at == t0 + dt.timedelta(minutes=10)
    assert Send.objects.count() == 2
    assert not Run.objects.filter(customer__user_id="early").exists()  # before `since`


def test_until_leaves_runs_waiting_as_they_were_then(history: dict[str, Any]) -> None:
    t0, journey = history["t0"], history["journey"]
    journey_backfill(journey=journey, since=t0, until=t0 + dt.timedelta(minutes=30))
    # At t0+30min: "quick" bought and left, the others still wait for their hour.
    assert run_of("cart", "quick").status == Run.Status.EXITED
    for uid in ("never", "later"):
        run = run_of("cart", uid)
        assert (run.status, run.step) == (Run.Status.WAITING, "wait_purchase")
    assert run_of("cart", "never").due_at == t0 + dt.timedelta(minutes=65)
    assert Send.objects.count() == 0


def test_only_the_journey_replayed_is_touched(history: dict[str, Any], workspace: Any) -> None:
    t0, journey = history["t0"], history["journey"]
    other = journey_create(workspace=workspace, key="other", name="Other", definition=CART, actor=SYSTEM)
    journey_publish(journey=other, actor=SYSTEM)
    journey_backfill(journey=journey, since=t0, until=t0 + dt.timedelta(days=7))
    assert Run.objects.filter(journey=journey).count() == 3
    assert not Run.objects.filter(journey=other).exists()


def test_a_failure_rolls_the_whole_replay_back(history: dict[str, Any], monkeypatch: Any) -> None:
    t0, journey = history["t0"], history["journey"]
    from tsunagu.journeys import backfill

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(backfill, "runs_execute", broken)
    with pytest.raises(RuntimeError):
        journey_backfill(journey=journey, since=t0, until=t0 + dt.timedelta(days=7))
    assert not Run.objects.filter(journey=journey).exists()


def test_a_purchase_after_the_goal_window_does_not_convert(history: dict[str, Any], send: Any) -> None:
    t0, journey = history["t0"], history["journey"]
    at = t0 + dt.timedelta(days=3, minutes=6)  # the checkout at t0+5min, the goal's three days just passed
    status, _ = send("/v1/track", {"userId": "never", "event": "Order Completed", "timestamp": _at(at)})
    assert status == 200
    journey_backfill(journey=journey, since=t0, until=t0 + dt.timedelta(days=7))
    never = run_of("cart", "never")
    assert never.status == Run.Status.COMPLETED and never.goal_at is None
    assert run_of("cart", "later").goal_at == t0 + dt.timedelta(days=2)
