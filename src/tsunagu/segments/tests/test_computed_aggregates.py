"""Every aggregate of a computed trait against a hand-computed value, declared before the events arrive
(kept by the applier) and after (backfilled from history): both must give the same, expected rows."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from tsunagu.customers.models import Customer
from tsunagu.segments.computed import computed_backfill
from tsunagu.segments.tests.computed_support import (
    applied_changes,  # noqa: F401 (fixture)
    declare,
    page,
    rows,
    send_batch,
    track,
    values,
)

pytestmark = pytest.mark.django_db
UTC = dt.UTC
T = {d: dt.datetime(2026, 1, d, 10, 0, tzinfo=UTC) for d in range(1, 12)}
ORDER = "Order Completed"

# u1's orders: revenue 1000, 2500.5 and 500 (books, music, books), one without revenue (toys), one whose
# revenue is a string and which has no category; a page view and an unrelated event. u2: one order.
HISTORY = [
    track("u1", ORDER, T[1], revenue=1000, category="books"),
    track("u1", ORDER, T[5], revenue=2500.5, category="music"),
    track("u1", "Product Viewed", T[6], revenue=99999, category="books"),
    page("u1", "Top", T[5]),
    page("u1", "Cart", T[6]),
    track("u2", ORDER, T[2], revenue=300, category="music"),
    track("u1", ORDER, T[10], revenue=500, category="books"),
    track("u1", ORDER, T[3], category="toys"),
    track("u1", ORDER, T[7], revenue="abc", gift=True),
    track("u3", "Product Viewed", T[4], revenue=1),
]

# key: (declaration, u1's value, u2's value — None: no row)
EXPECTED: dict[str, tuple[dict[str, Any], Any, Any]] = {
    "orders": ({"aggregate": "count", "event": ORDER}, 5, 1),
    "total_spent": ({"aggregate": "sum", "event": ORDER, "property": "revenue"}, 4000.5, 300),
    "smallest": ({"aggregate": "min", "event": ORDER, "property": "revenue"}, 500, 300),
    "largest": ({"aggregate": "max", "event": ORDER, "property": "revenue"}, 2500.5, 300),
    "average": ({"aggregate": "avg", "event": ORDER, "property": "revenue"}, 4000.5 / 3, 300.0),
    "first_revenue": ({"aggregate": "first", "event": ORDER, "property": "revenue"}, 1000, 300),
    "last_revenue": ({"aggregate": "last", "event": ORDER, "property": "revenue"}, 500, 300),
    "categories": ({"aggregate": "distinct_count", "event": ORDER, "property": "category"}, 3, 1),
    "favourite_category": ({"aggregate": "most_frequent", "event": ORDER, "property": "category"}, "books", "music"),
    "last_order_at": (
        {"aggregate": "max", "event": ORDER, "property": "$timestamp"}, "2026-01-10T10:00:00Z", "2026-01-02T10:00:00Z"
    ),
    "first_order_at": (
        {"aggregate": "first", "event": ORDER, "property": "$timestamp"}, "2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z"
    ),
    "big_orders": (
        {"aggregate": "count", "event": ORDER, "where": [{"property": "revenue", "op": "gte", "value": 1000}]}, 2, None
    ),
    "top_views": ({"aggregate": "count", "event": "Top", "event_type": "page"}, 1, None),
    "gifts": (
        {"aggregate": "last", "event": ORDER, "property": "gift", "where": [{"property": "gift", "op": "exists"}]},
        True, None,
    ),
}


@pytest.mark.parametrize("mode", ["kept by the applier", "backfilled"])
def test_every_aggregate_gives_the_hand_computed_value(send, workspace, applied_changes, mode):  # noqa: F811
    if mode == "backfilled":
        send_batch(send, HISTORY)
    traits = {key: declare(workspace, key, **spec) for key, (spec, _, _) in EXPECTED.items()}
    if mode != "backfilled":
        send_batch(send, HISTORY[:4])
        send_batch(send, HISTORY[4:])
    u1, u2, u3 = (Customer.objects.get(user_id=u).pk for u in ("u1", "u2", "u3"))
    for key, (_, one, two) in EXPECTED.items():
        got = values(traits[key])
        expected = {u1: one} if two is None else {u1: one, u2: two}
        assert got == expected, key
        assert u3 not in got
        for cid, value in got.items():
            assert type(value) is type(expected[cid]), (key, value)
    # ``num`` is the value as a float for numbers, nothing for strings, dates and booleans.
    assert rows(traits["total_spent"])[u1][1] == 4000.5
    assert rows(traits["average"])[u1][1] == pytest.approx(1333.5)
    assert rows(traits["last_order_at"])[u1][1] is None
    assert rows(traits["gifts"])[u1][1] is None


def test_sum_of_floats_does_not_depend_on_their_order(send, workspace, applied_changes):  # noqa: F811
    # 0.1 + 0.2 + 0.3 in floats depends on the order; the exact sum, rounded once, does not.
    trait = declare(workspace, "spent", "sum", ORDER, property="revenue")
    send_batch(send, [track("a", ORDER, T[3], revenue=0.3), track("a", ORDER, T[1], revenue=0.1)])
    send_batch(send, [track("a", ORDER, T[2], revenue=0.2), track("a", ORDER, T[4], revenue=1e16)])
    send_batch(send, [track("a", ORDER, T[5], revenue=-1e16)])
    (value,) = values(trait).values()
    assert 0.3 + 0.1 + 0.2 + 1e16 - 1e16 != 0.6  # what a running float sum would have stored
    assert value == math.fsum([0.1, 0.2, 0.3]) == 0.6
    computed_backfill(trait=trait)
    assert list(values(trait).values()) == [0.6]


@pytest.mark.parametrize("mode", ["kept by the applier", "backfilled"])
def test_first_and_last_of_one_instant_go_by_the_order_applied(send, workspace, applied_changes, mode):  # noqa: F811
    same_time = [track("a", ORDER, T[2], revenue=v) for v in (1, 2, 3)]
    if mode == "backfilled":
        send_batch(send, same_time[:2])
        send_batch(send, same_time[2:])
    first = declare(workspace, "first", "first", ORDER, property="revenue")
    last = declare(workspace, "last", "last", ORDER, property="revenue")
    if mode != "backfilled":
        send_batch(send, same_time[:2])
        send_batch(send, same_time[2:])
    assert list(values(first).values()) == [1]
    assert list(values(last).values()) == [3]


def test_most_frequent_ties_go_to_the_value_seen_last(send, workspace, applied_changes):  # noqa: F811
    trait = declare(workspace, "fav", "most_frequent", ORDER, property="category")
    send_batch(send, [track("a", ORDER, T[5], category="music"), track("a", ORDER, T[1], category="books"),
                      track("a", ORDER, T[3], category="books"), track("a", ORDER, T[2], category="music")])
    assert list(values(trait).values()) == ["music"]  # 2 each; music's last was on the 5th
    send_batch(send, [track("a", ORDER, T[4], category="books")])
    assert list(values(trait).values()) == ["books"]


def test_what_the_applier_reports_as_changed(send, workspace, applied_changes):  # noqa: F811
    orders = declare(workspace, "orders", "count", ORDER)
    largest = declare(workspace, "largest", "max", ORDER, property="revenue")
    send_batch(send, [track("a", ORDER, T[1], revenue=10), track("b", "Other", T[1])])
    a = Customer.objects.get(user_id="a").pk
    assert applied_changes[-1] == {"orders": {a}, "largest": {a}}
    send_batch(send, [track("a", ORDER, T[2], revenue=5)])  # the count moves, the maximum does not
    assert applied_changes[-1] == {"orders": {a}}
    assert values(orders) == {a: 2} and values(largest) == {a: 10}
