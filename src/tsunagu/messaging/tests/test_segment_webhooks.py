"""Segment membership webhooks against a real receiver on loopback that verifies every request with the
``standardwebhooks`` package: entries and exits batched per segment, signed with the segment's secret,
retried with the same webhook-id and body on 5xx and timeouts, failed at once on other 4xx, refused on
private addresses unless the workspace allows them, and never taken by two workers."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from tsunagu.core import clock
from tsunagu.core.models import AuditEntry
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.customers.models import Customer
from tsunagu.messaging import segment_webhooks as sw
from tsunagu.messaging.models import SegmentWebhook, SegmentWebhookBatch
from tsunagu.messaging.tests.helpers import api_call
from tsunagu.segments.models import MembershipChange
from tsunagu.segments.services import segment_create, segment_update
from tsunagu.testing.standins.webhook import WebhookReceiver

pytestmark = pytest.mark.django_db

GOLD = {"trait": "tier", "op": "eq", "value": "gold"}


@pytest.fixture
def gold(workspace):
    workspace.allow_private_webhooks = True
    workspace.save()
    segment, _ = segment_create(workspace=workspace, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    return segment


@pytest.fixture
def hook(gold):
    with WebhookReceiver(sw.segment_webhook_secret(segment=gold, actor=SYSTEM)) as receiver:
        segment_update(segment=gold, webhook_url=receiver.url("/segments"), actor=SYSTEM)
        yield receiver


def _identify(send, user_id, tier):
    status, body = send("/v1/identify", {"userId": user_id, "traits": {"tier": tier}})
    assert status == 200, body
    return Customer.objects.get(user_id=user_id)


def _batch():
    return SegmentWebhookBatch.objects.get()


def test_entries_and_exits_are_posted_signed_and_marked_delivered(send, gold, hook):
    a = _identify(send, "u-a", "gold")
    b = _identify(send, "u-b", "gold")
    _identify(send, "u-c", "silver")
    assert sw.segment_webhooks_run(worker_id="w1") == 3  # two changes taken, one batch tried
    (got,) = hook.wait_for(1)
    assert got.path == "/segments" and got.headers["content-type"] == "application/json"
    assert got.payload["type"] == "segment.membership" and got.payload["segment"] == "gold"
    changes = got.payload["changes"]
    assert [(c["customer_id"], c["user_id"], c["entered"], c["reason"]) for c in changes] == [
        (a.pk, "u-a", True, "event"), (b.pk, "u-b", True, "event")]
    assert dt.datetime.fromisoformat(changes[0]["at"]).tzinfo is not None
    batch = _batch()
    assert (batch.status, batch.attempts, got.webhook_id) == ("delivered", 1, batch.webhook_id)
    assert not MembershipChange.objects.filter(webhook_pending=True).exists()
    assert sw.segment_webhooks_run(worker_id="w1") == 0 and len(hook.received) == 1

    _identify(send, "u-a", "silver")
    sw.segment_webhooks_run(worker_id="w1")
    second = hook.wait_for(2)[1]
    assert [(c["customer_id"], c["entered"]) for c in second.payload["changes"]] == [(a.pk, False)]
    assert second.webhook_id != got.webhook_id


def test_a_5xx_is_retried_later_as_the_same_message(send, gold, hook):
    _identify(send, "u-a", "gold")
    hook.answer_next(503, retry_after=60)
    now = clock.now()
    sw.segment_webhooks_run(worker_id="w1", now=now)
    first = hook.wait_for(1)[0]
    batch = _batch()
    assert (batch.status, batch.attempts) == ("pending", 1) and "HTTP 503" in batch.last_error
    assert batch.next_at == now + dt.timedelta(seconds=60)  # the receiver's Retry-After, longer than 5 s
    assert sw.segment_webhooks_run(worker_id="w1", now=now + dt.timedelta(seconds=59)) == 0
    sw.segment_webhooks_run(worker_id="w1", now=now + dt.timedelta(seconds=61))
    again = hook.wait_for(2)[1]
    assert again.webhook_id == first.webhook_id and again.body == first.body
    assert (_batch().status, _batch().attempts) == ("delivered", 2)


def test_a_timeout_is_retried_and_attempts_run_out(send, gold, hook, monkeypatch):
    monkeypatch.setattr(sw, "TIMEOUT", 0.3)
    monkeypatch.setattr(sw, "MAX_ATTEMPTS", 2)
    _identify(send, "u-a", "gold")
    hook.hold()
    try:
        now = clock.now()
        sw.segment_webhooks_run(worker_id="w1", now=now)
        batch = _batch()
        assert (batch.status, batch.attempts) == ("pending", 1) and "could not reach" in batch.last_error
        assert batch.next_at == now + dt.timedelta(seconds=sw.BACKOFF[0])
        sw.segment_webhooks_run(worker_id="w1", now=now + dt.timedelta(seconds=10))
        assert (_batch().status, _batch().attempts) == ("failed", 2)
    finally:
        hook.release()


def test_another_4xx_fails_at_once(send, gold, hook):
    _identify(send, "u-a", "gold")
    hook.answer_next(400, body=b"no such list")
    sw.segment_webhooks_run(worker_id="w1")
    hook.wait_for(1)
    batch = _batch()
    assert (batch.status, batch.attempts) == ("failed", 1) and batch.last_error == "HTTP 400 Bad Request: no such list"


def test_a_loopback_receiver_is_refused_unless_the_workspace_allows_it(send, workspace, gold, hook):
    workspace.allow_private_webhooks = False
    workspace.save()
    _identify(send, "u-a", "gold")
    sw.segment_webhooks_run(worker_id="w1")
    batch = _batch()
    assert batch.status == "failed" and "private address" in batch.last_error and "loopback" in batch.last_error
    assert hook.received == [] and hook.rejected == []


def test_changes_are_taken_once_when_another_worker_got_there_first(send, gold, hook, monkeypatch):
    _identify(send, "u-a", "gold")
    _identify(send, "u-b", "gold")
    real = sw._pending
    seen = []

    def rival_takes_one(limit):
        rows = real(limit)
        seen.extend(rows)
        MembershipChange.objects.filter(pk=rows[0].pk).update(webhook_pending=False)  # the other worker
        return rows

    monkeypatch.setattr(sw, "_pending", rival_takes_one)
    assert sw.segment_webhook_batches_make() == 0
    assert not SegmentWebhookBatch.objects.exists()
    # The one the rival did not take is still pending: this worker's claim was rolled back, not half-kept.
    assert MembershipChange.objects.get(pk=seen[1].pk).webhook_pending


def test_a_batch_is_held_by_one_worker_and_a_segment_goes_in_order(send, gold, hook, monkeypatch):
    monkeypatch.setattr(sw, "BATCH", 1)
    _identify(send, "u-a", "gold")
    _identify(send, "u-b", "gold")
    assert sw.segment_webhook_batches_make() == 2
    first, second = SegmentWebhookBatch.objects.order_by("id")
    now = clock.now()
    assert sw._claim(worker_id="w1", now=now, limit=10) == [first.pk]  # not the second before the first
    assert sw._claim(worker_id="w2", now=now, limit=10) == []  # w1's lease
    assert sw.segment_webhook_deliver(batch_id=first.pk, worker_id="w2", now=now) == ""
    assert sw.segment_webhook_deliver(batch_id=first.pk, worker_id="w1", now=now) == "delivered"
    assert sw._claim(worker_id="w2", now=now, limit=10) == [second.pk]


def test_a_removed_url_drops_the_waiting_changes(send, gold, hook):
    _identify(send, "u-a", "gold")
    segment_update(segment=gold, webhook_url="", actor=SYSTEM)
    assert sw.segment_webhooks_run(worker_id="w1") == 1
    assert not SegmentWebhookBatch.objects.exists() and hook.received == []


def test_the_secret_is_encrypted_shown_to_editors_and_rotated(workspace, gold, token):
    status, body = api_call("get", "/api/v1/segments/gold/webhook", token)
    assert status == 200 and body["secret"].startswith("whsec_") and body["url"] == ""
    assert body["batches"] == {"pending": 0, "delivered": 0, "failed": 0}
    stored = SegmentWebhook.objects.get(segment=gold).secret
    assert body["secret"] not in stored and body["secret"][6:] not in stored
    status, rotated = api_call("post", "/api/v1/segments/gold/webhook/rotate", token)
    assert status == 200 and rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]
    assert api_call("get", "/api/v1/segments/gold/webhook", token)[1]["secret"] == rotated["secret"]
    assert AuditEntry.objects.filter(action="segment.webhook_secret_rotated", target="gold").count() == 1
    viewer = apikey_create(workspace=workspace, name="v", role="viewer", actor=SYSTEM)[1]
    status, body = api_call("get", "/api/v1/segments/gold/webhook", viewer)
    assert status == 403 and "secret" not in body


def test_a_rotated_secret_signs_the_retry(send, gold, hook):
    _identify(send, "u-a", "gold")
    hook.answer_next(500)
    now = clock.now()
    sw.segment_webhooks_run(worker_id="w1", now=now)
    hook.wait_for(1)
    sw.segment_webhook_secret(segment=gold, actor=SYSTEM, rotate=True)
    sw.segment_webhooks_run(worker_id="w1", now=now + dt.timedelta(seconds=10))
    # The POST is synchronous: the receiver, still holding the old secret, has refused it with a 401.
    assert len(hook.rejected) == 1 and "No matching signature" in hook.rejected[0].reason
    assert (_batch().status, _batch().last_error) == ("failed", "HTTP 401 Unauthorized: signature does not verify")
    assert orjson.loads(hook.rejected[0].body)["segment"] == "gold"


def test_a_pass_stops_posting_when_its_time_is_up(send, gold, hook, monkeypatch):
    monkeypatch.setattr(sw, "BATCH", 1)
    for user in ("u-a", "u-b", "u-c"):
        _identify(send, user, "gold")
    other, _ = segment_create(workspace=gold.workspace, key="all", name="All",
                              rule={"trait": "tier", "op": "exists"}, actor=SYSTEM)
    # Each segment signs with its own secret: a second receiver holds the second one.
    with WebhookReceiver(sw.segment_webhook_secret(segment=other, actor=SYSTEM)) as hook2:
        segment_update(segment=other, webhook_url=hook2.url("/all"), actor=SYSTEM)
        for user in ("u-d", "u-e"):
            _identify(send, user, "silver")  # enter "all" only (u-a… were in it from its creation)
        assert sw.segment_webhook_batches_make() == 5
        sw.segment_webhooks_run(worker_id="w1", budget=0)  # one batch per segment is due; one is tried
        assert len(hook.received) + len(hook2.received) == 1
        assert SegmentWebhookBatch.objects.filter(locked_by="").count() == 5  # the other one let go at once
        for _ in range(3):
            sw.segment_webhooks_run(worker_id="w1")
        assert len(hook.wait_for(3)) == 3 and len(hook2.wait_for(2)) == 2
        assert hook.rejected == [] and hook2.rejected == []


def test_the_worker_runs_the_task():
    from tsunagu.core.worker import TASKS

    assert TASKS["messaging.segment_webhooks"] is sw.deliver_segment_webhooks
