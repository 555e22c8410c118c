"""Email end to end: rendered, tracked and sent by the engine to a real SMTP server on loopback; opens,
clicks (machine ones flagged), a 550 hard bounce, and a signed bounce webhook, each on the timeline."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import standardwebhooks
import time_machine
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.events.models import Event
from tsunagu.messaging.models import Delivery, Suppression
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import identified, work
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.smtp import SMTPStandin

pytestmark = pytest.mark.django_db
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
HOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def smtp():
    with SMTPStandin() as server:
        yield server


def _setup(workspace, send, smtp, email="hanako@example.jp"):
    # A marketing email needs the customer's opt-in (特定電子メール法): given at sign-up, with its wording.
    customer = identified(
        send, workspace, name="山田 花子", email=email, consent_email_marketing=True
    )
    channel = channel_create(
        workspace=workspace,
        type="email",
        name="SMTP",
        actor=SYSTEM,
        config={
            "host": smtp.host,
            "port": smtp.port,
            "security": "none",
            "from_email": "info@shop.example",
            "from_name": "つなぐマート",
            "bounce_webhook_secret": HOOK_SECRET,
        },
    )
    communication_create(
        workspace=workspace,
        key="news",
        name="News",
        topic="marketing",
        actor=SYSTEM,
        variants=[
            {
                "channel": "email",
                "locale": "ja",
                "subject": "{{ customer.traits.name }}様へ、返金のお知らせ",
                "html": '<p>{{ customer.traits.name }}様</p><p><a href="https://shop.example/refund">詳細</a></p>',
            }
        ],
    )
    return customer, channel


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_an_email_is_sent_tracked_and_its_opens_and_clicks_recorded(workspace, send, smtp):
    customer, _channel = _setup(workspace, send, smtp)
    d = send_create(workspace=workspace, communication="news", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    (got,) = smtp.wait_for(1)
    msg = got.message
    assert str(msg["Subject"]) == "山田 花子様へ、返金のお知らせ"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and "/m/u/" in msg["List-Unsubscribe"]
    html = msg.get_body(("html",)).get_content()
    assert "/m/c/" in html and "/m/o/" in html and "https://shop.example/refund" not in html
    d.refresh_from_db()
    assert d.status == "sent" and d.provider_id == msg["Message-ID"]
    assert bytes(d.raw).replace(b"\r\n", b"\n").strip() == got.data.replace(b"\r\n", b"\n").strip()

    import re

    pixel = _path(re.search(r'src="([^"]+/m/o/[^"]+)"', html).group(1))
    link = _path(re.search(r'href="([^"]+/m/c/[^"]+)"', html).group(1).replace("&amp;", "&"))
    client = Client()
    # Apple's privacy proxy fetches the pixel at once: a machine open.
    assert client.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    d.refresh_from_db()
    assert d.opened_at is None
    later = d.sent_at + dt.timedelta(minutes=5)
    with time_machine.travel(later, tick=False):
        assert client.head(link, headers={"User-Agent": CHROME}).status_code == 302  # a scanner's HEAD
        d.refresh_from_db()
        assert d.clicked_at is None
        answer = client.get(link, headers={"User-Agent": CHROME})
    assert answer.status_code == 302 and answer["Location"] == "https://shop.example/refund"
    d.refresh_from_db()
    assert d.clicked_at is not None and d.opened_at is not None  # a click is also an open
    events = list(d.events.order_by("id").values_list("status", "machine"))
    assert ("opened", True) in events and ("clicked", True) in events and ("clicked", False) in events
    work()
    apply_all(workspace)
    names = list(Event.objects.filter(customer=customer, event__startswith="Message").values_list("event", flat=True))
    assert names.count("Message Clicked") == 1 and "Message Opened" not in names  # machine ones stay off
    assert client.get("/m/c/forged-token").status_code == 404


def test_a_550_recipient_is_a_hard_bounce_suppressed_and_on_the_timeline(workspace, send, smtp):
    customer, _ = _setup(workspace, send, smtp, email="gone@example.jp")
    smtp.refuse("gone@example.jp", 550)
    d = send_create(workspace=workspace, communication="news", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    d.refresh_from_db()
    assert d.status == "bounced" and "550" in d.reason
    assert Suppression.objects.get(address="gone@example.jp").reason == "bounce"
    work()
    apply_all(workspace)
    bounced = Event.objects.get(customer=customer, event="Message Bounced")
    assert "550" in bounced.properties["reason"] and bounced.channel == "email"
    again = send_create(workspace=workspace, communication="news", customer=customer, actor=SYSTEM)
    assert again.status == "skipped" and not again.deliveries.exists()
    assert again.attempts.get().reason == "suppressed"


def test_a_signed_bounce_webhook_bounces_the_delivery_and_a_forged_one_does_not(workspace, send, smtp):
    customer, channel = _setup(workspace, send, smtp)
    d = send_create(workspace=workspace, communication="news", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    d.refresh_from_db()
    body = orjson.dumps(
        {
            "events": [
                {
                    "id": "evt_1",
                    "type": "complaint",
                    "message_id": d.provider_id,
                    "email": "hanako@example.jp",
                    "reason": "abuse report",
                }
            ]
        }
    )
    url = f"/m/in/{channel.webhook_token}/bounces"
    client = Client()
    forged = client.post(
        url,
        body,
        content_type="application/json",
        headers={"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
    )
    assert forged.status_code == 401
    assert Delivery.objects.get(pk=d.pk).status == "sent"
    wh = standardwebhooks.Webhook(HOOK_SECRET)
    now = dt.datetime.now(tz=dt.UTC)
    sig = wh.sign("msg_1", now, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sig}
    ok = client.post(url, body, content_type="application/json", headers=headers)
    assert ok.status_code == 200, ok.content
    d.refresh_from_db()
    assert d.status == "bounced"
    assert Suppression.objects.get(address="hanako@example.jp").reason == "complaint"
