"""RFM: recency, frequency and monetary value of each purchaser, as quintiles 1–5 over the workspace's
purchasers (5 best: the most recent last purchase, the most purchases, the most spent).

A quintile needs the whole population, so the scores are given by the refresh (and by the backfill); the
applier keeps each purchaser's figures (``state``: purchases ``n``, last purchase ``t``, the exact sum of the
amount) up to date as events arrive. Ties share a score: each value is placed at its mid-rank, so a lone
purchaser, or a workspace where everyone spent the same, scores 3.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from tsunagu.segments.computed_fold import _total, same
from tsunagu.segments.computed_store import values_write
from tsunagu.segments.models import ComputedTrait, ComputedValue


def _scores(values: list[Any]) -> dict[Any, int]:
    """Each distinct value's quintile, higher values scoring higher: 1 + ⌊5 · midrank / n⌋."""
    n = len(values)
    counts = Counter(values)
    below = 0
    out = {}
    for value in sorted(counts):
        equal = counts[value]
        out[value] = min(5, 1 + (5 * (2 * below + equal)) // (2 * n))
        below += equal
    return out


def rfm_values(states: dict[int, dict[str, Any]]) -> dict[int, dict[str, int]]:
    """{customer: {"recency", "frequency", "monetary"}} over this population of purchasers."""
    if not states:
        return {}
    recency = {cid: s["t"] for cid, s in states.items()}
    frequency = {cid: s["n"] for cid, s in states.items()}
    monetary = {cid: _total(s) for cid, s in states.items()}
    r, f, m = (_scores(list(d.values())) for d in (recency, frequency, monetary))
    return {
        cid: {"recency": r[recency[cid]], "frequency": f[frequency[cid]], "monetary": m[monetary[cid]]}
        for cid in states
    }


def rfm_score(trait: ComputedTrait, now: dt.datetime) -> set[int]:
    """Score every purchaser of ``trait`` again; returns the customers whose scores changed."""
    rows = ComputedValue.objects.filter(trait=trait).values_list("customer_id", "value", "state")
    current = {cid: (value, state) for cid, value, state in rows.iterator(chunk_size=5000)}
    scores = rfm_values({cid: state for cid, (_, state) in current.items()})
    changed = {cid for cid, value in scores.items() if not same(current[cid][0], value)}
    values_write(trait, {cid: (scores[cid], current[cid][1]) for cid in changed}, now)
    return changed
