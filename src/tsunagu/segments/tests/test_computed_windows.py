"""Windows: a rolling ``{"days": N}`` window loses events with time alone, and the refresh folds again exactly
the customers it changed; ``since`` and ``between`` are fixed (dates in the workspace's time zone)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.customers.models import Customer
from tsunagu.segments.computed import computed_refresh
from tsunagu.segments.models import ComputedTrait
from tsunagu.segments.tests.computed_support import (
    applied_changes,  # noqa: F401 (fixture)
    declare,
    send_batch,
    track,
    values,
)

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ORDER = "Order Completed"


def ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def ids(*users: str) -> list[int]:
    return [Customer.objects.get(user_id=u).pk for u in users]


@pytest.mark.parametrize("mode", ["kept by the applier", "backfilled"])
def test_a_rolling_window_moves_with_the_clock(send, workspace, applied_changes, mode):  # noqa: F811
    history = [
        track("u1", ORDER, ago(100), revenue=1), track("u1", ORDER, ago(50), revenue=2),
        track("u1", ORDER, ago(10), revenue=4), track("u2", ORDER, ago(80), revenue=8),
        track("u3", ORDER, ago(200), revenue=16),
    ]
    with time_machine.travel(NOW, tick=False):
        if mode == "backfilled":
            send_batch(send, history)
        orders = declare(workspace, "orders_90d", "count", ORDER, within={"days": 90})
        spent = declare(workspace, "spent_90d", "sum", ORDER, property="revenue", within={"days": 90})
        if mode != "backfilled":
            send_batch(send, history)
        u1, u2 = ids("u1", "u2")
        assert values(orders) == {u1: 2, u2: 1}
        assert values(spent) == {u1: 6, u2: 8}

    with time_machine.travel(NOW + dt.timedelta(days=45), tick=False):
        assert values(orders) == {u1: 2, u2: 1}  # nothing moves before the refresh
        changed = computed_refresh(workspace=workspace)
        # u1's order of 50 days ago and u2's of 80 have left the window; u3 never was in it.
        assert changed == {"orders_90d": {u1, u2}, "spent_90d": {u1, u2}}
        assert values(orders) == {u1: 1} and values(spent) == {u1: 4}
        assert computed_refresh(workspace=workspace) == {}
        assert ComputedTrait.objects.get(key="orders_90d").refreshed_at == NOW + dt.timedelta(days=45)

    with time_machine.travel(NOW + dt.timedelta(days=46), tick=False):
        # A new order is folded with the window as it is now: u2's old one stays out.
        send_batch(send, [track("u2", ORDER, NOW + dt.timedelta(days=45), revenue=32)])
        assert values(orders) == {u1: 1, u2: 1} and values(spent) == {u1: 4, u2: 32}

    # The refresh may be given the time; 200 days on, everything has left.
    changed = computed_refresh(workspace=workspace, now=NOW + dt.timedelta(days=200))
    assert changed == {"orders_90d": {u1, u2}, "spent_90d": {u1, u2}}
    assert values(orders) == {} and values(spent) == {}


def test_an_old_event_imported_late_does_not_enter_a_rolling_window(send, workspace, applied_changes):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        orders = declare(workspace, "orders_30d", "count", ORDER, within={"days": 30})
        send_batch(send, [track("u1", ORDER, ago(31))])
        assert values(orders) == {}
        assert applied_changes[-1] == {}
        send_batch(send, [track("u1", ORDER, ago(29))])
        assert values(orders) == {ids("u1")[0]: 1}


def test_since_and_between_are_dates_of_the_workspace_time_zone(send, workspace, applied_changes):  # noqa: F811
    # As in rules (docs/rules.md): a date is its first instant in the workspace's time zone (Asia/Tokyo), and
    # both ends are included: 1 March is 28 February 15:00 UTC, 30 April is 29 April 15:00 UTC.
    since = declare(workspace, "since_march", "count", ORDER, within={"since": "2026-03-01"})
    spring = declare(workspace, "spring", "count", ORDER, within={"between": ["2026-03-01", "2026-04-30"]})
    utc = dt.UTC
    with time_machine.travel(NOW, tick=False):
        send_batch(send, [
            track("early", ORDER, dt.datetime(2026, 2, 28, 14, 59, tzinfo=utc)),
            track("edge", ORDER, dt.datetime(2026, 2, 28, 15, 0, tzinfo=utc)),
            track("end", ORDER, dt.datetime(2026, 4, 29, 15, 0, tzinfo=utc)),
            track("after", ORDER, dt.datetime(2026, 4, 29, 15, 0, 1, tzinfo=utc)),
        ])
    early, edge, end, after = ids("early", "edge", "end", "after")
    assert values(since) == {edge: 1, end: 1, after: 1}
    assert values(spring) == {edge: 1, end: 1}
    # Fixed windows do not move with time: the refresh has nothing to do.
    assert computed_refresh(workspace=workspace, now=NOW + dt.timedelta(days=400)) == {}
    assert values(spring) == {edge: 1, end: 1}
