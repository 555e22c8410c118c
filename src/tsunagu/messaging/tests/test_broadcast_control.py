"""Pause, resume and cancel: a paused broadcast makes no sends and lets nothing out that was not already on
its way; resume goes on where it stopped; cancel ends what had not gone out."""

from __future__ import annotations

import pytest

from tsunagu.core.errors import PermissionDenied, ValidationError
from tsunagu.core.models import Role
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.messaging import broadcast_expand
from tsunagu.messaging.broadcast_expand import broadcasts_run_due
from tsunagu.messaging.broadcasts import (
    broadcast_cancel,
    broadcast_create,
    broadcast_pause,
    broadcast_resume,
    broadcast_summary,
)
from tsunagu.messaging.failover import sends_run_due
from tsunagu.messaging.models import Delivery, Send
from tsunagu.messaging.tests.broadcast_helpers import people, run_until_idle, worker_pass
from tsunagu.messaging.tests.helpers import inapp_communication

pytestmark = pytest.mark.django_db

VARIANTS = [{"channel": "in_app", "locale": "ja", "title": "お知らせ", "body": "{{ customer.display_name }}"}]


@pytest.fixture
def broadcast(workspace, monkeypatch):
    monkeypatch.setattr(broadcast_expand, "CHUNK", 2)
    crowd = people(workspace, 6)
    inapp_communication(workspace, variants=VARIANTS)
    return broadcast_create(workspace=workspace, communication="notice", actor=SYSTEM,
                            audience={"customer_ids": [c.pk for c in crowd]})


def _delivered(b) -> int:
    return Delivery.objects.filter(send__broadcast=b, status="delivered").count()


def test_pause_holds_unsent_work_and_resume_finishes_it(broadcast):
    b = broadcast
    assert broadcasts_run_due(worker_id="w1") == 2  # chunk 1: two sends, not yet advanced
    b = broadcast_pause(broadcast=b, actor=SYSTEM)
    assert b.status == "paused" and b.paused_at is not None
    for _ in range(5):
        worker_pass()
    b.refresh_from_db()
    assert (b.cursor, Send.objects.filter(broadcast=b).count()) == (2, 2)  # no expansion
    assert Delivery.objects.filter(send__broadcast=b).count() == 0  # the two sends were held
    assert broadcast_pause(broadcast=b, actor=SYSTEM).status == "paused"  # again: no change
    b = broadcast_resume(broadcast=b, actor=SYSTEM)
    assert b.status == "running"
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and _delivered(b) == 6
    assert Send.objects.filter(broadcast=b).values("customer_id").distinct().count() == 6


def test_pause_holds_deliveries_no_worker_has_taken(broadcast):
    b = broadcast
    broadcasts_run_due(worker_id="w1")
    sends_run_due(worker_id="w1")  # two deliveries queued, not handed over
    assert Delivery.objects.filter(send__broadcast=b, status="queued").count() == 2
    broadcast_pause(broadcast=b, actor=SYSTEM)
    for _ in range(3):
        worker_pass()
    assert _delivered(b) == 0 and Delivery.objects.filter(send__broadcast=b, status="queued").count() == 2
    broadcast_resume(broadcast=b, actor=SYSTEM)
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done" and _delivered(b) == 6


def test_cancel_ends_what_has_not_gone_out(broadcast):
    b = broadcast
    worker_pass()  # chunk 1 expanded, advanced, delivered
    broadcasts_run_due(worker_id="w1")
    sends_run_due(worker_id="w1")  # chunk 2: deliveries queued
    broadcasts_run_due(worker_id="w1")  # chunk 3: sends not advanced
    b = broadcast_cancel(broadcast=b, actor=SYSTEM)
    assert b.status == "cancelled" and b.finished_at is not None
    run_until_idle()
    assert _delivered(b) == 2
    taken = Delivery.objects.filter(send__broadcast=b, status="failed")
    assert taken.count() == 2 and {d.reason for d in taken} == {"cancelled: the broadcast was cancelled"}
    assert Send.objects.filter(broadcast=b, status="cancelled").count() == 4
    summary = broadcast_summary(b)
    assert (summary["sent"], summary["cancelled"], summary["pending"], summary["expanded"]) == (2, 4, 0, 6)
    assert broadcast_cancel(broadcast=b, actor=SYSTEM).status == "cancelled"  # again: no change
    with pytest.raises(ValidationError):
        broadcast_resume(broadcast=b, actor=SYSTEM)
    with pytest.raises(ValidationError):
        broadcast_pause(broadcast=b, actor=SYSTEM)


def test_a_cancelled_paused_broadcast_sends_nothing_more(broadcast):
    b = broadcast
    broadcasts_run_due(worker_id="w1")
    broadcast_pause(broadcast=b, actor=SYSTEM)
    broadcast_cancel(broadcast=b, actor=SYSTEM)
    run_until_idle()
    assert Delivery.objects.filter(send__broadcast=b).count() == 0
    assert Send.objects.filter(broadcast=b, status="cancelled").count() == 2


def test_done_broadcasts_cannot_be_paused_or_cancelled_and_viewers_control_nothing(broadcast, workspace):
    b = broadcast
    viewer, _ = apikey_create(workspace=workspace, name="v", role=Role.VIEWER, actor=SYSTEM)
    for control in (broadcast_pause, broadcast_cancel, broadcast_resume):
        with pytest.raises(PermissionDenied):
            control(broadcast=b, actor=viewer)
    run_until_idle()
    b.refresh_from_db()
    assert b.status == "done"
    for control in (broadcast_pause, broadcast_cancel):
        with pytest.raises(ValidationError) as caught:
            control(broadcast=b, actor=SYSTEM)
        assert caught.value.field == "status"
