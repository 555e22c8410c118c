"""The delivery engine: a worker executes queued deliveries, each state change is a DeliveryEvent, and the
events reach the customer's timeline through the ingest log and the applier."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event
from tsunagu.messaging.channels.base import ChannelBase, DeliveryError, Message, Outcome
from tsunagu.messaging.delivery import Runner
from tsunagu.messaging.models import Delivery
from tsunagu.messaging.services import send_create
from tsunagu.messaging.tests.helpers import identified, inapp_communication, work
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


def test_an_in_app_message_is_delivered_and_on_the_timeline(workspace, send):
    customer = identified(send, workspace, name="Hanako")
    inapp_communication(workspace)
    s = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM)
    assert work() == 1
    d = Delivery.objects.get(send=s)
    assert d.status == "delivered" and d.sent_at is not None and d.attempts == 1
    assert [e.status for e in d.events.order_by("id")] == ["queued", "sent", "delivered"]
    apply_all(workspace)
    names = list(Event.objects.filter(workspace=workspace, customer=customer).values_list("event", flat=True))
    assert "Message Sent" in names and "Message Delivered" in names
    sent = Event.objects.get(workspace=workspace, event="Message Delivered")
    assert sent.properties["communication"] == "notice" and sent.properties["delivery_id"] == d.pk
    assert sent.channel == "app"
    # Publishing again appends nothing new to the timeline.
    work()
    apply_all(workspace)
    assert Event.objects.filter(workspace=workspace, event="Message Delivered").count() == 1


def test_a_send_no_channel_can_take_is_a_message_skipped_event_with_its_reason(workspace, send):
    customer = identified(send, workspace, name="Taro")
    from tsunagu.messaging.services import communication_create

    communication_create(
        workspace=workspace,
        key="mail",
        name="M",
        topic="service",
        actor=SYSTEM,
        variants=[{"channel": "email", "locale": "ja", "subject": "s", "html": "<p>x</p>"}],
    )
    send_create(workspace=workspace, communication="mail", customer=customer, actor=SYSTEM)
    work()
    apply_all(workspace)
    skipped = Event.objects.get(workspace=workspace, customer=customer, event="Message Skipped")
    assert skipped.properties["reason"] == "no_address" and skipped.properties["channel"] == "email"
    assert "no email channel" in skipped.properties["detail"]
    assert not Event.objects.filter(workspace=workspace, event="Message Failed").exists()


class Flaky(ChannelBase):
    """A channel whose answers the test scripts (a stand-in for a provider at the interface)."""

    type = "in_app"
    answers: list[object] = []
    sent: list[str] = []

    def send(self, message: Message) -> Outcome:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.sent.append(message.key)
        return Outcome(status="delivered")


@pytest.fixture
def flaky(monkeypatch):
    from tsunagu.messaging import delivery as engine

    Flaky.answers, Flaky.sent = [], []
    monkeypatch.setattr(engine, "channel_class", lambda type_: Flaky)
    return Flaky


def test_a_temporary_failure_retries_with_backoff_and_a_permanent_one_does_not(workspace, send, flaky):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    flaky.answers = [DeliveryError("503 busy", permanent=False, retry_after=30)]
    work()
    d.refresh_from_db()
    assert d.status == "queued" and d.attempts == 1 and "503 busy" in d.reason
    assert d.due_at >= clock.now() + dt.timedelta(seconds=29)
    assert work() == 0  # not due yet
    flaky.answers = [DeliveryError("invalid recipient", permanent=True)]
    with time_machine.travel(d.due_at + dt.timedelta(seconds=1), tick=False):
        work()
    d.refresh_from_db()
    assert d.status == "failed" and d.attempts == 2 and d.reason == "invalid recipient"
    assert work() == 0  # permanent: never again
    assert flaky.sent == []


def test_a_worker_that_died_during_a_non_idempotent_send_does_not_send_again(workspace, send, flaky, monkeypatch):
    from tsunagu.messaging import delivery as engine

    customer = identified(send, workspace)
    inapp_communication(workspace)
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    # The state a SIGKILL during the provider call leaves: sending, under a lease that then runs out.
    Delivery.objects.filter(pk=d.pk).update(status="sending", attempts=1, locked_by="dead", lease_until=clock.now())
    monkeypatch.setattr(engine, "IDEMPOTENT", frozenset())
    with time_machine.travel(clock.now() + dt.timedelta(seconds=1), tick=False):
        work()
    d.refresh_from_db()
    assert d.status == "failed" and d.reason.startswith("interrupted")
    assert flaky.sent == []


def test_an_idempotent_channel_resends_an_interrupted_delivery_with_the_same_key(workspace, send, flaky):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    Delivery.objects.filter(pk=d.pk).update(status="sending", attempts=1, locked_by="dead", lease_until=clock.now())
    flaky.answers = [None]
    with time_machine.travel(clock.now() + dt.timedelta(seconds=1), tick=False):
        work()
    d.refresh_from_db()
    assert d.status == "delivered" and flaky.sent == [d.key]


def test_a_live_lease_is_not_taken_over(workspace, send, flaky):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    Delivery.objects.filter(pk=d.pk).update(
        status="sending", locked_by="alive", lease_until=clock.now() + dt.timedelta(seconds=30)
    )
    assert Runner(worker_id="other").run_due() == 0


def test_a_message_that_cannot_be_rendered_fails_permanently_naming_the_variant(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace, variants=[
        {"channel": "in_app", "locale": "ja", "title": "{% for i in (1..100000000) %}x{% endfor %}", "body": "b"},
    ])
    d = send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    d.refresh_from_db()
    assert d.status == "failed" and d.reason.startswith("variant in_app/ja") and d.content == {}
    assert work() == 0
