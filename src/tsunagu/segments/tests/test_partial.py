"""``rule.partial.count_verdict``: knowing only that a count is at least N, it decides exactly where every
count from N up gives one answer — never wrongly, and never leaves to the SQL what it could have told."""

from __future__ import annotations

import datetime as dt

import pytest

from tsunagu.segments.rule.nodes import Cmp
from tsunagu.segments.rule.partial import count_verdict
from tsunagu.segments.rule.values import Context, cmp_holds

CTX = Context(now=dt.datetime(2026, 6, 15, tzinfo=dt.UTC), tz="Asia/Tokyo")
CMPS = [Cmp(op, v) for op in ("eq", "neq", "gt", "gte", "lt", "lte") for v in range(5)] + \
    [Cmp("between", (lo, hi)) for lo in range(5) for hi in range(lo, 5)]


@pytest.mark.parametrize("cmp", CMPS, ids=lambda c: f"{c.op}-{c.value}")
def test_a_lower_bound_decides_a_count_exactly_where_it_can(cmp: Cmp) -> None:
    for at_least in range(7):
        # Counts beyond 12 answer as 12 does for every comparison here (values stop at 4).
        answers = {cmp_holds(n, cmp, CTX) for n in range(at_least, 13)}
        expected = answers.pop() if len(answers) == 1 else None
        assert count_verdict(at_least, cmp) == expected, (at_least, cmp)
