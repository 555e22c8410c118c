"""Dedup by messageId over the look-back window (``tsunagu.events.dedup``): a repeat received within the
window is dropped, one received after it is stored again (Segment's semantics), keys of events no pending
record can repeat are trimmed, a collision of keys never drops an event, and the keys commit with the events
or not at all."""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

import pytest
import time_machine

from tsunagu.customers.models import Customer
from tsunagu.events import dedup, reactions
from tsunagu.events.dedup import TRIM_SLACK_SECONDS, dedup_key, seconds
from tsunagu.events.models import ApplierState, DedupKey, Event
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def track(mid: str, user: str = "u-1") -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Viewed", "messageId": mid}


def send_at(send: Any, when: dt.datetime, *events: dict[str, Any], apply: bool = True) -> None:
    with time_machine.travel(when, tick=False):
        status, _ = send("/v1/batch", {"batch": list(events)}, apply=apply)
    assert status == 200


def stored(mid: str) -> int:
    return Event.objects.filter(message_id=mid).count()


def duplicates(workspace: Any) -> int:
    return ApplierState.objects.get(pk=workspace.pk).duplicates


def test_repeats_within_the_window_are_stored_once(send, workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 1
    send_at(send, T0, track("a"), track("a"), track("b"))  # a repeat in the same batch
    send_at(send, T0 + dt.timedelta(hours=23, minutes=59), track("a"), track("b"))  # and the next day
    assert (stored("a"), stored("b")) == (1, 1)
    assert duplicates(workspace) == 3
    assert Customer.objects.get(user_id="u-1").event_count == 2


def test_a_repeat_received_after_the_window_is_stored_again(send, workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 1
    send_at(send, T0, track("a"))
    send_at(send, T0 + dt.timedelta(days=1, seconds=1), track("a"))
    assert stored("a") == 2
    # The second copy holds the key now: its own repeat within the window is dropped.
    send_at(send, T0 + dt.timedelta(days=1, hours=12), track("a"))
    assert stored("a") == 2
    assert duplicates(workspace) == 1
    assert Customer.objects.get(user_id="u-1").event_count == 2


def test_the_window_is_measured_in_receive_time_not_in_when_the_applier_runs(send, workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 1
    # Both acknowledged within the window, applied three days later: still one event.
    send_at(send, T0, track("a"), apply=False)
    send_at(send, T0 + dt.timedelta(hours=20), track("a"), apply=False)
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):
        apply_all()
    assert stored("a") == 1


def test_a_window_of_zero_keeps_every_message_id(send, workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 0
    send_at(send, T0, track("a"))
    send_at(send, T0 + dt.timedelta(days=400), track("a"))
    assert stored("a") == 1
    assert DedupKey.objects.count() == 1


def test_old_keys_are_trimmed_as_the_applier_goes(send, workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 1
    send_at(send, T0, track("old-1"), track("old-2"))
    # Within window + slack of the next record: kept (a record received "earlier" may still come).
    send_at(send, T0 + dt.timedelta(days=1, seconds=TRIM_SLACK_SECONDS - 60), track("mid"))
    assert DedupKey.objects.count() == 3
    send_at(send, T0 + dt.timedelta(days=1, seconds=TRIM_SLACK_SECONDS + 60), track("new"))
    held = {(k.digest, k.checksum) for k in DedupKey.objects.all()}
    assert held == {dedup_key(workspace.pk, "mid"), dedup_key(workspace.pk, "new")}
    # Trimmed keys were past the window anyway: the old ids are stored again, the live ones are not.
    send_at(send, T0 + dt.timedelta(days=1, hours=1), track("old-1"), track("new"))
    assert (stored("old-1"), stored("new")) == (2, 1)


def test_trim_leaves_other_workspaces_keys(send, workspace, other_workspace, settings):
    settings.TSUNAGU_DEDUP_WINDOW_DAYS = 1
    send_at(send, T0, track("a"))
    DedupKey.objects.create(digest=12345, workspace_id=other_workspace.pk, checksum=1, seen=seconds(T0))
    send_at(send, T0 + dt.timedelta(days=3), track("b"))
    assert set(DedupKey.objects.values_list("workspace_id", flat=True)) == {workspace.pk, other_workspace.pk}
    assert DedupKey.objects.filter(workspace_id=workspace.pk).count() == 1


def test_the_same_message_id_in_two_workspaces_is_two_events(send, workspace, other_workspace):
    from tsunagu.core.permissions import SYSTEM
    from tsunagu.events.services import source_create

    other = source_create(workspace=other_workspace, name="Other", channel="web", actor=SYSTEM)
    send_at(send, T0, track("same"))
    with time_machine.travel(T0, tick=False):
        assert send("/v1/track", track("same"), write_key=other.write_key)[0] == 200
    assert sorted(Event.objects.filter(message_id="same").values_list("workspace_id", flat=True)) == sorted(
        [workspace.pk, other_workspace.pk]
    )
    assert dedup_key(workspace.pk, "same") != dedup_key(other_workspace.pk, "same")


def test_colliding_keys_never_drop_an_event(send, workspace, monkeypatch):
    # Every messageId gets the same 8-byte key; the checksums still tell them apart.
    real = dedup.dedup_key
    monkeypatch.setattr(dedup, "dedup_key", lambda ws, mid: (42, real(ws, mid)[1]))
    send_at(send, T0, track("x"), track("y"))
    send_at(send, T0 + dt.timedelta(minutes=1), track("x"), track("z"))
    assert (stored("x"), stored("y"), stored("z")) == (1, 1, 1)
    # The key stays with "x", the first to hold it: a repeat of "y" is (as documented) stored again.
    assert list(DedupKey.objects.values_list("digest", "checksum")) == [(42, real(workspace.pk, "x")[1])]
    send_at(send, T0 + dt.timedelta(minutes=2), track("y"))
    assert stored("y") == 2
    assert duplicates(workspace) == 1


def test_keys_roll_back_with_a_failed_chunk(send, workspace):
    failures = [RuntimeError("reaction down")]

    def flaky(applied: reactions.Applied) -> None:
        if failures:
            raise failures.pop()

    reactions.reaction("test-flaky")(flaky)
    try:
        send_at(send, T0, track("a"), track("b"), apply=False)
        with pytest.raises(RuntimeError):
            apply_all()
        assert not DedupKey.objects.exists() and not Event.objects.exists()
        apply_all()
    finally:
        reactions.reaction_remove("test-flaky")
    assert (stored("a"), stored("b")) == (1, 1)
    assert duplicates(workspace) == 0


def test_the_stored_keys_are_what_the_orm_reads(send, workspace):
    """dedup writes its rows by raw SQL: the ORM must read back exactly the key, checksum and second."""
    when = dt.datetime(2026, 3, 2, 9, 0, 7, 999_999, tzinfo=dt.UTC)
    send_at(send, when, track("a"), track("b"))
    rows = {(k.digest, k.checksum): (k.workspace_id, k.seen) for k in DedupKey.objects.all()}
    expected_seen = int(when.replace(microsecond=0).timestamp())
    assert rows == {
        dedup_key(workspace.pk, "a"): (workspace.pk, expected_seen),
        dedup_key(workspace.pk, "b"): (workspace.pk, expected_seen),
    }
    assert seconds(when) == expected_seen == 1772442007
    assert seconds(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) == 0
    for digest, checksum in rows:
        assert -(2**63) <= digest < 2**63 and -(2**63) <= checksum < 2**63


def test_the_migration_copies_keys_with_the_same_hash():
    migration = importlib.import_module("tsunagu.events.migrations.0004_dedup_window")
    for ws, mid in [(1, "a"), (7, "9f0c6a52-6b3e-4c55-bb1b-5b4a3e2f0001"), (2**40, "日本語-id")]:
        assert migration._digest(ws, mid) == dedup_key(ws, mid)
