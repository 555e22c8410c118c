"""Pause and resume without starting over, with the clock moved: one customer's run paused mid-wait and
resumed after the wait would have ended goes on at the same step; an event awaited while the run (or the
whole journey) was paused is matched on resume; a journey paused runs nothing, its new entries wait, and its
timers that fell due run on resume. Every pause and resume is in the run's history with its actor."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.journeys.models import Run
from tsunagu.journeys.services import (
    journey_create,
    journey_pause,
    journey_publish,
    journey_resume,
    run_pause,
    run_resume,
)
from tsunagu.journeys.tests.support import engine_pass, known_events, path, run_of
from tsunagu.messaging.models import Send
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db

DRIP = {
    "entry": {"event": "Signed Up"},
    "steps": [
        {"id": "first", "type": "send", "communication": "notice"},
        {"id": "wait_day", "type": "wait", "seconds": 86400},
        {"id": "second", "type": "send", "communication": "notice"},
        {"id": "wait_order", "type": "wait_for_event", "event": "Order Completed", "timeout_seconds": 7 * 86400,
         "on_event": "thanks", "on_timeout": "exit"},
        {"id": "thanks", "type": "update_traits", "traits": {"ordered_after_drip": True}},
    ],
}


@pytest.fixture
def drip(workspace: Any, send: Any) -> Any:
    inapp_communication(workspace)
    known_events(send, "Signed Up", "Order Completed")
    journey = journey_create(workspace=workspace, key="drip", name="Drip", definition=DRIP, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return journey


def _sends(user_id: str) -> int:
    return Send.objects.filter(customer__user_id=user_id).count()


def test_a_run_paused_mid_wait_and_resumed_after_it_would_have_ended_continues_at_the_same_step(
        drip: Any, send: Any, workspace: Any) -> None:
    identified(send, workspace, user_id="u-1")
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-1", "event": "Signed Up"})
        engine_pass()
        run = run_of("drip", "u-1")
        assert (run.step, run.status, _sends("u-1")) == ("wait_day", Run.Status.WAITING, 1)
        traveller.shift(dt.timedelta(hours=3))
        run_pause(run=run, actor=SYSTEM)
        traveller.shift(dt.timedelta(days=2))  # the wait ended while paused: nothing runs
        assert engine_pass() == 0
        assert (run_of("drip", "u-1").step, _sends("u-1")) == ("wait_day", 1)
        run_resume(run=run_of("drip", "u-1"), actor=SYSTEM)
        engine_pass()
    run = run_of("drip", "u-1")
    # On at the step where it stopped: the second send, once; the first was not sent again.
    assert (run.step, run.status, _sends("u-1")) == ("wait_order", Run.Status.WAITING, 2)
    assert path(run) == [("first", "entered"), ("first", "step"), ("wait_day", "wait"), ("wait_day", "paused"),
                         ("wait_day", "resumed"), ("wait_day", "done"), ("second", "step"), ("wait_order", "wait")]
    paused = run.history.get(action="paused")
    assert paused.actor == "system" and paused.outcome == {"scope": "run"}


def test_an_event_awaited_while_the_run_was_paused_is_matched_on_resume(drip: Any, send: Any,
                                                                         workspace: Any) -> None:
    identified(send, workspace, user_id="u-2")
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-2", "event": "Signed Up"})
        engine_pass()
        traveller.shift(dt.timedelta(days=1, seconds=1))
        engine_pass()
        assert run_of("drip", "u-2").step == "wait_order"
        run_pause(run=run_of("drip", "u-2"), actor=SYSTEM)
        send("/v1/track", {"userId": "u-2", "event": "Order Completed"})
        engine_pass()
        run = run_of("drip", "u-2")
        assert (run.status, run.step) == (Run.Status.PAUSED, "wait_order")  # kept, not taken
        assert run.context["steps"]["wait_order"]["event"]["event"] == "Order Completed"
        traveller.shift(dt.timedelta(days=30))  # long past the timeout: the event still wins
        run_resume(run=run, actor=SYSTEM)
        engine_pass()
    run = run_of("drip", "u-2")
    assert run.status == Run.Status.COMPLETED
    assert run.context["steps"]["wait_order"]["outcome"] == "event"
    assert ("thanks", "step") in path(run)
    assert run.history.get(action="event").outcome["while_paused"] is True


def test_a_paused_journey_runs_nothing_and_goes_on_where_every_run_stopped(drip: Any, send: Any,
                                                                          workspace: Any) -> None:
    for uid in ("u-3", "u-4"):
        identified(send, workspace, user_id=uid)
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-3", "event": "Signed Up"})
        engine_pass()
        journey_pause(journey=drip, actor=SYSTEM)
        # An entry while paused is recorded and waits; a timer falling due does not fire.
        send("/v1/track", {"userId": "u-4", "event": "Signed Up"})
        traveller.shift(dt.timedelta(days=1, hours=1))
        send("/v1/track", {"userId": "u-3", "event": "Order Completed"})  # not awaited yet: u-3 is at wait_day
        assert engine_pass() == 0
        assert (run_of("drip", "u-4").step, _sends("u-4")) == ("first", 0)
        assert (run_of("drip", "u-3").step, _sends("u-3")) == ("wait_day", 1)
        journey_resume(journey=drip, actor=SYSTEM)
        engine_pass()
    assert (run_of("drip", "u-3").step, _sends("u-3")) == ("wait_order", 2)  # the due timer ran, once
    assert (run_of("drip", "u-4").step, _sends("u-4")) == ("wait_day", 1)  # the held entry started
    assert {"paused", "resumed"} <= {a for _, a in path(run_of("drip", "u-3"))}
    assert [a for _, a in path(run_of("drip", "u-4"))][:2] == ["entered", "resumed"]  # entered held, no pause
    assert run_of("drip", "u-4").history.get(action="entered").outcome == {"via": "event", "held": True}


def test_an_event_awaited_while_the_journey_was_paused_is_matched_on_resume(drip: Any, send: Any,
                                                                             workspace: Any) -> None:
    identified(send, workspace, user_id="u-5")
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-5", "event": "Signed Up"})
        engine_pass()
        traveller.shift(dt.timedelta(days=1, seconds=1))
        engine_pass()
        journey_pause(journey=drip, actor=SYSTEM)
        send("/v1/track", {"userId": "u-5", "event": "Order Completed"})
        assert engine_pass() == 0
        journey_resume(journey=drip, actor=SYSTEM)
        engine_pass()
    run = run_of("drip", "u-5")
    assert run.status == Run.Status.COMPLETED and run.context["steps"]["wait_order"]["outcome"] == "event"


def test_pausing_twice_or_resuming_what_is_not_paused_is_refused(drip: Any, send: Any, workspace: Any) -> None:
    from tsunagu.core.errors import Conflict

    identified(send, workspace, user_id="u-6")
    send("/v1/track", {"userId": "u-6", "event": "Signed Up"})
    run = run_of("drip", "u-6")
    with pytest.raises(Conflict):
        run_resume(run=run, actor=SYSTEM)
    journey_pause(journey=drip, actor=SYSTEM)
    with pytest.raises(Conflict):
        journey_pause(journey=drip, actor=SYSTEM)


def test_runs_waiting_for_an_event_migrated_to_a_new_version_await_its_event(drip: Any, send: Any,
                                                                              workspace: Any) -> None:
    from tsunagu.journeys.services import journey_update, runs_migrate

    known_events(send, "Order Shipped")
    identified(send, workspace, user_id="u-7")
    with time_machine.travel(clock.now(), tick=False) as traveller:
        send("/v1/track", {"userId": "u-7", "event": "Signed Up"})
        engine_pass()
        traveller.shift(dt.timedelta(days=1, seconds=1))
        engine_pass()
        v2 = {**DRIP, "steps": [*DRIP["steps"][:3], {**DRIP["steps"][3], "event": "Order Shipped"},
                                DRIP["steps"][4]]}
        journey_update(journey=drip, definition=v2, actor=SYSTEM)
        journey_publish(journey=drip, actor=SYSTEM)
        assert runs_migrate(journey=drip, from_version=1, to_version=2, actor=SYSTEM) == {"moved": 1, "refused": []}
        assert run_of("drip", "u-7").awaits == "Order Shipped"
        send("/v1/track", {"userId": "u-7", "event": "Order Completed"})  # version 1's event: no longer awaited
        engine_pass()
        assert run_of("drip", "u-7").status == Run.Status.WAITING
        send("/v1/track", {"userId": "u-7", "event": "Order Shipped"})
        engine_pass()
    run = run_of("drip", "u-7")
    assert (run.status, run.version.number) == (Run.Status.COMPLETED, 2)
    assert run.history.get(action="migrated").outcome == {"from_version": 1, "to_version": 2}
