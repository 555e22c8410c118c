"""The engine's raw SQL writes (``messaging/sql.py``) store exactly what the ORM would."""

from __future__ import annotations

import datetime as dt

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.models import Delivery, DeliveryEvent
from tsunagu.messaging.services import send_create
from tsunagu.messaging.sql import delivery_update, events_insert
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db

CHANGES = {
    "status": "sent",
    "reason": '理由 "quoted"',
    "provider_id": "<k@example.jp>",
    "attempts": 3,
    "sent_at": dt.datetime(2026, 12, 1, 9, 30, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=9))),
    "lease_until": None,
    "content": {"subject": "件名", "nested": {"n": [1, 2.5, None, True]}},
    "headers": {"sent": {"Message-ID": "<k@example.jp>"}},
    "raw": b"From: a\r\n\r\n\xe6\x97\xa5",
    "subject": "件名",
    "body_text": "本文",
}


def _two(workspace, send):
    customer = identified(send, workspace)
    inapp_communication(workspace)
    return [
        send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM).deliveries.get()
        for _ in range(2)
    ]


def _row(pk):
    d = Delivery.objects.get(pk=pk)
    return {name: (bytes(getattr(d, name)) if name == "raw" else getattr(d, name)) for name in CHANGES}


def test_delivery_update_equals_the_orm(workspace, send):
    raw_one, orm_one = _two(workspace, send)
    assert delivery_update(raw_one.pk, dict(CHANGES)) == 1
    Delivery.objects.filter(pk=orm_one.pk).update(**CHANGES)
    assert _row(raw_one.pk) == _row(orm_one.pk)
    assert _row(raw_one.pk)["sent_at"] == CHANGES["sent_at"]


def test_delivery_update_respects_the_claim_and_refuses_other_columns(workspace, send):
    one, _ = _two(workspace, send)
    Delivery.objects.filter(pk=one.pk).update(locked_by="w1")
    assert delivery_update(one.pk, {"status": "sending"}, locked_by="w2") == 0
    assert Delivery.objects.get(pk=one.pk).status == "queued"
    assert delivery_update(one.pk, {"status": "sending"}, locked_by="w1") == 1
    with pytest.raises(ValueError):
        delivery_update(one.pk, {"status = 'x'; --": 1})


def test_events_insert_equals_the_orm(workspace, send):
    one, _ = _two(workspace, send)
    at = dt.datetime(2026, 12, 1, 0, 0, 1, 5, tzinfo=dt.UTC)
    events_insert([(one.pk, workspace.pk, "sent", at, "r", {"detail": "already accepted", "n": 1})])
    DeliveryEvent.objects.create(
        delivery=one, workspace=workspace, status="sent", at=at, reason="r", data={"detail": "already accepted", "n": 1}
    )
    rows = list(
        DeliveryEvent.objects.filter(delivery=one, status="sent").values(
            "status", "at", "reason", "data", "machine", "logged", "workspace_id"
        )
    )
    assert len(rows) == 2 and rows[0] == rows[1]


def test_a_claimed_batch_reads_what_the_orm_reads(workspace, send):
    from tsunagu.messaging.models import Send
    from tsunagu.messaging.sql import claimed_load

    customer = identified(send, workspace, name="山田", vip=True, tags=["a", "b"], score=1.5)
    inapp_communication(workspace)
    sent = [
        send_create(workspace=workspace, communication="notice", customer=customer, actor=SYSTEM,
                    data={"note": "メモ", "n": i, "nested": {"x": [1, None]}}).deliveries.get()
        for i in range(3)
    ]
    delivery_update(sent[0].pk, dict(CHANGES))  # every kind of column set: JSON, times, bytes, nulls
    Delivery.objects.update(locked_by="w1")
    Delivery.objects.filter(pk=sent[2].pk).update(locked_by="w2")  # another worker's claim is not read
    ids = [d.pk for d in sent] + [10**9]

    got = claimed_load(ids, "w1")
    want = list(
        Delivery.objects.filter(pk__in=ids, locked_by="w1").select_related("send").defer("raw").order_by("id")
    )
    assert [d.pk for d in got] == [sent[0].pk, sent[1].pk]
    delivery_fields = [f.attname for f in Delivery._meta.concrete_fields if f.attname != "raw"]
    send_fields = [f.attname for f in Send._meta.concrete_fields]
    for mine, orm in zip(got, want, strict=True):
        assert {n: getattr(mine, n) for n in delivery_fields} == {n: getattr(orm, n) for n in delivery_fields}
        assert {n: getattr(mine.send, n) for n in send_fields} == {n: getattr(orm.send, n) for n in send_fields}
        assert mine.get_deferred_fields() == {"raw"} and mine.raw == orm.raw  # read on access, as the ORM's
        assert mine._state.adding is False and mine._state.db == orm._state.db
    assert got[0].sent_at == CHANGES["sent_at"] and got[0].content == CHANGES["content"]
    assert claimed_load(ids, "nobody") == []


def test_customer_contexts_equal_what_templates_get_from_the_orm(workspace, send):
    from tsunagu.customers.models import Customer, Identity
    from tsunagu.messaging.context import customer_context
    from tsunagu.messaging.sql import customer_contexts

    one = identified(send, workspace, user_id="u-1", name="山田", email="y@example.jp", plan={"tier": "gold"})
    two = identified(send, workspace, user_id="u-2")
    for value in ("U1", "U0", "U2"):  # several of one type: the order they were added in
        Identity.objects.create(workspace=workspace, customer=one, type="external:line_user_id", value=value)
    customers = Customer.objects.prefetch_related("identities").in_bulk([one.pk, two.pk])
    assert customer_contexts({one.pk, two.pk, 10**9}) == {pk: customer_context(c) for pk, c in customers.items()}
    assert customer_contexts({one.pk})[one.pk]["identities"]["external:line_user_id"] == ["U1", "U0", "U2"]
    assert customer_contexts(set()) == {}
