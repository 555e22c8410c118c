"""Broadcasts: an audience of ids or a CSV becomes one send per customer, through the policy engine, once;
the expansion resumes where a crash left it; the summary counts what happened; who may run them."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.core import clock
from tsunagu.core.errors import NotFound, PermissionDenied, ValidationError
from tsunagu.core.models import Role
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.customers.models import Customer
from tsunagu.messaging import broadcast_expand
from tsunagu.messaging.broadcast_expand import broadcast_expand_chunk, broadcasts_run_due
from tsunagu.messaging.broadcasts import broadcast_create, broadcast_get, broadcast_list, broadcast_summary
from tsunagu.messaging.models import Broadcast, BroadcastRecipient, Delivery, Send
from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db


def _variants(body: str = "{{ data.note }} {{ data.coupon }}") -> list[dict[str, str]]:
    return [{"channel": "in_app", "locale": "ja", "title": "{{ customer.display_name }} 様", "body": body}]


def test_customer_ids_become_one_send_each_and_the_broadcast_ends_done(workspace):
    crowd = people(workspace, 5)
    inapp_communication(workspace, variants=_variants())
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]}, data={"note": "セール"})
    assert (b.status, b.total, b.cursor) == ("scheduled", 5, 0)
    assert list(b.recipients.order_by("position").values_list("position", "ref")) == [
        (i + 1, str(c.pk)) for i, c in enumerate(crowd)]
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and b.cursor == 5 and b.finished_at is not None
    sends = list(Send.objects.filter(broadcast=b).order_by("idempotency_key"))
    assert sorted(s.customer_id for s in sends) == sorted(c.pk for c in crowd)
    assert [s.idempotency_key for s in sends] == [f"broadcast:{b.pk}:{i}" for i in range(1, 6)]
    assert {s.version_id for s in sends} == {b.version_id}
    titles = sorted(Delivery.objects.filter(send__broadcast=b).values_list("subject", "body_text"))
    assert titles == sorted((f"客{i} 様", "セール ") for i in range(5))
    summary = broadcast_summary(b)
    assert summary == {"total": 5, "expanded": 5, "sends": 5, "sent": 5, "delivered": 5, "failed_over": 0,
                       "skipped": {}, "undeliverable": 0, "cancelled": 0, "pending": 0,
                       "by_channel": {"in_app": 5}}


def test_unknown_and_duplicate_recipients_are_counted_not_sent(workspace):
    crowd = people(workspace, 3)
    # u0 twice, and once more through an email of the same profile; "nobody" is no customer.
    inapp_communication(workspace, variants=_variants())
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"user_ids": ["u0", "u1", "u0", "nobody", "u2"]})
    run_until_idle()
    b.refresh_from_db()
    assert Send.objects.filter(broadcast=b).count() == 3
    assert b.unmatched == {"duplicate": 1, "unknown_recipient": 1}
    summary = broadcast_summary(b)
    assert summary["skipped"] == {"duplicate": 1, "unknown_recipient": 1}
    assert (summary["sends"], summary["sent"], summary["pending"]) == (3, 3, 0)
    assert crowd  # made before the broadcast: found through their user_id identities


def test_a_merged_away_customer_id_reaches_the_survivor_once(workspace):
    a, b_ = people(workspace, 2)
    Customer.objects.filter(pk=b_.pk).update(merged_into=a)
    inapp_communication(workspace, variants=_variants())
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [a.pk, b_.pk]})
    run_until_idle()
    assert list(Send.objects.filter(broadcast=b).values_list("customer_id", flat=True)) == [a.pk]
    b.refresh_from_db()
    assert broadcast_summary(b)["skipped"] == {"duplicate": 1}


def test_csv_columns_become_each_recipients_data(workspace):
    people(workspace, 2)
    inapp_communication(workspace, variants=_variants())
    csv = "\ufeffEmail,coupon\r\nC0@Example.jp,A-100\r\nc1@example.jp,B-200\r\n\r\n"
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"csv": csv}, data={"note": "特典"})
    assert list(b.recipients.order_by("position").values_list("kind", "ref", "data")) == [
        ("email", "c0@example.jp", {"coupon": "A-100"}), ("email", "c1@example.jp", {"coupon": "B-200"})]
    run_until_idle()
    texts = sorted(Delivery.objects.filter(send__broadcast=b).values_list("body_text", flat=True))
    assert texts == ["特典 A-100", "特典 B-200"]


@pytest.mark.parametrize(
    ("audience", "field", "message"),
    [
        ({"csv": "email,coupon\nc0@example.jp,A\nnot-an-email,B\n"}, "audience.csv", "line 3: email: 'not-an-email'"),
        ({"csv": "name,coupon\nTaro,A\n"}, "audience.csv", "line 1: the header names none of"),
        ({"csv": "email,coupon\nc0@example.jp\n"}, "audience.csv", "line 2: 1 columns; the header has 2"),
        ({"csv": "email,coupon\n"}, "audience.csv", "has a header but no recipients"),
        ({"csv": "email,email\na@b.jp,c@d.jp\n"}, "audience.csv", "line 1: every column needs a name, each once"),
        ({"csv": 'email\n"a@b.jp\n'}, "audience.csv", "line 2:"),
        ({"customer_ids": [1, 2, "x", 4]}, "audience.customer_ids[2]", "must be a customer id"),
        ({"customer_ids": [1, True]}, "audience.customer_ids[1]", "must be a customer id"),
        ({"user_ids": []}, "audience.user_ids", "must be a non-empty list"),
        ({"user_ids": ["a"], "csv": "x"}, "audience", "exactly one of"),
        ({"rule": 3}, "audience", "unknown key 'rule'"),
        ({"segment": 3}, "audience.segment", "must be a segment key"),
        ([1, 2], "audience", "must be an object"),
    ],
)
def test_bad_audiences_name_the_field_and_store_nothing(workspace, audience, field, message):
    inapp_communication(workspace, variants=_variants())
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience=audience)
    assert caught.value.field == field
    assert message in caught.value.message
    assert not Broadcast.objects.exists() and not BroadcastRecipient.objects.exists()


def test_the_audience_and_csv_are_capped(workspace, monkeypatch):
    from tsunagu.messaging import broadcast_audience

    inapp_communication(workspace, variants=_variants())
    monkeypatch.setattr(broadcast_audience, "MAX_RECIPIENTS", 3)
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [1, 2, 3, 4]})
    assert caught.value.field == "audience.customer_ids" and "at most 3" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"csv": "user_id\na\nb\nc\nd\n"})
    assert "line 5: more than 3 recipients" in caught.value.message
    monkeypatch.setattr(broadcast_audience, "MAX_CSV_BYTES", 10)
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"csv": "user_id\nabcdefghijk\n"})
    assert caught.value.field == "audience.csv" and "MB limit" in caught.value.message


def test_other_inputs_are_checked(workspace):
    inapp_communication(workspace, variants=_variants())
    with pytest.raises(NotFound) as missing:
        broadcast_create(workspace=workspace, communication="nope", actor=SYSTEM, audience={"user_ids": ["a"]})
    assert missing.value.field == "communication"
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience={"user_ids": ["a"]},
                         policy={"steps": [{"channel": "sms"}]})
    assert caught.value.field == "policy.steps[0].channel"
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience={"user_ids": ["a"]},
                         send_at="2026-12-24T10:00:00")
    assert caught.value.field == "send_at" and "time zone" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM, audience={"user_ids": ["a"]},
                         send_at=clock.now() + dt.timedelta(days=400))
    assert caught.value.field == "send_at"


def test_a_scheduled_broadcast_waits_for_send_at(workspace):
    people(workspace, 2)
    inapp_communication(workspace, variants=_variants())
    start = clock.now()
    with time_machine.travel(start, tick=False) as traveller:
        b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                             audience={"user_ids": ["u0", "u1"]}, send_at=start + dt.timedelta(hours=2))
        assert broadcasts_run_due(worker_id="w1") == 0
        b.refresh_from_db()
        assert (b.status, b.cursor) == ("scheduled", 0)
        traveller.move_to(start + dt.timedelta(hours=2, seconds=1))
        run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and Send.objects.filter(broadcast=b).count() == 2


def test_expansion_goes_a_chunk_at_a_time_and_a_crash_inside_one_loses_and_doubles_nothing(workspace, monkeypatch):
    crowd = people(workspace, 7)
    inapp_communication(workspace, variants=_variants())
    monkeypatch.setattr(broadcast_expand, "CHUNK", 3)
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]})
    assert broadcasts_run_due(worker_id="w1") == 3
    b.refresh_from_db()
    assert (b.status, b.cursor, b.locked_by) == ("running", 3, "")

    def crash(*args, **kwargs):  # after the chunk's sends are inserted, before the transaction commits
        raise RuntimeError("killed")

    monkeypatch.setattr(broadcast_expand, "_count_unmatched", crash)
    Broadcast.objects.filter(pk=b.pk).update(locked_by="w2")
    with pytest.raises(RuntimeError):
        broadcast_expand_chunk(broadcast_id=b.pk, worker_id="w2")
    b.refresh_from_db()
    assert b.cursor == 3 and Send.objects.filter(broadcast=b).count() == 3  # rolled back, chunk and cursor
    monkeypatch.undo()
    monkeypatch.setattr(broadcast_expand, "CHUNK", 3)
    Broadcast.objects.filter(pk=b.pk).update(locked_by="", lease_until=None)
    run_until_idle()
    b.refresh_from_db()
    keys = list(Send.objects.filter(broadcast=b).values_list("idempotency_key", flat=True))
    assert sorted(keys) == sorted(f"broadcast:{b.pk}:{i}" for i in range(1, 8))
    assert Delivery.objects.filter(send__broadcast=b).count() == 7 and b.status == "done"


def test_expansion_waits_while_the_engine_has_a_backlog(workspace, monkeypatch):
    from tsunagu.messaging.failover import sends_run_due

    crowd = people(workspace, 6)
    inapp_communication(workspace, variants=_variants())
    monkeypatch.setattr(broadcast_expand, "CHUNK", 2)
    monkeypatch.setattr(broadcast_expand, "BACKLOG", 3)
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]})
    assert broadcasts_run_due(worker_id="w1") == 2
    assert broadcasts_run_due(worker_id="w1") == 2  # 2 due < 3: one more chunk
    assert broadcasts_run_due(worker_id="w1") == 0  # 4 due: a transactional send would wait behind them
    b.refresh_from_db()
    assert b.cursor == 4 and b.status == "running"
    sends_run_due(worker_id="w1")  # the engine catches up
    assert broadcasts_run_due(worker_id="w1") == 2
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and Send.objects.filter(broadcast=b).count() == 6


def test_a_broadcast_held_by_a_live_lease_is_not_expanded_by_another_worker(workspace):
    crowd = people(workspace, 2)
    inapp_communication(workspace, variants=_variants())
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]})
    Broadcast.objects.filter(pk=b.pk).update(locked_by="dead", lease_until=clock.now() + dt.timedelta(minutes=1))
    assert broadcasts_run_due(worker_id="w1") == 0
    assert broadcast_expand_chunk(broadcast_id=b.pk, worker_id="w1") == 0  # not its claim
    with time_machine.travel(clock.now() + dt.timedelta(minutes=2), tick=False):
        assert broadcasts_run_due(worker_id="w1") == 2  # the dead worker's lease ran out: taken over


def test_expanding_a_chunk_again_sends_nobody_twice(workspace, monkeypatch):
    crowd = people(workspace, 4)
    inapp_communication(workspace, variants=_variants())
    monkeypatch.setattr(broadcast_expand, "CHUNK", 2)
    b = broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                         audience={"customer_ids": [c.pk for c in crowd]})
    Broadcast.objects.filter(pk=b.pk).update(locked_by="w1")
    assert broadcast_expand_chunk(broadcast_id=b.pk, worker_id="w1") == 2
    Broadcast.objects.filter(pk=b.pk).update(cursor=0)  # as if the cursor's move had been lost
    assert broadcast_expand_chunk(broadcast_id=b.pk, worker_id="w1") == 0
    assert Send.objects.filter(broadcast=b).count() == 2


def test_only_operators_and_up_run_broadcasts_and_reads_stay_in_the_workspace(workspace, other_workspace):
    inapp_communication(workspace, variants=_variants())
    for role in (Role.VIEWER, Role.AGENT):
        key, _ = apikey_create(workspace=workspace, name=role, role=role, actor=SYSTEM)
        with pytest.raises(PermissionDenied):
            broadcast_create(workspace=workspace, communication="notice", actor=key, audience={"user_ids": ["a"]})
    operator, _ = apikey_create(workspace=workspace, name="op", role=Role.OPERATOR, actor=SYSTEM)
    b = broadcast_create(workspace=workspace, communication="notice", actor=operator, audience={"user_ids": ["a"]})
    assert b.actor.startswith("api key")
    assert [x.pk for x in broadcast_list(workspace=workspace)] == [b.pk]
    assert broadcast_list(workspace=other_workspace) == []
    with pytest.raises(NotFound):
        broadcast_get(workspace=other_workspace, broadcast_id=b.pk)


def test_the_demo_broadcast_runs_to_done_in_the_loader(workspace):
    from tsunagu.demo.broadcast import demo_broadcast
    from tsunagu.demo.messaging import COMMUNICATIONS
    from tsunagu.messaging.services import communication_create

    people(workspace, 4)
    spec = next(c for c in COMMUNICATIONS if c["key"] == "point-expiry")
    communication_create(workspace=workspace, actor=SYSTEM, **spec)
    b = Broadcast.objects.get(pk=demo_broadcast(workspace=workspace, actor=SYSTEM))
    summary = broadcast_summary(b)
    assert b.status == "done" and b.locked_by == ""
    assert (summary["total"], summary["sent"], summary["skipped"]) == (5, 4, {"duplicate": 1})
    assert summary["by_channel"] == {"in_app": 4}
