"""The append-then-apply pipeline in one process: /v1 acknowledges on the durable append, the applier applies
behind, exactly once, in log order, with the reactions inside its transaction; backlog and lag are visible."""

from __future__ import annotations

import re
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client

from tsunagu.core import clock
from tsunagu.customers.models import Customer
from tsunagu.events import reactions
from tsunagu.events.applier import (
    Applier,
    LeaseLost,
    applier_claim,
    applier_release,
    events_apply_chunk,
    events_apply_pending,
)
from tsunagu.events.models import ApplierState, Event
from tsunagu.events.services import _backlog
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


def track(i: int, user: str = "u-1") -> dict[str, Any]:
    return {"userId": user, "event": "Viewed", "messageId": f"m-{i}", "properties": {"i": i}}


@pytest.fixture
def seen() -> Any:
    """A reaction that records what it is given, and whether it ran inside a transaction."""
    calls: list[dict[str, Any]] = []

    def record(applied: reactions.Applied) -> None:
        calls.append(
            {
                "ids": [e.message_id for e in applied.events],
                "customers": {e.message_id: e.customer_id for e in applied.events},
                "changed": set(applied.customer_ids),
                "atomic": connection.in_atomic_block,
                "workspace": applied.workspace.pk,
            }
        )

    reactions.reaction("test-recorder")(record)
    yield calls
    reactions.reaction_remove("test-recorder")


def test_acknowledged_before_applied_then_applied(send, api, workspace):
    status, body = send("/v1/track", track(1), apply=False)
    assert (status, body) == (200, {"success": True})
    # Acknowledged: durable in the log, not yet on any profile.
    assert not Event.objects.exists() and not Customer.objects.exists()
    status, ingestion = api.get("/api/v1/ingestion")
    assert status == 200
    assert ingestion["pending"] == 1 and ingestion["applied"] == 0
    assert ingestion["oldest_pending_ms"] is not None and ingestion["oldest_pending_ms"] >= 0

    assert apply_all(workspace) == 1
    event = Event.objects.get()
    assert event.message_id == "m-1" and Customer.objects.get(pk=event.customer_id).event_count == 1
    status, ingestion = api.get("/api/v1/ingestion")
    assert ingestion == {"pending": 0, "applied": 1, "duplicates": 0, "oldest_pending_ms": None}


def test_a_repeated_message_id_is_applied_once_and_counted_as_duplicate(send, api):
    send("/v1/track", track(1), apply=False)
    send("/v1/track", track(1), apply=False)  # an SDK retry
    send("/v1/batch", {"batch": [{"type": "track", **track(2)}, {"type": "track", **track(2)}]}, apply=False)
    apply_all()
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-1", "m-2"]
    assert Customer.objects.get().event_count == 2
    assert api.get("/api/v1/ingestion")[1]["duplicates"] == 2


def test_reactions_see_every_event_once_in_log_order_inside_the_transaction(send, workspace, seen):
    for i in range(5):
        send("/v1/batch", {"batch": [{"type": "track", **track(i * 3 + j, f"u-{j}")} for j in range(3)]}, apply=False)
    send("/v1/track", track(0), apply=False)  # a duplicate: applied to nothing, shown to no reaction
    events_apply_pending(workspace_id=workspace.pk, max_events=4)  # several chunks, several transactions

    assert len(seen) > 1 and all(call["atomic"] for call in seen)
    order = [m for call in seen for m in call["ids"]]
    assert order == [f"m-{i}" for i in range(15)]
    stored = dict(Event.objects.values_list("message_id", "customer_id"))
    for call in seen:
        assert call["customers"] == {m: stored[m] for m in call["ids"]}
        assert call["changed"] == set(call["customers"].values())
        assert call["workspace"] == workspace.pk
    apply_all()
    assert len([m for call in seen for m in call["ids"]]) == 15  # nothing shown twice


def test_a_failing_reaction_rolls_the_chunk_back_and_it_is_retried(send, api, workspace, seen):
    failures = {"left": 1}

    def flaky(applied: reactions.Applied) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("reaction failed")

    reactions.reaction("test-flaky")(flaky)
    try:
        send("/v1/batch", {"batch": [{"type": "track", **track(i)} for i in range(3)]}, apply=False)
        applier = Applier(owner="test-worker")
        assert applier.run_once() == 0
        # Rolled back whole: no event, no profile, the position unmoved, the error on record.
        assert not Event.objects.exists() and not Customer.objects.exists()
        state = ApplierState.objects.get(pk=workspace.pk)
        assert state.position == 0 and state.applied == 0 and "reaction failed" in state.last_error
        assert api.get("/api/v1/ingestion")[1]["pending"] == 3
        # The earlier reaction ran in the rolled-back transaction; its effects went with it.
        assert [call["ids"] for call in seen] == [["m-0", "m-1", "m-2"]]

        applier._retry_at.clear()  # the backoff has passed
        assert applier.run_once() == 1
        assert Event.objects.count() == 3 and Customer.objects.get().event_count == 3
        state.refresh_from_db()
        assert state.applied == 3 and state.last_error == "" and state.owner == ""
        assert [call["ids"] for call in seen] == [["m-0", "m-1", "m-2"]] * 2
    finally:
        reactions.reaction_remove("test-flaky")


def test_one_applier_per_workspace_and_an_expired_lease_is_taken_over(send, workspace, settings):
    send("/v1/track", track(1), apply=False)
    assert applier_claim(workspace_id=workspace.pk, owner="worker-a")
    assert not applier_claim(workspace_id=workspace.pk, owner="worker-b")
    with pytest.raises(LeaseLost):
        events_apply_chunk(workspace_id=workspace.pk, owner="worker-b")
    assert not Event.objects.exists()

    # worker-a dies without giving the lease back; once it runs out, worker-b takes over.
    later = clock.now().timestamp() + settings.TSUNAGU_APPLIER_LEASE + 1
    with time_machine.travel(later, tick=False):
        assert applier_claim(workspace_id=workspace.pk, owner="worker-b")
        with pytest.raises(LeaseLost):
            events_apply_chunk(workspace_id=workspace.pk, owner="worker-a")
        assert events_apply_chunk(workspace_id=workspace.pk, owner="worker-b").stored == 1
    applier_release(workspace_id=workspace.pk, owner="worker-b")
    assert ApplierState.objects.get(pk=workspace.pk).owner == ""
    assert Event.objects.count() == 1


def test_position_commits_with_what_was_applied(send, workspace, monkeypatch):
    """A crash between applying and committing leaves nothing applied and the position where it was."""
    send("/v1/batch", {"batch": [{"type": "track", **track(i)} for i in range(4)]}, apply=False)
    from tsunagu.events import applier as applier_module

    def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed mid-transaction")

    monkeypatch.setattr(applier_module, "dispatch", crash)
    with pytest.raises(SystemExit):
        events_apply_pending(workspace_id=workspace.pk)
    assert not Event.objects.exists()
    assert ApplierState.objects.get(pk=workspace.pk).position == 0
    monkeypatch.undo()
    assert events_apply_pending(workspace_id=workspace.pk).stored == 4
    assert events_apply_pending(workspace_id=workspace.pk).stored == 0


def test_backlog_past_the_bound_answers_429_with_retry_after_and_loses_nothing(send, api, workspace, settings):
    settings.TSUNAGU_INGEST_MAX_PENDING = 3
    settings.TSUNAGU_INGEST_BACKLOG_TTL = 0
    settings.TSUNAGU_INGEST_RETRY_AFTER = 7
    _backlog.clear()
    for i in range(3):
        assert send("/v1/track", track(i), apply=False)[0] == 200
    status, body = send("/v1/track", track(3), apply=False)
    assert status == 429 and body["code"] == "backlogged" and "retry" in body["message"]
    status, body = send("/v1/batch", {"batch": [{"type": "track", **track(4)}]}, apply=False)
    assert status == 429
    # Authentication and validation still come first: a bad key is 401, not 429.
    assert send("/v1/track", track(5), write_key="wrong", apply=False)[0] == 401
    assert api.get("/api/v1/ingestion")[1]["pending"] == 3

    apply_all(workspace)
    assert send("/v1/track", track(3), apply=False)[0] == 200
    apply_all(workspace)
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-0", "m-1", "m-2", "m-3"]


def test_the_429_carries_retry_after(source, settings):
    import base64

    settings.TSUNAGU_INGEST_MAX_PENDING = 1
    settings.TSUNAGU_INGEST_BACKLOG_TTL = 0
    settings.TSUNAGU_INGEST_RETRY_AFTER = 7
    _backlog.clear()
    headers = {"Authorization": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()}
    client = Client()
    body = b'{"userId": "u", "event": "E"}'
    assert client.post("/v1/track", body, content_type="application/json", headers=headers).status_code == 200
    refused = client.post("/v1/track", body, content_type="application/json", headers=headers)
    assert refused.status_code == 429 and refused["Retry-After"] == "7"


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_received_rejected_applied_and_pending(send):
    def scrape() -> str:
        response = Client().get("/metrics")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
        return response.content.decode()

    before = scrape()
    send("/v1/batch", {"batch": [{"type": "track", **track(i)} for i in range(3)] + [{"type": "nope"}]}, apply=False)
    send("/v1/track", {"event": "no id"}, apply=False)
    middle = scrape()
    received = 'tsunagu_events_received_total{endpoint="batch"}'
    assert metric(middle, received) - metric(before, received) == 3
    invalid = 'tsunagu_events_rejected_total{reason="invalid"}'
    assert metric(middle, invalid) - metric(before, invalid) == 2  # the bad batch item + the bad request
    assert metric(middle, "tsunagu_ingest_pending_events") == 3
    assert metric(middle, "tsunagu_events_applied_total") == 0
    assert metric(middle, "tsunagu_tracking_request_seconds_count", '{endpoint="track"}') > metric(
        before, "tsunagu_tracking_request_seconds_count", '{endpoint="track"}'
    )
    apply_all()
    after = scrape()
    assert metric(after, "tsunagu_ingest_pending_events") == 0
    assert metric(after, "tsunagu_events_applied_total") == 3
    assert metric(after, "tsunagu_ingest_lag_seconds") == 0


def test_readyz_reports_the_backlog(send):
    send("/v1/track", track(1), apply=False)
    body = Client().get("/readyz").json()
    assert body["status"] == "ready" and body["ingestion"]["pending"] == 1
    assert body["ingestion"]["oldest_pending_ms"] >= 0
    apply_all()
    assert Client().get("/readyz").json()["ingestion"] == {"pending": 0, "oldest_pending_ms": None}


def test_status_never_shows_a_chunk_as_neither_pending_nor_applied(send, workspace, monkeypatch):
    """The applier may commit between the two reads of ``ingestion_status``; a caller that waits for
    ``pending == 0`` must then see every event in ``applied`` (read skew found on PostgreSQL)."""
    from tsunagu.events import selectors
    from tsunagu.events.log import get_log

    send("/v1/batch", {"batch": [{"type": "track", **track(i)} for i in range(3)]}, apply=False)
    log = get_log()
    real_pending = log.pending

    def pending_while_the_applier_commits(**kwargs: Any) -> Any:
        events_apply_pending(workspace_id=workspace.pk)  # lands between the two reads...
        # ...and its commit trims the log (on_commit, which the test's own transaction never reaches).
        log.trim(workspace_id=workspace.pk, position=ApplierState.objects.get(pk=workspace.pk).position)
        return real_pending(**kwargs)

    monkeypatch.setattr(log, "pending", pending_while_the_applier_commits)
    status = selectors.ingestion_status(workspace_id=workspace.pk)
    assert (status["pending"], status["applied"]) == (0, 3)


def test_a_chunk_is_bounded_by_events_not_by_records(send, workspace):
    """Single-event requests make one-event records: a chunk still takes as many of them as its event
    budget allows (on PostgreSQL the read once guessed 50 events a record, and applied one at a time)."""
    for i in range(30):
        send("/v1/track", track(i, f"u-{i}"), apply=False)
    assert applier_claim(workspace_id=workspace.pk, owner="worker-a")
    chunk = events_apply_chunk(workspace_id=workspace.pk, owner="worker-a", max_events=25)
    assert (chunk.records, chunk.stored) == (25, 25)
    assert events_apply_chunk(workspace_id=workspace.pk, owner="worker-a", max_events=25).stored == 5
