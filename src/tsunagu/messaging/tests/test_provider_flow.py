"""LINE and Twilio end to end in-process: sends executed by the engine against the loopback stand-ins
(real HTTP, the official SDKs), and the providers' webhooks through ``/m/in/…``: verified, applied once,
forged and replayed ones changing nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event
from tsunagu.messaging.models import Delivery, InboundReceipt
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import work
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.line import (
    LineStandIn,
    follow_event,
    line_signature,
    text_message_event,
    user_id,
    webhook_body,
)
from tsunagu.testing.standins.twilio import TwilioStandIn, twilio_signature

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    with LineStandIn() as standin:
        yield standin


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin:
        yield standin


def _customer(send, workspace, *, line_id=None, phone=None):
    traits = {"name": "花子", **({"phone": phone} if phone else {})}
    context = {"externalIds": [{"type": "line_user_id", "id": line_id}]} if line_id else {}
    status, body = send("/v1/identify", {"userId": "u-1", "traits": traits, "context": context})
    assert status == 200, body
    apply_all(workspace)
    from tsunagu.customers.models import Customer

    return Customer.objects.get(workspace=workspace, user_id="u-1")


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


def test_a_line_push_reaches_the_stand_in_once_and_is_archived(workspace, send, line):
    uid = user_id()
    customer = _customer(send, workspace, line_id=uid)
    channel_create(workspace=workspace, type="line", name="LINE", config=line.channel_config(), actor=SYSTEM)
    communication_create(
        workspace=workspace,
        key="hello",
        name="Hello",
        topic="service",
        actor=SYSTEM,
        variants=[{"channel": "line", "locale": "ja", "text": "{{ customer.traits.name }}さん、こんにちは"}],
    )
    d = send_create(workspace=workspace, communication="hello", customer=customer, actor=SYSTEM).deliveries.get()
    assert d.address == uid
    work()
    d.refresh_from_db()
    assert d.status == "sent" and d.provider_id
    (got,) = line.wait_for_deliveries(1)
    assert got.to == [uid] and got.messages[0]["text"] == "花子さん、こんにちは"
    assert d.content["messages"][0]["text"] == "花子さん、こんにちは"


def test_line_webhooks_are_verified_applied_once_and_forgeries_refused(workspace, send, line):
    channel = channel_create(workspace=workspace, type="line", name="LINE", config=line.channel_config(), actor=SYSTEM)
    from tsunagu.messaging.selectors import channel_webhook_urls

    url = _path(channel_webhook_urls(channel)["events"]).removeprefix("http://127.0.0.1:8000")
    uid = user_id()
    body = webhook_body([follow_event(uid), text_message_event(uid, "返品したいです")])
    secret = line.channel_config()["channel_secret"]
    client = Client()
    forged = client.post(url, body, content_type="application/json", headers={"X-Line-Signature": "AAAA"})
    unsigned = client.post(url, body, content_type="application/json")
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    assert not InboundReceipt.objects.exists()
    apply_all(workspace)
    assert not Event.objects.filter(workspace=workspace).exists()

    ok = client.post(
        url, body, content_type="application/json", headers={"X-Line-Signature": line_signature(secret, body)}
    )
    assert ok.status_code == 200 and ok.json()["applied"] == 2
    replay = client.post(
        url, body, content_type="application/json", headers={"X-Line-Signature": line_signature(secret, body)}
    )
    assert replay.json() == {"status": "ok", "applied": 0, "replayed": 2, "unmatched": 0}
    apply_all(workspace)
    events = list(Event.objects.filter(workspace=workspace).order_by("id"))
    assert [e.event for e in events] == ["LINE Friend Added", "LINE Message Received"]
    assert events[1].properties["text"] == "返品したいです" and events[1].channel == "line"
    assert events[0].customer_id == events[1].customer_id
    from tsunagu.customers.models import Identity

    assert Identity.objects.get(type="external:line_user_id", value=uid).customer_id == events[0].customer_id


def test_an_sms_goes_through_twilio_and_its_signed_status_callback_moves_the_delivery(workspace, send, twilio):
    customer = _customer(send, workspace, phone="090-1234-5678")
    channel = channel_create(workspace=workspace, type="sms", name="SMS", config=twilio.channel_config(), actor=SYSTEM)
    communication_create(
        workspace=workspace,
        key="otp",
        name="OTP",
        topic="transactional",
        actor=SYSTEM,
        variants=[{"channel": "sms", "locale": "ja", "text": "認証コード {{ data.code }}"}],
    )
    d = send_create(
        workspace=workspace, communication="otp", customer=customer, actor=SYSTEM, data={"code": "424242"}
    ).deliveries.get()
    assert d.address == "+819012345678"
    work()
    (msg,) = twilio.wait_for_messages(1)
    assert msg["To"] == "+819012345678" and msg["Body"] == "認証コード 424242"
    d.refresh_from_db()
    assert d.status == "sent" and d.provider_id == msg["sid"] and d.content["encoding"] == "UCS-2"
    callback = msg["StatusCallback"]
    assert callback.endswith(f"/m/in/{channel.webhook_token}/status")

    params = twilio.status_params(msg["sid"], "delivered")
    url = f"http://testserver/m/in/{channel.webhook_token}/status"
    client = Client()
    forged = client.post(_path(url), params, headers={"X-Twilio-Signature": "bad"})
    assert forged.status_code == 401
    d.refresh_from_db()
    assert d.status == "sent"
    signature = twilio_signature(twilio.channel_config()["auth_token"], url, params)
    ok = client.post(_path(url), params, headers={"X-Twilio-Signature": signature})
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/xml")
    d.refresh_from_db()
    assert d.status == "delivered"
    assert list(d.events.values_list("status", flat=True).order_by("id")) == ["queued", "sent", "delivered"]
    # A replay changes nothing.
    client.post(_path(url), params, headers={"X-Twilio-Signature": signature})
    assert Delivery.objects.get(pk=d.pk).events.count() == 3


def test_a_permanent_twilio_refusal_fails_the_delivery_without_retry(workspace, send, twilio):
    customer = _customer(send, workspace, phone="090-1234-5678")
    channel_create(workspace=workspace, type="sms", name="SMS", config=twilio.channel_config(), actor=SYSTEM)
    communication_create(
        workspace=workspace,
        key="otp",
        name="OTP",
        topic="transactional",
        actor=SYSTEM,
        variants=[{"channel": "sms", "locale": "ja", "text": "x"}],
    )
    d = send_create(workspace=workspace, communication="otp", customer=customer, actor=SYSTEM).deliveries.get()
    twilio.reply(twilio.permanent(21211))
    work()
    d.refresh_from_db()
    assert d.status in ("failed", "bounced") and "21211" in d.reason
    assert work() == 0


def test_a_test_send_goes_through_the_channel_named_even_when_disabled(workspace, send, line):
    from tsunagu.messaging.services import channel_update

    uid = user_id()
    customer = _customer(send, workspace, line_id=uid)
    with LineStandIn() as other:
        channel_create(workspace=workspace, type="line", name="Main", config=line.channel_config(), actor=SYSTEM)
        trial = channel_create(
            workspace=workspace, type="line", name="Trial", config=other.channel_config(), actor=SYSTEM
        )
        channel_update(channel=trial, actor=SYSTEM, enabled=False)
        communication_create(
            workspace=workspace,
            key="hello",
            name="Hello",
            topic="service",
            actor=SYSTEM,
            variants=[{"channel": "line", "locale": "ja", "text": "テスト"}],
        )
        d = send_create(
            workspace=workspace, communication="hello", customer=customer, actor=SYSTEM, via=trial
        ).deliveries.get()
        assert d.channel_id == trial.pk
        work()
        assert len(other.wait_for_deliveries(1)) == 1
        assert line.deliveries == []
