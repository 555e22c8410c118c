"""Outbound webhooks through the engine: signed per Standard Webhooks with the delivery key as webhook-id,
kept off private addresses unless the workspace allows them, the generated secret shown once."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.services import channel_create, communication_create, send_create
from tsunagu.messaging.tests.helpers import identified, work
from tsunagu.testing.standins.webhook import WebhookReceiver

pytestmark = pytest.mark.django_db

PAYLOAD = '{"type": "order.shipped", "name": {{ customer.traits.name | json }}, "order": {{ data.order | json }}}'


@pytest.fixture
def hook():
    with WebhookReceiver() as receiver:
        yield receiver


def _setup(workspace, send, hook):
    customer = identified(send, workspace, name='花子 "H"')
    channel_create(
        workspace=workspace,
        type="webhook",
        name="ERP",
        actor=SYSTEM,
        config={"url": hook.url("/orders"), "secret": hook.secret},
    )
    communication_create(
        workspace=workspace,
        key="shipped",
        name="S",
        topic="transactional",
        actor=SYSTEM,
        variants=[{"channel": "webhook", "locale": "ja", "payload": PAYLOAD}],
    )
    return customer


def test_a_webhook_is_signed_and_delivered_when_private_addresses_are_allowed(workspace, send, hook):
    workspace.allow_private_webhooks = True
    workspace.save()
    customer = _setup(workspace, send, hook)
    d = send_create(
        workspace=workspace, communication="shipped", customer=customer, actor=SYSTEM, data={"order": "TM-1"}
    ).deliveries.get()
    work()
    (got,) = hook.wait_for(1)
    assert got.webhook_id == d.key
    assert orjson.loads(got.body)["name"] == '花子 "H"' and orjson.loads(got.body)["order"] == "TM-1"
    d.refresh_from_db()
    assert d.status == "delivered"


def test_a_loopback_webhook_is_refused_by_default_and_not_retried(workspace, send, hook):
    customer = _setup(workspace, send, hook)
    d = send_create(
        workspace=workspace, communication="shipped", customer=customer, actor=SYSTEM, data={"order": "TM-1"}
    ).deliveries.get()
    work()
    d.refresh_from_db()
    assert d.status == "failed" and "private" in d.reason
    assert hook.received == [] and work() == 0


def test_a_generated_secret_is_shown_once(token):
    headers = {"Authorization": f"Bearer {token}"}
    r = Client().post(
        "/api/v1/channels",
        orjson.dumps({"type": "webhook", "name": "W", "config": {"url": "https://example.com/h"}}),
        content_type="application/json",
        headers=headers,
    )
    assert r.status_code == 201, r.content
    secret = r.json()["secret"]
    assert secret.startswith("whsec_")
    again = Client().get(f"/api/v1/channels/{r.json()['id']}", headers=headers).json()
    assert again.get("secret") is None and secret not in orjson.dumps(again).decode()
