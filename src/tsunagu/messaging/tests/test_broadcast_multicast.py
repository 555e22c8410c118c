"""LINE broadcasts go by multicast against the LINE stand-in: identical messages to up to 500 users a
request, one retry key per group stored before the request, so a crash or a lost answer resends the same
group under the same key and nobody gets it twice; a refused multicast fails over like any delivery."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging import multicast
from tsunagu.messaging.broadcasts import broadcast_create, broadcast_summary
from tsunagu.messaging.channels.line import Channel as LineChannel
from tsunagu.messaging.models import Delivery, Send
from tsunagu.messaging.services import channel_create, communication_create
from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle, worker_pass
from tsunagu.testing.standins.line import LineStandIn, user_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    with LineStandIn() as stand_in:
        yield stand_in


def _setup(workspace, line, n, *, text="週末セール {{ data.coupon }}", extra_variants=()):
    users = [user_id() for _ in range(n)]
    crowd = people(workspace, n, line=users)
    channel_create(workspace=workspace, type="line", name="LINE", config=line.channel_config(), actor=SYSTEM)
    communication_create(
        workspace=workspace, key="sale", name="Sale", topic="service", actor=SYSTEM,
        variants=[{"channel": "line", "locale": "ja", "text": text}, *extra_variants],
    )
    return users, crowd


def _received(line) -> Counter[str]:
    return Counter(to for d in line.deliveries for to in d.to)


def test_identical_messages_go_as_multicasts_of_at_most_500(workspace, line, monkeypatch):
    monkeypatch.setattr(multicast, "MAX_TO", 3)
    users, crowd = _setup(workspace, line, 7)
    b = broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]}, data={"coupon": "A1"})
    run_until_idle()
    paths = Counter(r.path for r in line.requests)
    assert paths == {"/v2/bot/message/multicast": 2, "/v2/bot/message/push": 1}  # 3 + 3, and one alone
    assert _received(line) == Counter(users)
    groups = [r for r in line.requests if r.path.endswith("multicast")]
    assert [len(r.body["to"]) for r in groups] == [3, 3]
    assert all(r.body["messages"] == [{"type": "text", "text": "週末セール A1"}] for r in groups)
    deliveries = list(Delivery.objects.filter(send__broadcast=b))
    assert {d.status for d in deliveries} == {"sent"}
    keys = Counter(d.headers["sent"]["X-Line-Retry-Key"] for d in deliveries)
    assert sorted(keys.values()) == [1, 3, 3]  # each group's deliveries carry its request's key
    assert {r.headers["x-line-retry-key"] for r in groups} <= set(keys)
    assert all(uuid.UUID(r.headers["x-line-retry-key"]) for r in groups)
    # Each recipient's message is archived as its own, with the rendered text.
    assert {d.body_text for d in deliveries} == {"週末セール A1"}
    b.refresh_from_db()
    assert b.status == "done" and broadcast_summary(b)["by_channel"] == {"line": 7}


def test_different_messages_are_grouped_apart(workspace, line):
    users, crowd = _setup(workspace, line, 5)
    rows = "\n".join(f"{c.pk},{'A' if i < 3 else 'B'}" for i, c in enumerate(crowd))
    broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                     audience={"csv": f"customer_id,coupon\n{rows}\n"})
    run_until_idle()
    groups = sorted((r.body["messages"][0]["text"], len(r.body["to"])) for r in line.requests)
    assert groups == [("週末セール A", 3), ("週末セール B", 2)]
    assert _received(line) == Counter(users)


def test_a_worker_killed_after_the_request_resends_the_same_group_under_the_same_key(workspace, line, monkeypatch):
    users, crowd = _setup(workspace, line, 4)
    broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                     audience={"customer_ids": [c.pk for c in crowd]}, data={"coupon": "K"})
    real = LineChannel.multicast

    def killed(self, to, messages, key):
        real(self, to, messages, key)  # LINE took it ...
        raise SystemExit("SIGKILL")  # ... and the worker died before recording the answer

    monkeypatch.setattr(LineChannel, "multicast", killed)
    with pytest.raises(SystemExit):
        run_until_idle()
    monkeypatch.undo()
    stuck = Delivery.objects.filter(channel_type="line")
    assert {d.status for d in stuck} == {"sending"}
    [key] = {d.provider_id for d in stuck}
    assert key.startswith("multicast:")
    with time_machine.travel(clock.now() + dt.timedelta(minutes=5), tick=False):
        run_until_idle("w2")
    first, again = line.requests
    assert again.headers["x-line-retry-key"] == first.headers["x-line-retry-key"] == key.removeprefix("multicast:")
    assert sorted(again.body["to"]) == sorted(first.body["to"]) == sorted(users)
    assert again.status == 409  # LINE: already accepted
    assert _received(line) == Counter(users)  # once each
    assert {d.status for d in Delivery.objects.filter(channel_type="line")} == {"sent"}


def test_an_interrupted_push_is_resent_as_that_push_not_regrouped(workspace, line):
    from tsunagu.messaging.broadcast_expand import broadcasts_run_due
    from tsunagu.messaging.failover import sends_run_due

    users, crowd = _setup(workspace, line, 3)
    broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                     audience={"customer_ids": [c.pk for c in crowd]}, data={"coupon": "P"})
    broadcasts_run_due(worker_id="w1")
    sends_run_due(worker_id="w1")
    # One of them was being pushed alone when its worker died: "sending", no group key, lease run out.
    first = Delivery.objects.filter(channel_type="line").order_by("id").first()
    Delivery.objects.filter(pk=first.pk).update(status="sending", attempts=1, locked_by="dead",
                                                lease_until=clock.now() - dt.timedelta(seconds=1))
    run_until_idle("w2")
    paths = sorted(r.path for r in line.requests)
    assert paths == ["/v2/bot/message/multicast", "/v2/bot/message/push"]  # the two others grouped
    push = next(r for r in line.requests if r.path.endswith("/push"))
    assert push.body["to"] == first.address
    assert _received(line) == Counter(users)
    assert {d.status for d in Delivery.objects.filter(channel_type="line")} == {"sent"}


def test_a_lost_answer_is_retried_with_the_same_key(workspace, line):
    users, crowd = _setup(workspace, line, 3)
    broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                     audience={"customer_ids": [c.pk for c in crowd]}, data={"coupon": "R"})
    line.reply(line.temporary(500, accept=True))  # delivered, but the answer is a 500
    run_until_idle()
    assert {d.status for d in Delivery.objects.filter(channel_type="line")} == {"queued"}
    with time_machine.travel(clock.now() + dt.timedelta(hours=1), tick=False):
        run_until_idle("w2")
    first, again = line.requests
    assert (first.status, again.status) == (500, 409)
    assert again.headers["x-line-retry-key"] == first.headers["x-line-retry-key"]
    assert _received(line) == Counter(users)
    assert {d.status for d in Delivery.objects.filter(channel_type="line")} == {"sent"}


def test_a_refused_multicast_fails_over_to_the_next_channel(workspace, line):
    users, crowd = _setup(workspace, line, 3, extra_variants=[
        {"channel": "in_app", "locale": "ja", "title": "セール", "body": "{{ data.coupon }}"}])
    b = broadcast_create(workspace=workspace, communication="sale", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]}, data={"coupon": "F"},
                         policy={"steps": [{"channel": "line"}, {"channel": "in_app"}]})
    line.reply(line.permanent("Failed to send messages"))
    run_until_idle()
    lines = Delivery.objects.filter(send__broadcast=b, channel_type="line")
    assert {(d.status, d.reason) for d in lines} == {("failed", "LINE 400: Failed to send messages")}
    assert Delivery.objects.filter(send__broadcast=b, channel_type="in_app", status="delivered").count() == 3
    assert not line.deliveries
    b.refresh_from_db()
    summary = broadcast_summary(b)
    assert (summary["failed_over"], summary["sent"], summary["by_channel"]) == (3, 3, {"in_app": 3})
    assert b.status == "done"


def test_sends_outside_broadcasts_still_go_by_push(workspace, line):
    from tsunagu.messaging.services import send_create

    _users, crowd = _setup(workspace, line, 2, text="ご注文ありがとうございます")
    for c in crowd:
        send_create(workspace=workspace, communication="sale", customer=c, actor=SYSTEM)
    for _ in range(3):
        worker_pass()
    assert [r.path for r in line.requests] == ["/v2/bot/message/push"] * 2
    assert not Send.objects.filter(broadcast__isnull=False).exists()


def _post(url, body, headers):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_stand_in_checks_multicasts_as_line_documents_them(line):
    url = f"{line.url}/v2/bot/message/multicast"
    auth = {"Authorization": f"Bearer {line.channel_access_token}"}
    text = [{"type": "text", "text": "x"}]
    assert _post(url, {"to": [user_id()], "messages": text}, {"Authorization": "Bearer wrong"})[0] == 401
    status, body = _post(url, {"to": [user_id() for _ in range(501)], "messages": text}, auth)
    assert status == 400 and body["details"][0]["property"] == "to"
    status, body = _post(url, {"to": [user_id()], "messages": text * 6}, auth)
    assert status == 400 and body["details"][0]["property"] == "messages"
    assert _post(url, {"to": [user_id()], "messages": text}, {**auth, "X-Line-Retry-Key": "not-a-uuid"})[0] == 400
    key = str(uuid.uuid4())
    assert _post(url, {"to": [user_id()], "messages": text}, {**auth, "X-Line-Retry-Key": key}) == (200, {})
    assert _post(url, {"to": [user_id()], "messages": text}, {**auth, "X-Line-Retry-Key": key})[0] == 409
    assert len(line.deliveries) == 1
