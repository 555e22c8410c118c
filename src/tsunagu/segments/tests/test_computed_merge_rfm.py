"""Merges (the surviving profile's values folded again, the merged-away profile's rows gone) and RFM
(quintiles over the purchasers, given by the backfill and the refresh)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from tsunagu.customers.models import Customer
from tsunagu.segments.computed import computed_refresh
from tsunagu.segments.models import ComputedValue
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


def test_a_merge_folds_the_surviving_profile_again_and_drops_the_other(send, workspace, applied_changes):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        orders = declare(workspace, "orders", "count", ORDER)
        spent = declare(workspace, "spent", "sum", ORDER, property="revenue")
        first = declare(workspace, "first_revenue", "first", ORDER, property="revenue")
        recent = declare(workspace, "recent", "count", ORDER, within={"days": 30})
        send_batch(send, [
            track("u1", ORDER, ago(40), revenue=10), track("u1", ORDER, ago(5), revenue=20),
        ])
        status, _ = send("/v1/track", {"anonymousId": "phone", "event": ORDER, "timestamp": ago(60).isoformat(),
                                       "properties": {"revenue": 5}})
        assert status == 200
        known = Customer.objects.get(user_id="u1")
        phone = Customer.objects.exclude(pk=known.pk).get()
        assert values(orders) == {known.pk: 2, phone.pk: 1}
        assert values(first) == {known.pk: 10, phone.pk: 5}

        # One chunk: an order of the anonymous profile, then the identify that ties it to u1.
        send_batch(send, [
            {"type": "track", "anonymousId": "phone", "event": ORDER, "timestamp": ago(2).isoformat(),
             "properties": {"revenue": 100}, "messageId": "late-order"},
            {"type": "identify", "userId": "u1", "anonymousId": "phone", "messageId": "tie"},
        ])
        phone.refresh_from_db()
        into = phone.merged_into_id
        assert into == known.pk
        assert values(orders) == {into: 4}
        assert values(spent) == {into: 135}
        assert values(first) == {into: 5}  # the anonymous profile's order 60 days ago came first
        assert values(recent) == {into: 2}
        assert not ComputedValue.objects.filter(customer_id=phone.pk).exists()
        assert applied_changes[-1] == {k: {into} for k in ("orders", "spent", "first_revenue", "recent")}


def _purchases() -> list[dict[str, object]]:
    # p<i> bought i times, 10 each, the last time 6 - i days ago: p5 is best at everything.
    out = []
    for i in range(1, 6):
        for j in range(i):
            out.append(track(f"p{i}", ORDER, ago(6 - i + j * 0.01 + 10 * (j < i - 1)), amount=10))
    out.append(track("browser", "Product Viewed", ago(1), amount=10))
    return out


def test_rfm_scores_quintiles_over_the_purchasers(send, workspace, applied_changes):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        send_batch(send, _purchases())
        rfm = declare(workspace, "rfm", "rfm", ORDER, property="amount")
        p = {i: Customer.objects.get(user_id=f"p{i}").pk for i in range(1, 6)}
        assert values(rfm) == {p[i]: {"recency": i, "frequency": i, "monetary": i} for i in range(1, 6)}

        # p1 buys big: the applier keeps the figures, the scores wait for the refresh.
        send_batch(send, [track("p1", ORDER, NOW, amount=1000)])
        assert values(rfm)[p[1]] == {"recency": 1, "frequency": 1, "monetary": 1}
        assert ComputedValue.objects.get(trait=rfm, customer_id=p[1]).state["n"] == 2
        changed = computed_refresh(workspace=workspace)
    # Recency: p1 newest. Frequency 2, 2, 3, 4, 5: p1 and p2 share the mid-rank score 2. Monetary: p1 most.
    assert values(rfm) == {
        p[1]: {"recency": 5, "frequency": 2, "monetary": 5},
        p[2]: {"recency": 1, "frequency": 2, "monetary": 1},
        p[3]: {"recency": 2, "frequency": 3, "monetary": 2},
        p[4]: {"recency": 3, "frequency": 4, "monetary": 3},
        p[5]: {"recency": 4, "frequency": 5, "monetary": 4},
    }
    assert changed == {"rfm": set(p.values())}


def test_a_lone_purchaser_scores_in_the_middle(send, workspace, applied_changes):  # noqa: F811
    rfm = declare(workspace, "rfm", "rfm", ORDER, property="amount")
    send_batch(send, [track("only", ORDER, ago(1), amount=5)])
    (value,) = values(rfm).values()
    assert value is None  # a new purchaser is scored by the refresh
    computed_refresh(workspace=workspace)
    assert list(values(rfm).values()) == [{"recency": 3, "frequency": 3, "monetary": 3}]
