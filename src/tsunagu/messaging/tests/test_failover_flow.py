"""Failover end to end against the loopback stand-ins: LINE → SMS → email, each step moving on for the
reason the policy names, every attempt on the send, in the archive and on the customer's timeline."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event
from tsunagu.messaging.models import Delivery, Send
from tsunagu.messaging.selectors import send_attempts, send_status
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import work
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.line import LineStandIn, user_id
from tsunagu.testing.standins.smtp import SMTPStandin
from tsunagu.testing.standins.twilio import TwilioStandIn

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    with LineStandIn() as standin:
        yield standin


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin:
        yield standin


@pytest.fixture
def smtp():
    with SMTPStandin() as server:
        yield server


def _customer(send, workspace, *, line_id=None, phone="090-1234-5678", email="hanako@example.jp"):
    traits = {"name": "花子", "phone": phone, "email": email}
    context = {"externalIds": [{"type": "line_user_id", "id": line_id}]} if line_id else {}
    status, body = send("/v1/identify", {"userId": "u-1", "traits": traits, "context": context})
    assert status == 200, body
    apply_all(workspace)
    from tsunagu.customers.models import Customer

    return Customer.objects.get(workspace=workspace, user_id="u-1")


def _channels(workspace, line, twilio, smtp):
    channel_create(workspace=workspace, type="line", name="LINE", config=line.channel_config(), actor=SYSTEM)
    sms = channel_create(workspace=workspace, type="sms", name="SMS", config=twilio.channel_config(), actor=SYSTEM)
    channel_create(
        workspace=workspace, type="email", name="SMTP", actor=SYSTEM,
        config={"host": smtp.host, "port": smtp.port, "security": "none", "from_email": "info@shop.example"},
    )
    return sms


def _communication(workspace, *, sms_wait=None, late_success="ignore"):
    sms_step = {"channel": "sms", **({"wait": {"delivered": sms_wait}} if sms_wait else {})}
    communication_create(
        workspace=workspace,
        key="ready",
        name="Order ready",
        topic="transactional",
        actor=SYSTEM,
        variants=[
            {"channel": "line", "locale": "ja", "text": "LINE: {{ customer.traits.name }}さん、準備ができました"},
            {"channel": "sms", "locale": "ja", "text": "SMS: ご注文の準備ができました"},
            {"channel": "email", "locale": "ja", "subject": "準備ができました", "html": "<p>EMAIL: 準備完了</p>"},
        ],
        policy={"steps": [{"channel": "line"}, sms_step, {"channel": "email"}], "late_success": late_success},
    )


def _run(rounds: int = 4) -> None:
    for _ in range(rounds):
        work()


def _timeline(workspace, customer):
    apply_all(workspace)
    names = {"Message Sent", "Message Failed", "Message Failed Over", "Message Skipped", "Message Delivered"}
    return [
        (e.event, e.properties.get("channel"), e.properties.get("reason"))
        for e in Event.objects.filter(workspace=workspace, customer_id=customer.pk, event__in=names).order_by("id")
    ]


def test_line_failing_the_message_arrives_by_sms(workspace, send, line, twilio, smtp):
    uid = user_id()
    customer = _customer(send, workspace, line_id=uid)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace)
    line.reply(line.permanent("The user has blocked the account"))
    s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
    _run()
    (sms,) = twilio.wait_for_messages(1)
    assert sms["Body"] == "SMS: ご注文の準備ができました"
    assert smtp.messages == []
    attempts = send_attempts(Send.objects.get(pk=s.pk))
    assert [(a["channel"], a["status"], a["reason"]) for a in attempts] == [
        ("line", "failed", "failed"),
        ("sms", "sent", None),
    ]
    assert send_status(Send.objects.get(pk=s.pk)) == "sent"
    # The archive holds both messages, each as rendered for its channel from the same version.
    line_msg, sms_msg = Delivery.objects.filter(send=s).order_by("id")
    assert line_msg.content["messages"][0]["text"].startswith("LINE: 花子さん")
    assert sms_msg.body_text == "SMS: ご注文の準備ができました" and sms_msg.version_id == line_msg.version_id
    timeline = _timeline(workspace, customer)
    assert ("Message Failed", "line", None) in [(n, c, None) for n, c, _ in timeline]
    assert ("Message Failed Over", "line", "failed") in timeline
    assert ("Message Sent", "sms", None) in timeline


def test_sms_failing_too_the_message_arrives_by_email(workspace, send, line, twilio, smtp):
    customer = _customer(send, workspace, line_id=user_id())
    _channels(workspace, line, twilio, smtp)
    _communication(workspace)
    line.reply(line.permanent())
    twilio.reply(twilio.permanent(21211))
    s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
    _run()
    (mail,) = smtp.wait_for(1)
    assert mail.message.get_body(("plain",)).get_content().strip() == "EMAIL: 準備完了"
    attempts = send_attempts(Send.objects.get(pk=s.pk))
    assert [(a["channel"], a["reason"]) for a in attempts] == [("line", "failed"), ("sms", "bounced"), ("email", None)]
    assert [a["status"] for a in attempts][2] == "sent"
    timeline = _timeline(workspace, customer)
    assert [(n, c, r) for n, c, r in timeline if n == "Message Failed Over"] == [
        ("Message Failed Over", "line", "failed"),
        ("Message Failed Over", "sms", "bounced"),
    ]


def test_no_line_id_goes_straight_to_sms_with_the_reason_no_address(workspace, send, line, twilio, smtp):
    customer = _customer(send, workspace, line_id=None)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace)
    s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
    attempts = send_attempts(s)
    assert [(a["channel"], a["status"], a["reason"]) for a in attempts] == [
        ("line", "skipped", "no_address"),
        ("sms", "queued", None),
    ]
    assert "LINE user id" in attempts[0]["detail"]
    _run()
    twilio.wait_for_messages(1)
    assert line.requests == []
    assert ("Message Skipped", "line", "no_address") in _timeline(workspace, customer)


def test_not_delivered_within_10_s_the_next_channel_goes_after_10_s_of_moved_time(
    workspace, send, line, twilio, smtp
):
    customer = _customer(send, workspace, line_id=None)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace, sms_wait=10)
    start = clock.now()
    with time_machine.travel(start, tick=False) as traveller:
        s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
        _run()
        twilio.wait_for_messages(1)
        traveller.shift(dt.timedelta(seconds=9))
        _run()
        assert smtp.messages == [], "the email went before the 10 s were up"
        traveller.shift(dt.timedelta(seconds=1))
        _run()
        smtp.wait_for(1)
    attempts = send_attempts(Send.objects.get(pk=s.pk))
    assert [(a["channel"], a["status"], a["reason"]) for a in attempts] == [
        ("line", "skipped", "no_address"),
        ("sms", "timed_out", "not_delivered"),
        ("email", "sent", None),
    ]


def test_a_delivered_sms_within_the_wait_ends_the_chain(workspace, send, line, twilio, smtp):
    customer = _customer(send, workspace, line_id=None)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace, sms_wait=10)
    start = clock.now()
    with time_machine.travel(start, tick=False) as traveller:
        s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
        _run()
        (sms,) = twilio.wait_for_messages(1)
        status, _ = twilio.status_callback(sms["sid"], "delivered")
        assert status == 200
        traveller.shift(dt.timedelta(seconds=30))
        _run()
    assert smtp.messages == []
    assert send_status(Send.objects.get(pk=s.pk)) == "delivered"


@pytest.fixture(autouse=True)
def _status_callbacks_through_django(monkeypatch):
    """Twilio's status callbacks go to ``TSUNAGU_PUBLIC_URL``; here they are posted through Django's
    test client to the same path, signed for that URL."""
    from django.test import Client

    from tsunagu.testing.standins import twilio as twilio_module

    def post(url, params, auth_token, *, signature=None):
        path = "/" + url.split("/", 3)[3]
        signed_url = "http://testserver" + path  # the URL Django sees, which Twilio's signature covers
        sig = twilio_module.twilio_signature(auth_token, signed_url, params) if signature is None else signature
        response = Client().post(path, params, headers={"X-Twilio-Signature": sig} if sig else {})
        return response.status_code, response.content

    monkeypatch.setattr(twilio_module, "post_signed", post)


def test_a_late_delivery_report_after_failover_is_recorded_and_sends_no_third_message(
    workspace, send, line, twilio, smtp
):
    customer = _customer(send, workspace, line_id=None)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace, sms_wait=10, late_success="cancel")
    start = clock.now()
    with time_machine.travel(start, tick=False) as traveller:
        s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
        _run()
        (sms,) = twilio.wait_for_messages(1)
        traveller.shift(dt.timedelta(seconds=11))
        _run()
        smtp.wait_for(1)
        status, _ = twilio.status_callback(sms["sid"], "delivered")
        assert status == 200
        traveller.shift(dt.timedelta(minutes=5))
        _run()
    assert len(twilio.messages) == 1 and len(smtp.messages) == 1
    sms_delivery = Delivery.objects.get(send=s, channel_type="sms")
    assert sms_delivery.status == "delivered"  # the late report is recorded on its message
    attempts = send_attempts(Send.objects.get(pk=s.pk))
    assert [(a["channel"], a["status"]) for a in attempts] == [
        ("line", "skipped"), ("sms", "timed_out"), ("email", "sent")
    ]
    assert attempts[1]["delivery_status"] == "delivered"
    assert Send.objects.get(pk=s.pk).ended_at is None  # the email was already out: nothing was cancelled


def test_a_late_success_cancels_the_step_not_yet_sent_when_the_policy_says_so(workspace, send, line, twilio, smtp):
    customer = _customer(send, workspace, line_id=None)
    _channels(workspace, line, twilio, smtp)
    _communication(workspace, sms_wait=10, late_success="cancel")
    start = clock.now()
    with time_machine.travel(start, tick=False) as traveller:
        s = send_create(workspace=workspace, communication="ready", customer=customer, actor=SYSTEM)
        _run()
        (sms,) = twilio.wait_for_messages(1)
        traveller.shift(dt.timedelta(seconds=11))
        from tsunagu.messaging.failover import sends_run_due

        sends_run_due(worker_id="w")  # the email step is made (queued), not yet handed over
        twilio.status_callback(sms["sid"], "delivered")
        _run()
    assert smtp.messages == []
    final = Send.objects.get(pk=s.pk)
    assert send_status(final) == "delivered" and final.ended_at is not None
    email = Delivery.objects.get(send=s, channel_type="email")
    assert email.status == "failed" and email.reason.startswith("cancelled")
