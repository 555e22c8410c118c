"""An onboarding journey with a split and a goal, with the clock moved: customers are assigned to the split's
paths stably by their id (the holdout exits and is still measured), the goal counts first orders within 14
days, and the monitoring figures — funnel per step, time between steps, split results with a Wilson
interval — are what the runs did."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.journeys.models import Run
from tsunagu.journeys.plans import split_bucket
from tsunagu.journeys.services import journey_create, journey_publish
from tsunagu.journeys.stats import journey_stats, wilson
from tsunagu.journeys.tests.support import engine_pass, known_events
from tsunagu.messaging.models import Send
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db

ONBOARDING = {
    "entry": {"event": "Signed Up"},
    "goal": {"event": "Order Completed", "within": {"days": 14}},
    "steps": [
        {"id": "welcome", "type": "send", "communication": "welcome"},
        {"id": "wait_2d", "type": "wait", "seconds": 2 * 86400},
        {"id": "test", "type": "split", "holdout": 10,
         "paths": [{"percent": 45, "next": "coupon", "name": "coupon"},
                   {"percent": 45, "next": "tips", "name": "tips"}]},
        {"id": "coupon", "type": "send", "communication": "coupon", "next": "exit"},
        {"id": "tips", "type": "send", "communication": "tips"},
    ],
}
USERS = [f"u-{n}" for n in range(100)]  # every path taken whatever the ids (a 10 % holdout)


@pytest.fixture
def onboarding(workspace: Any, send: Any) -> Any:
    for key in ("welcome", "coupon", "tips"):
        inapp_communication(workspace, key=key)
    known_events(send, "Signed Up", "Order Completed")
    journey = journey_create(workspace=workspace, key="onboarding", name="Onboarding", definition=ONBOARDING,
                             actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return journey


def _labels(journey: Any) -> dict[str, str]:
    return {r.customer.user_id: r.context.get("split", {}).get("test", "")
            for r in Run.objects.filter(journey=journey).select_related("customer")}


def test_the_split_is_stable_per_customer_the_holdout_exits_and_the_goal_is_measured(onboarding: Any, send: Any,
                                                                                     workspace: Any) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/batch", {"batch": [{"type": "track", "userId": u, "event": "Signed Up"} for u in USERS]})
        engine_pass(rounds=10)
        assert Send.objects.filter(communication__key="welcome").count() == len(USERS)
        traveller.shift(dt.timedelta(days=2, minutes=1))
        engine_pass(rounds=10)
        labels = _labels(onboarding)
        # Every customer on exactly the path its bucket says: stable, independent of arrival order.
        for run in Run.objects.filter(journey=onboarding):
            bucket = split_bucket(onboarding.pk, "test", run.customer_id)
            expected = "holdout" if bucket < 10 else "coupon" if bucket < 55 else "tips"
            assert labels[run.customer.user_id] == expected
        assert set(labels.values()) == {"holdout", "coupon", "tips"}
        holdout = [u for u, label in labels.items() if label == "holdout"]
        assert all(run.status == Run.Status.EXITED for run in Run.objects.filter(customer__user_id__in=holdout))
        assert Send.objects.filter(communication__key="coupon").count() == list(labels.values()).count("coupon")
        held_out = Send.objects.filter(communication__key__in=["coupon", "tips"], customer__user_id__in=holdout)
        assert held_out.count() == 0
        # Orders: every coupon customer on day 5; one tips customer after the 14 days (not a conversion).
        buyers = [u for u, label in labels.items() if label == "coupon"]
        late = next(u for u, label in labels.items() if label == "tips")
        traveller.shift(dt.timedelta(days=3))
        send("/v1/batch", {"batch": [{"type": "track", "userId": u, "event": "Order Completed"} for u in buyers]})
        traveller.shift(dt.timedelta(days=10))
        send("/v1/track", {"userId": late, "event": "Order Completed"})
    stats = journey_stats(journey=onboarding)
    assert stats["entries"] == len(USERS) and stats["converted"] == len(buyers)
    (split,) = stats["splits"]
    by_path = {p["path"]: p for p in split["paths"]}
    assert by_path["coupon"]["converted"] == by_path["coupon"]["runs"] == len(buyers)
    assert by_path["tips"]["converted"] == 0 and by_path["holdout"]["converted"] == 0
    low, high = wilson(0, by_path["tips"]["runs"])
    assert by_path["tips"]["ci95"] == [round(low, 4), round(high, 4)] and high > 0
    steps = {s["id"]: s for s in stats["steps"]}
    assert steps["welcome"]["completed"] == len(USERS)
    assert steps["wait_2d"]["reached"] == steps["wait_2d"]["completed"] == len(USERS)
    # The time between the welcome and the end of the wait: two days and a minute, for everyone.
    assert steps["wait_2d"]["median_seconds"] == steps["wait_2d"]["p90_seconds"] == 2 * 86400 + 60
    assert steps["coupon"]["completed"] == len(buyers)
    assert steps["test"]["completed"] == len(USERS)


def test_wilson_interval_matches_known_values() -> None:
    # 8 of 10: the textbook 95 % Wilson interval is [0.4902, 0.9433].
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 0) == (0.0, 0.0)
    assert wilson(0, 20)[0] == 0.0 and 0 < wilson(0, 20)[1] < 0.2


def test_stats_filter_by_entry_date_and_segment(onboarding: Any, send: Any, workspace: Any) -> None:
    from tsunagu.segments.services import segment_create

    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/identify", {"userId": "u-1", "traits": {"plan": "gold"}})
        send("/v1/track", {"userId": "u-1", "event": "Signed Up"})
        traveller.shift(dt.timedelta(days=3))
        send("/v1/track", {"userId": "u-2", "event": "Signed Up"})
        engine_pass()
        today = clock.now().date()
    gold, _ = segment_create(workspace=workspace, key="gold", name="Gold", actor=SYSTEM,
                             rule={"trait": "plan", "op": "eq", "value": "gold"})
    assert journey_stats(journey=onboarding)["entries"] == 2
    assert journey_stats(journey=onboarding, since=today)["entries"] == 1
    assert journey_stats(journey=onboarding, until=today - dt.timedelta(days=1))["entries"] == 1
    assert journey_stats(journey=onboarding, segment=gold)["entries"] == 1
