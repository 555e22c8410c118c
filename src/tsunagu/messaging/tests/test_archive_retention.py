"""Retention: deliveries older than the workspace's retention are deleted with their events, index entries
and emptied sends, in audited chunks; 0 days keeps everything; the recurring job applies it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection

from tsunagu.core import clock
from tsunagu.core.jobs import job_enqueue, jobs_run_due
from tsunagu.core.models import AuditEntry, Job
from tsunagu.messaging import archive_export
from tsunagu.messaging.archive_export import archive_retention_apply
from tsunagu.messaging.models import Delivery, DeliveryEvent, Send
from tsunagu.messaging.tests.factories import make_delivery

DAY = dt.timedelta(days=1)


def _indexed(token: str) -> set[int]:
    """Delivery ids the index holds for a token, read from the index itself."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT delivery_id FROM messaging_archive_index WHERE tokens @@ %s::tsquery", [f"'{token}'"]
            )
        else:
            cursor.execute(
                "SELECT rowid FROM messaging_archive_index WHERE messaging_archive_index MATCH %s", [f'"{token}"']
            )
        return {row[0] for row in cursor.fetchall()}


def _old_and_new(workspace: Any, now: dt.datetime) -> dict[str, Delivery]:
    return {
        "old": make_delivery(workspace=workspace, subject="返金のご案内", created_at=now - 31 * DAY,
                             events=[("sent", now - 31 * DAY), ("delivered", now - 31 * DAY)]),
        "edge": make_delivery(workspace=workspace, subject="返金 edge", created_at=now - 30 * DAY),
        "new": make_delivery(workspace=workspace, subject="返金完了", created_at=now - 29 * DAY,
                             events=[("sent", now - 29 * DAY)]),
        "stuck": make_delivery(workspace=workspace, subject="返金 queued", created_at=now - 90 * DAY, status="queued"),
    }


def test_old_deliveries_go_with_their_events_index_and_sends(workspace: Any, other_workspace: Any) -> None:
    now = clock.now()
    workspace.message_retention_days = 30
    workspace.save()
    rows = _old_and_new(workspace, now)
    foreign = make_delivery(workspace=other_workspace, subject="返金", created_at=now - 400 * DAY)
    old_send = rows["old"].send_id
    assert {rows["old"].pk, rows["new"].pk} <= _indexed("返金")

    assert archive_retention_apply(workspace=workspace, now=now) == 1

    left = set(Delivery.objects.values_list("pk", flat=True))
    assert left == {rows["edge"].pk, rows["new"].pk, rows["stuck"].pk, foreign.pk}
    assert not DeliveryEvent.objects.filter(delivery_id=rows["old"].pk).exists()
    assert DeliveryEvent.objects.filter(delivery_id=rows["new"].pk).count() == 1
    assert not Send.objects.filter(pk=old_send).exists() and Send.objects.filter(pk=rows["new"].send_id).exists()
    assert rows["old"].pk not in _indexed("返金") and rows["new"].pk in _indexed("返金")
    entry = AuditEntry.objects.get(workspace=workspace, action="messaging.retention")
    assert entry.actor_kind == AuditEntry.ActorKind.SYSTEM
    assert entry.data["deliveries"] == 1 and entry.data["events"] == 2 and entry.data["sends"] == 1
    assert entry.data["retention_days"] == 30
    assert dt.datetime.fromisoformat(entry.data["cutoff"]) == now - 30 * DAY
    # Run again: nothing more to delete, nothing more logged.
    assert archive_retention_apply(workspace=workspace, now=now) == 0
    assert AuditEntry.objects.filter(action="messaging.retention").count() == 1


def test_zero_days_keeps_everything(workspace: Any) -> None:
    now = clock.now()
    assert workspace.message_retention_days == 0
    make_delivery(workspace=workspace, subject="ancient", created_at=now - 4000 * DAY)
    assert archive_retention_apply(workspace=workspace, now=now) == 0
    assert Delivery.objects.count() == 1 and not AuditEntry.objects.filter(action="messaging.retention").exists()


def test_a_backlog_is_deleted_in_audited_chunks(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_export, "RETENTION_CHUNK", 2)
    now = clock.now()
    workspace.message_retention_days = 7
    workspace.save()
    for i in range(5):
        make_delivery(workspace=workspace, subject=f"配送 {i}", created_at=now - (8 + i) * DAY)
    assert archive_retention_apply(workspace=workspace, now=now) == 5
    counts = [e.data["deliveries"] for e in AuditEntry.objects.filter(action="messaging.retention").order_by("pk")]
    assert counts == [2, 2, 1]
    assert not Delivery.objects.exists()


def test_the_recurring_job_applies_every_workspace_retention(workspace: Any, other_workspace: Any) -> None:
    now = clock.now()
    workspace.message_retention_days = 10
    workspace.save()
    gone = make_delivery(workspace=workspace, subject="old", created_at=now - 11 * DAY)
    kept = make_delivery(workspace=other_workspace, subject="old", created_at=now - 11 * DAY)  # 0 days: keep
    job_enqueue(kind="messaging.retention")
    assert jobs_run_due(worker_id="test") == 1
    job = Job.objects.get(kind="messaging.retention")
    assert job.status == Job.Status.DONE, job.last_error
    assert not Delivery.objects.filter(pk=gone.pk).exists() and Delivery.objects.filter(pk=kept.pk).exists()
