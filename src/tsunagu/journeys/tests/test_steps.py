"""Each step type doing what docs/journeys.md says: a webhook signed per Standard Webhooks with its answer in
the context (and refused on a private address unless allowed), trait updates reaching the profile through
the ingest log, follow-up tasks, branches on the context and on the profile, waits until a time of day in
the customer's zone and until a trait's date, ``exit_when``, and entries from a segment and a schedule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.jobs import jobs_run_due
from tsunagu.core.permissions import SYSTEM
from tsunagu.customers.models import Customer
from tsunagu.journeys.models import Run, Task
from tsunagu.journeys.secrets import journey_webhook_secret
from tsunagu.journeys.services import journey_create, journey_publish, run_start
from tsunagu.journeys.tests.support import engine_pass, known_events, path, settle
from tsunagu.messaging.tests.helpers import identified
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.webhook import WebhookReceiver

pytestmark = pytest.mark.django_db


def _journey(workspace: Any, definition: dict[str, Any], key: str = "j") -> Any:
    journey = journey_create(workspace=workspace, key=key, name=key, definition=definition, actor=SYSTEM)
    journey_publish(journey=journey, actor=SYSTEM)
    return journey


def _start(journey: Any, customer: Any, **data: Any) -> Run:
    return run_start(journey=journey, customer_id=customer.pk, data=data, actor=SYSTEM)


def test_a_webhook_step_is_signed_and_its_answer_is_in_the_context_for_the_next_branch(
        workspace: Any, send: Any) -> None:
    workspace.allow_private_webhooks = True
    workspace.save()
    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "crm", "type": "webhook", "url": "http://127.0.0.1:1/hook", "payload": {"list": "vip"}},
        {"id": "ok", "type": "branch", "rule": {"journey": "steps.crm.response.accepted", "op": "eq", "value": True},
         "then": "tag", "else": "exit"},
        {"id": "tag", "type": "update_traits", "traits": {"crm_synced": True}},
    ]})
    with WebhookReceiver(journey_webhook_secret(journey=journey, actor=SYSTEM)) as receiver:
        from tsunagu.journeys.models import JourneyVersion

        # The URL is the receiver's: the definition is re-published with its port.
        definition = JourneyVersion.objects.get(journey=journey).definition
        definition["steps"][0]["url"] = receiver.url()
        from tsunagu.journeys.services import journey_update

        journey_update(journey=journey, definition=definition, actor=SYSTEM)
        journey_publish(journey=journey, actor=SYSTEM)
        receiver.answer_next(200, body=b'{"accepted": true}')
        run = _start(journey, customer)
        engine_pass()
        assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING  # waits for the answer, holding nothing
        jobs_run_due(worker_id="w")
        (hook,) = receiver.wait_for(1)
        settle(workspace, messaging=False)
    assert hook.webhook_id == f"journey-run:{run.pk}:crm:1"
    assert hook.payload["payload"] == {"list": "vip"} and hook.payload["customer_id"] == customer.pk
    run = Run.objects.get(pk=run.pk)
    assert run.status == Run.Status.COMPLETED
    assert run.context["steps"]["crm"]["status"] == 200
    assert Customer.objects.get(pk=customer.pk).traits["crm_synced"] is True
    assert [a for _, a in path(run)] == ["entered", "wait", "response", "done", "step", "step", "completed"]


def test_a_webhook_to_a_private_address_is_refused_unless_the_workspace_allows_it(workspace: Any,
                                                                                    send: Any) -> None:
    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "crm", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]})
    run = _start(journey, customer)
    engine_pass()
    jobs_run_due(worker_id="w")
    engine_pass()
    run = Run.objects.get(pk=run.pk)
    assert run.context["steps"]["crm"]["outcome"] == "refused"
    assert "private" in run.context["steps"]["crm"]["error"] or "refused" in run.context["steps"]["crm"]["error"]
    assert run.status == Run.Status.COMPLETED  # a refusal is an outcome the journey goes on with


def test_notify_makes_a_follow_up_task(workspace: Any, send: Any) -> None:
    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "call", "type": "notify", "task": "Call the customer about the cart", "assignee": "sato"}]})
    _start(journey, customer)
    engine_pass()
    (task,) = Task.objects.all()
    assert (task.title, task.assignee, task.customer_id) == ("Call the customer about the cart", "sato", customer.pk)


def test_branches_read_the_profile_and_the_context(workspace: Any, send: Any) -> None:
    gold = identified(send, workspace, user_id="u-gold", plan="gold")
    basic = identified(send, workspace, user_id="u-basic", plan="basic")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "by_plan", "type": "branch", "rule": {"all": [
            {"trait": "plan", "op": "eq", "value": "gold"},
            {"journey": "entry.data.source", "op": "eq", "value": "store"}]}, "then": "vip", "else": "exit"},
        {"id": "vip", "type": "exit"}]})
    runs = [_start(journey, gold, source="store"), _start(journey, basic, source="store")]
    engine_pass()
    outcomes = [Run.objects.get(pk=r.pk).context["steps"]["by_plan"]["outcome"] for r in runs]
    assert outcomes == ["then", "else"]
    assert [a for _, a in path(Run.objects.get(pk=runs[0].pk))][-2:] == ["step", "exited"]


def test_until_time_waits_for_the_next_nine_in_the_customers_time_zone(workspace: Any, send: Any) -> None:
    tokyo = identified(send, workspace, user_id="u-tokyo")
    paris = identified(send, workspace, user_id="u-paris", timezone="Europe/Paris")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "morning", "type": "wait", "until_time": "09:00"}, {"id": "done", "type": "exit"}]})
    # 2026-06-01 01:00 UTC is 10:00 in Tokyo (next 09:00 is tomorrow) and 03:00 in Paris (09:00 today).
    with time_machine.travel(dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC), tick=False):
        runs = [_start(journey, tokyo), _start(journey, paris)]
        engine_pass()
    due = [Run.objects.get(pk=r.pk).due_at for r in runs]
    assert due == [dt.datetime(2026, 6, 2, 0, 0, tzinfo=dt.UTC), dt.datetime(2026, 6, 1, 7, 0, tzinfo=dt.UTC)]


def test_until_trait_waits_for_the_next_birthday_at_nine(workspace: Any, send: Any) -> None:
    customer = identified(send, workspace, user_id="u-1", birthday="1990-03-15")
    nodate = identified(send, workspace, user_id="u-2", birthday="someday")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "bday", "type": "wait", "until_trait": "birthday"}, {"id": "greet", "type": "exit"}]})
    with time_machine.travel(dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC), tick=False):
        run, other = _start(journey, customer), _start(journey, nodate)
        engine_pass()
    # The next 15 March at 09:00 Tokyo (the workspace's zone).
    assert Run.objects.get(pk=run.pk).due_at == dt.datetime(2027, 3, 15, 0, 0, tzinfo=dt.UTC)
    other = Run.objects.get(pk=other.pk)
    assert other.status == Run.Status.EXITED
    assert other.context["steps"]["bday"]["outcome"] == "skipped"


def test_exit_when_ends_the_run_before_its_next_step(workspace: Any, send: Any) -> None:
    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "exit_when": {"trait": "unsubscribed", "op": "eq",
                                                                          "value": True},
                                   "steps": [{"id": "w", "type": "wait", "seconds": 60},
                                             {"id": "after", "type": "update_traits", "traits": {"x": 1}}]})
    with time_machine.travel(clock.now(), tick=False) as traveller:
        run = _start(journey, customer)
        engine_pass()
        send("/v1/identify", {"userId": "u-1", "traits": {"unsubscribed": True}})
        traveller.shift(dt.timedelta(seconds=61))
        engine_pass()
    run = Run.objects.get(pk=run.pk)
    assert run.status == Run.Status.EXITED and "after" not in run.context["steps"]
    assert run.history.last().outcome == {"reason": "exit_when"}


def test_a_segment_entry_starts_a_run_when_the_customer_enters_the_segment(workspace: Any, send: Any) -> None:
    from tsunagu.segments.services import segment_create

    segment_create(workspace=workspace, key="vip", name="VIP", actor=SYSTEM,
                   rule={"trait": "plan", "op": "eq", "value": "gold"})
    journey = _journey(workspace, {"entry": {"segment_entered": "vip"}, "steps": [{"id": "hi", "type": "exit"}]})
    identified(send, workspace, user_id="u-1", plan="basic")
    identified(send, workspace, user_id="u-2", plan="gold")
    settle(workspace, messaging=False)
    runs = Run.objects.filter(journey=journey)
    assert [r.customer.user_id for r in runs] == ["u-2"]
    assert runs[0].context["entry"]["event"]["properties"]["segment"] == "vip"


def test_a_scheduled_entry_enters_the_segments_members_once_per_tick(workspace: Any, send: Any) -> None:
    from tsunagu.journeys.schedule import schedules_run
    from tsunagu.segments.services import segment_create

    for uid in ("u-1", "u-2"):
        identified(send, workspace, user_id=uid, plan="gold")
    segment_create(workspace=workspace, key="vip", name="VIP", actor=SYSTEM,
                   rule={"trait": "plan", "op": "eq", "value": "gold"})
    with time_machine.travel(dt.datetime(2026, 6, 1, 0, 30, tzinfo=dt.UTC), tick=False) as traveller:  # 09:30 JST
        journey = _journey(workspace, {"entry": {"schedule": {"cron": "0 9 * * *", "segment": "vip"}},
                                       "reentry": {"policy": "after", "days": 1},
                                       "steps": [{"id": "hi", "type": "exit"}]})
        assert schedules_run(now=clock.now()) == 0  # today's 09:00 passed before publishing
        traveller.shift(dt.timedelta(hours=23, minutes=31))  # 09:01 the next day
        assert schedules_run(now=clock.now()) == 2
        assert schedules_run(now=clock.now()) == 0  # the tick is taken
        engine_pass()
    assert Run.objects.filter(journey=journey, status=Run.Status.EXITED).count() == 2


def test_a_trait_update_reaches_the_profile_through_the_log_once(workspace: Any, send: Any) -> None:
    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "mark", "type": "update_traits", "traits": {"onboarded": True, "tier": "new"}}]})
    _start(journey, customer)
    engine_pass()
    from tsunagu.journeys.outbox import trait_updates_publish

    trait_updates_publish()
    apply_all(workspace)
    traits = Customer.objects.get(pk=customer.pk).traits
    assert (traits["onboarded"], traits["tier"]) == (True, "new")
    assert trait_updates_publish() == 0  # marked: never appended twice


def test_known_events_are_required_by_wait_for_event(workspace: Any, send: Any) -> None:
    from tsunagu.core.errors import ValidationError

    known_events(send, "Order Completed")
    with pytest.raises(ValidationError) as raised:
        journey_create(workspace=workspace, key="x", name="x", actor=SYSTEM, definition={
            "entry": {"api": True}, "steps": [{"id": "w", "type": "wait_for_event", "event": "Ordr Completed"}]})
    assert raised.value.field == "definition.steps[w].event"


def test_notify_by_email_reaches_the_team_through_the_workspaces_email_channel(workspace: Any, send: Any) -> None:
    from tsunagu.messaging.services import channel_create
    from tsunagu.testing.standins.smtp import SMTPStandin

    customer = identified(send, workspace, user_id="u-1")
    journey = _journey(workspace, {"entry": {"api": True}, "steps": [
        {"id": "tell", "type": "notify", "email": "cx-team@shop.example", "subject": "VIP cart left",
         "message": "A VIP left a cart"}]})
    with SMTPStandin() as smtp:
        channel_create(workspace=workspace, type="email", name="SMTP", actor=SYSTEM,
                       config={"host": smtp.host, "port": smtp.port, "security": "none",
                               "from_email": "shop@example.jp"})
        run = _start(journey, customer)
        engine_pass()
        jobs_run_due(worker_id="w")
        (mail,) = smtp.wait_for(1)
    assert mail.message["To"] == "cx-team@shop.example" and mail.message["Subject"] == "VIP cart left"
    body = mail.message.get_body(("plain",)).get_content()
    assert "A VIP left a cart" in body and f"run {run.pk}" in body
