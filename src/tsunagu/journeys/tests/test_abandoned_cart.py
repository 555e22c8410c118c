"""The abandoned-cart journey with the clock moved: a checkout waits up to an hour for the purchase; without
it, a reminder goes out through the failover policy (LINE, then email); the goal is a purchase within three
days. Against the LINE stand-in and a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.journeys.models import Run
from tsunagu.journeys.services import journey_create, journey_publish
from tsunagu.journeys.tests.support import known_events, path, run_of, settle
from tsunagu.messaging.models import Delivery, Send
from tsunagu.messaging.services import channel_create, communication_create
from tsunagu.testing.standins.line import LineStandIn, user_id
from tsunagu.testing.standins.smtp import SMTPStandin

pytestmark = pytest.mark.django_db

CART = {
    "entry": {"event": "Checkout Started"},
    "reentry": {"policy": "per_entry_key", "entry_key": "event.properties.cart_id"},
    "goal": {"event": "Order Completed", "within": {"days": 3}},
    "steps": [
        {"id": "wait_purchase", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 3600,
         "on_event": "exit", "on_timeout": "reminder"},
        {"id": "reminder", "type": "send", "communication": "cart-reminder",
         "policy": {"steps": [{"channel": "line"}, {"channel": "email"}]}},
    ],
}


@pytest.fixture
def line():
    with LineStandIn() as standin:
        yield standin


@pytest.fixture
def smtp():
    with SMTPStandin() as server:
        yield server


@pytest.fixture
def cart(workspace: Any, send: Any, line: Any, smtp: Any) -> Any:
    channel_create(workspace=workspace, type="line", name="LINE", config=line.channel_config(), actor=SYSTEM)
    channel_create(workspace=workspace, type="email", name="SMTP", actor=SYSTEM,
                   config={"host": smtp.host, "port": smtp.port, "security": "none", "from_email": "shop@example.jp"})
    communication_create(
        workspace=workspace, key="cart-reminder", name="Cart reminder", topic="transactional", actor=SYSTEM,
        variants=[
            {"channel": "line", "locale": "ja",
             "text": "カート {{ journey.entry.event.properties.cart_id }} が残っています"},
            {"channel": "email", "locale": "ja", "subject": "お買い忘れはありませんか",
             "html": "<p>cart {{ journey.entry.event.properties.cart_id }}</p>"},
        ],
    )
    known_events(send, "Checkout Started", "Order Completed")
    journey = journey_create(workspace=workspace, key="cart", name="Abandoned cart", definition=CART, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return journey


def _shopper(send: Any, uid: str, *, line_id: str | None = None) -> None:
    context = {"externalIds": [{"type": "line_user_id", "id": line_id}]} if line_id else {}
    status, _ = send("/v1/identify", {"userId": uid, "traits": {"name": "花子", "email": f"{uid}@example.jp"},
                                      "context": context})
    assert status == 200


def test_no_purchase_within_the_hour_sends_the_reminder_by_line(cart: Any, send: Any, workspace: Any,
                                                                 line: Any, smtp: Any) -> None:
    _shopper(send, "u-1", line_id=user_id())
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-1", "event": "Checkout Started", "properties": {"cart_id": "c-42"}})
        settle(workspace)
        run = run_of("cart", "u-1")
        assert (run.status, run.step) == (Run.Status.WAITING, "wait_purchase")
        assert Send.objects.count() == 0
        traveller.shift(dt.timedelta(minutes=59))
        settle(workspace)
        assert Send.objects.count() == 0 and run_of("cart", "u-1").status == Run.Status.WAITING
        traveller.shift(dt.timedelta(minutes=2))
        settle(workspace)
    run = run_of("cart", "u-1")
    assert run.status == Run.Status.COMPLETED
    (pushed,) = line.wait_for_deliveries(1)
    assert pushed.messages[0]["text"] == "カート c-42 が残っています"
    assert smtp.messages == []
    assert run.context["steps"]["wait_purchase"]["outcome"] == "timeout"
    assert run.context["steps"]["reminder"]["outcome"] in ("sent", "delivered")
    assert path(run) == [("wait_purchase", "entered"), ("wait_purchase", "wait"), ("wait_purchase", "done"),
                         ("reminder", "step"), ("reminder", "completed")]


def test_line_failing_the_reminder_arrives_by_email(cart: Any, send: Any, workspace: Any, line: Any,
                                                    smtp: Any) -> None:
    _shopper(send, "u-2", line_id=user_id())
    line.reply(line.permanent("The user has blocked the account"))
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-2", "event": "Checkout Started", "properties": {"cart_id": "c-7"}})
        settle(workspace)
        traveller.shift(dt.timedelta(hours=1, seconds=1))
        settle(workspace)
    (mail,) = smtp.wait_for(1)
    assert "cart c-7" in mail.message.get_body(("html",)).get_content()
    channels = list(Delivery.objects.order_by("id").values_list("channel_type", "status"))
    assert [c for c, _ in channels] == ["line", "email"]
    run = run_of("cart", "u-2")
    # The delivery outcomes came back as events: the run knows the channel that worked.
    assert run.context["steps"]["reminder"]["channel"] == "email"
    assert run.context["steps"]["reminder"]["outcome"] == "sent"


def test_a_purchase_within_the_hour_exits_without_a_reminder_and_converts(cart: Any, send: Any,
                                                                            workspace: Any, line: Any) -> None:
    _shopper(send, "u-3", line_id=user_id())
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-3", "event": "Checkout Started", "properties": {"cart_id": "c-1"}})
        settle(workspace)
        traveller.shift(dt.timedelta(minutes=20))
        send("/v1/track", {"userId": "u-3", "event": "Order Completed", "properties": {"total": 4200}})
        settle(workspace)
        traveller.shift(dt.timedelta(hours=2))
        settle(workspace)
    run = run_of("cart", "u-3")
    assert run.status == Run.Status.EXITED and run.goal_at is not None
    assert Send.objects.count() == 0 and line.deliveries == []
    assert ("wait_purchase", "event") in path(run) and ("wait_purchase", "goal") in path(run)


def test_a_purchase_two_days_after_the_reminder_counts_as_the_goal_and_after_three_does_not(
        cart: Any, send: Any, workspace: Any, line: Any) -> None:
    for uid in ("u-4", "u-5"):
        _shopper(send, uid, line_id=user_id())
    with time_machine.travel(clock.now(), tick=False) as traveller:
        for uid in ("u-4", "u-5"):
            send("/v1/track", {"userId": uid, "event": "Checkout Started", "properties": {"cart_id": f"c-{uid}"}})
        settle(workspace)
        traveller.shift(dt.timedelta(hours=2))
        settle(workspace)
        assert run_of("cart", "u-4").status == Run.Status.COMPLETED
        traveller.shift(dt.timedelta(days=2))
        send("/v1/track", {"userId": "u-4", "event": "Order Completed"})
        traveller.shift(dt.timedelta(days=1, hours=1))
        send("/v1/track", {"userId": "u-5", "event": "Order Completed"})
        settle(workspace)
    assert run_of("cart", "u-4").goal_at is not None
    assert run_of("cart", "u-5").goal_at is None


def test_each_cart_is_its_own_run_and_the_same_cart_enters_once(cart: Any, send: Any, workspace: Any) -> None:
    _shopper(send, "u-6")
    for cart_id in ("a", "b", "a"):
        send("/v1/track", {"userId": "u-6", "event": "Checkout Started", "properties": {"cart_id": cart_id}})
    settle(workspace, messaging=False)
    keys = sorted(Run.objects.filter(customer__user_id="u-6").values_list("entry_key", flat=True))
    assert keys == ["a", "b"]
