"""Web push end to end: a browser's subscription registered through the snippet's endpoint (CORS), a send
encrypted for it and decrypted by the loopback push service, and an expired subscription retired."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.channels.webpush import vapid_keys_generate
from tsunagu.messaging.models import PushSubscription
from tsunagu.messaging.selectors import channel_webhook_urls
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import work
from tsunagu.testing.pipeline import apply_all
from tsunagu.testing.standins.push import PushService

pytestmark = pytest.mark.django_db


@pytest.fixture
def push():
    with PushService() as service:
        yield service


def _setup(workspace, send, push):
    workspace.allow_private_webhooks = True  # the push service stand-in is on loopback
    workspace.save()
    status, _ = send("/v1/page", {"anonymousId": "browser-1", "name": "Home"})
    assert status == 200
    apply_all(workspace)
    private, public = vapid_keys_generate()
    channel = channel_create(
        workspace=workspace,
        type="webpush",
        name="Push",
        actor=SYSTEM,
        config={"vapid_private_key": private, "vapid_public_key": public, "subject": "mailto:ops@shop.example"},
    )
    communication_create(
        workspace=workspace,
        key="sale",
        name="Sale",
        topic="marketing",
        actor=SYSTEM,
        variants=[
            {
                "channel": "webpush",
                "locale": "ja",
                "title": "セール開始",
                "body": "本日限り",
                "url": "https://shop.example/sale",
            }
        ],
    )
    return channel


def _subscribe(channel, sub, **who):
    url = "/" + channel_webhook_urls(channel)["subscribe"].split("/", 3)[3]
    return Client().post(url, orjson.dumps({"subscription": sub.info, **who}), content_type="application/json")


def test_a_subscription_registered_by_the_snippet_receives_an_encrypted_push(workspace, send, push):
    channel = _setup(workspace, send, push)
    url = "/" + channel_webhook_urls(channel)["subscribe"].split("/", 3)[3]
    preflight = Client().options(url, headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == "*"
    sub = push.subscribe()
    answer = _subscribe(channel, sub, anonymous_id="browser-1")
    assert answer.status_code == 201, answer.content
    assert answer["Access-Control-Allow-Origin"] == "*"
    (row,) = PushSubscription.objects.all()
    customer = row.customer
    d = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    (got,) = push.wait_for(1)
    assert got.notification["title"] == "セール開始" and got.notification["url"] == "https://shop.example/sale"
    d.refresh_from_db()
    assert d.status == "sent" and d.address == sub.info["endpoint"]


def test_an_expired_subscription_is_retired_and_not_used_again(workspace, send, push):
    channel = _setup(workspace, send, push)
    sub = push.subscribe()
    assert _subscribe(channel, sub, anonymous_id="browser-1").status_code == 201
    customer = PushSubscription.objects.get().customer
    push.expire(sub)
    d = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM).deliveries.get()
    work()
    d.refresh_from_db()
    assert d.status == "failed" and "expired" in d.reason
    assert PushSubscription.objects.get().expired_at is not None
    again = send_create(workspace=workspace, communication="sale", customer=customer, actor=SYSTEM)
    assert again.status == "skipped" and not again.deliveries.exists()
    assert again.attempts.get().detail == "the customer has no web push subscription"


def test_bad_subscriptions_are_refused_naming_the_field(workspace, send, push):
    channel = _setup(workspace, send, push)
    sub = push.subscribe()
    assert _subscribe(channel, sub, anonymous_id="nobody").status_code == 404
    url = "/" + channel_webhook_urls(channel)["subscribe"].split("/", 3)[3]
    bad = Client().post(url, b'{"subscription": "x", "anonymous_id": "browser-1"}', content_type="application/json")
    assert bad.status_code == 400 and bad.json()["field"] == "subscription"
    assert Client().post("/m/push/not-a-token/subscribe", b"{}", content_type="application/json").status_code == 404
    assert not PushSubscription.objects.exists()
